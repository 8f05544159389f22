#!/usr/bin/env bash
# One prepared pass on a GPU machine (about 7-8 minutes on an H100/H200): the CUDA tests (captured
# steps equal eager ones, packs equal solo runs, FlexAttention and the Triton DAPE kernels equal to the
# explicit path in values and gradients); the attention paths (fused SDPA, FlexAttention, explicit) and
# DAPE's forms (fast, triton) at TF32 and bf16; `che bench` at the CHE and the DAPE model sizes, solo and
# packed (K = 9), eager and CUDA-graph-captured; the `paper` preset trained packed (9 runs: 3 seeds x 3
# learning rates) for a few hundred steps; the estimated cost of DAPE's Table 2 grid; and the encodings
# added in che 0.3 (PaTH, PoPE, YaRN, layer schedules): their CUDA tests and their step time.
# Everything lands in $OUT (default: results/bench/gpu-<date>).
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/bench/gpu-$(date +%Y%m%d)}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/log.txt"; }

python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v WARNING | tail -2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(),
hasattr(torch.cuda.CUDAGraph, 'register_generator_state'))" | tee -a "$OUT/gpu.txt"

log "CUDA tests: captured steps == eager steps, packs == solo runs (on the GPU)"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py tests/test_gpu_paths.py 2>&1 \
  | tail -25 | tee -a "$OUT/tests.txt"
log "The encodings of che 0.3 on the GPU: PaTH, PoPE (q and k wider than v in SDPA), YaRN, layer schedules"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_pe_path.py tests/test_pe_pope.py \
  tests/test_pe_rope_yarn.py tests/test_pe_schedules.py -k "captured or cuda or fused" 2>&1 | tail -8 | tee -a "$OUT/tests.txt"
timeout 60 che bench --device cuda --pes rope,path,path+causal,pope,irope --cuda-graphs --repeats 5 \
  --eval-batch 64 --no-literal --out "$OUT/bench_new_encodings.json" 2>&1 | grep -v "^repeat" | tee -a "$OUT/log.txt"
log "Triton DAPE kernels compiled for this GPU (the same tests run under the interpreter on a CPU)"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_dape_triton.py 2>&1 | tail -5 | tee -a "$OUT/tests.txt"

log "attention paths at d_head 8 (d_model 64): fused SDPA vs explicit, TF32, solo and pack 9"
timeout 60 python3 scripts/gpu_profile.py --d-model 64 --pack 9 --pes none,dape-kerple-log --attention fused,explicit \
  --precisions tf32 2>&1 | grep "ms/step" | tee -a "$OUT/log.txt"

log "bench, CHE model (d_model 64), reverse_string N=40, batch 128: solo/pack 9, eager/graphs"
timeout 60 che bench --device cuda --pes alibi,dape-kerple-log --pack 9 --cuda-graphs --repeats 10 \
  --eval-batch 64 --no-literal --out "$OUT/bench_d64.json" 2>&1 | grep -v "^repeat" | tee -a "$OUT/log.txt"

log "bench, DAPE paper model (d_model 256, DAPE width 64)"
timeout 60 che bench --device cuda --set d_model=256 --pes alibi,dape-kerple-log --pack 9 --cuda-graphs \
  --repeats 10 --eval-batch 64 --no-literal --out "$OUT/bench_d256.json" 2>&1 | grep -v "^repeat" \
  | tee -a "$OUT/log.txt"

log "paper preset, 9 runs packed (seeds 0-2 x lr 1e-4, 3e-4, 5e-4), 400 steps over lengths U(1..40)"
timeout 75 che run --task reverse_string --pe dape-kerple-log --preset paper --seeds 3 --lrs 1e-4,3e-4,5e-4 \
  --steps 400 --set max_test_length=60 --set eval_samples=64 --results "$OUT/runs" --quiet 2>&1 \
  | grep -E "estimated|runs packed|result:" | tee -a "$OUT/log.txt"

log "attention paths and DAPE forms at d_model 256 (DAPE's size), pack 9, TF32 and bf16, eager and graphs"
timeout 150 python3 scripts/gpu_profile.py --d-model 256 --pack 9 --pes none,alibi,dape-kerple-log \
  --attention fused,flex,explicit --dape-impls fast,triton --precisions tf32,bf16 2>&1 | grep -E "ms/step|Error" \
  | tee -a "$OUT/log.txt"

log "DAPE Table 2 grid: estimated cost on this GPU, packed"
timeout 75 che sweep dape_table2 --dry-run --device cuda --quiet > "$OUT/dape_table2_dry_run_full.txt" 2>&1
tail -6 "$OUT/dape_table2_dry_run_full.txt" | tee "$OUT/dape_table2_dry_run.txt"

python3 - "$OUT" <<'EOF' | tee -a "$OUT/log.txt"
import glob, json, sys
for path in sorted(glob.glob(f"{sys.argv[1]}/runs/*/*/*.json")):
    r = json.load(open(path))
    print(f"{r['pe']:16s} seed {r['seed']} lr {r['config']['lr']:g}: pack {r['pack']['size']}, "
          f"{r['steps_per_s']:.1f} pack-steps/s = {r['steps_per_s'] * r['pack']['size']:.0f} run-steps/s, "
          f"train {r['train_time_s']:.1f}s, eval {r['eval_time_s']:.1f}s, {r['device']}")
EOF
rm -rf "$OUT/runs" "$OUT/dape_table2_dry_run_full.txt"
