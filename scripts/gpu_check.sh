#!/usr/bin/env bash
# One prepared pass on a GPU machine: install che, benchmark every PE at the CHE and the DAPE model
# sizes, measure the `paper` preset's training speed, try bf16 and torch.compile, and estimate the
# cost of DAPE's Table 2 grid. Everything lands in $OUT (default: results/bench/gpu-<date>).
# Usage: bash scripts/gpu_check.sh   (about 5 minutes on an H100/H200)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/bench/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/log.txt"; }

python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v WARNING | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

log "bench, CHE model (d_model 64), reverse_string N=40, batch 128"
timeout 80 che bench --device cuda --repeats 10 --eval-batch 64 --out "$OUT/bench_d64.json" 2>&1 \
  | grep -v "^repeat" | tee -a "$OUT/log.txt"

log "bench, DAPE paper model (d_model 256, DAPE width 64)"
timeout 50 che bench --device cuda --d-model 256 --repeats 10 --eval-batch 64 --no-literal \
  --pes none,rand-relative,rand-alibi,rand-kerple-log,rand-fire,dape-alibi,dape-kerple-log,dape-fire \
  --out "$OUT/bench_d256.json" 2>&1 | grep -v "^repeat" | tee -a "$OUT/log.txt"

log "paper preset: training steps/s over lengths U(1..40) (evaluation cut to 1..41 x 64)"
for pe in rand-kerple-log dape-kerple-log; do
  timeout 40 che run --task reverse_string --pe "$pe" --preset paper --steps 300 --max-test-length 41 \
    --eval-samples 64 --results "$OUT/runs" --quiet 2>&1 | grep -E "estimated|unseen|result" | tee -a "$OUT/log.txt"
done

log "bf16 autocast (dape-kerple-log, paper preset, 300 steps)"
timeout 35 che run --task reverse_string --pe dape-kerple-log --preset paper --steps 300 --max-test-length 41 \
  --eval-samples 64 --results "$OUT/runs-bf16" --bf16 --quiet 2>&1 | grep -E "estimated|unseen|result" | tee -a "$OUT/log.txt"

log "DAPE Table 2 grid: estimated cost on this GPU"
timeout 50 che sweep dape_table2 --dry-run --device cuda 2>&1 | tail -15 | tee "$OUT/dape_table2_dry_run.txt"

python3 - "$OUT" <<'EOF' | tee -a "$OUT/log.txt"
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/runs*/*/*/*.json")):
    r = json.load(open(path))
    print(f"{path.split('/')[-4]:13s} {r['pe']:16s} steps/s {r['steps_per_s']:7.1f}  train {r['train_time_s']:6.1f}s  "
          f"eval {r['eval_time_s']:5.1f}s  device {r['device']}")
EOF
