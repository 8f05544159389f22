#!/usr/bin/env bash
# The committed CPU leaderboard (`che sweep cpu_leaderboard`: 15 tasks x none, alibi, kerple-log,
# dape-kerple-log x 3 seeds at the `cpu` preset) trained on one GPU machine in minutes instead of
# hours on 2 CPU cores. The protocol is the preset's; only the device differs, and each result
# records it. The GPU takes the grid in task order (6 packs sharing the GPU); as a hedge against a
# slow GPU, the machine's spare CPU cores take it from the other end (1 thread per pack); per-run
# locks keep them from training a run twice, and the seeds of a cell always train together, so a
# cell is never split across devices. Stops after BUDGET_S seconds; finished results are kept
# (rerunning resumes). Results (JSON only, not the models) land in $OUT/leaderboard_runs.tgz.
# (The machine's copy of the tree may carry a stale .git: CHE_GIT_REVISION names the true one.)
# Usage: CHE_GIT_REVISION=$(git rev-parse HEAD) bash scripts/gpu_leaderboard.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-results/bench/gpu-leaderboard-$(date +%Y%m%d)}
RESULTS=${RESULTS:-/tmp/che-leaderboard-runs}
BUDGET_S=${BUDGET_S:-470}
mkdir -p "$OUT" "$RESULTS"
started=$(date +%s)

if [ -d .whl ]; then  # packages the GPU image lacks (pydantic), carried as wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v WARNING | tail -2
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; lscpu | grep "Model name";
  python3 -c "import torch, che; print('torch', torch.__version__, 'che', che.__version__)"; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

cores=$(nproc)
gpu_cores="0-$((cores * 5 / 8 - 1))"; cpu_cores="$((cores * 5 / 8))-$((cores - 1))"
reversed_tasks=$(python3 -c "from che.registry import TASKS; print(','.join(reversed(TASKS.names())))" 2>/dev/null \
  || echo "")
echo "GPU sweep on cores $gpu_cores, CPU sweep on cores $cpu_cores, tasks reversed: $reversed_tasks"

taskset -c "$gpu_cores" timeout -k 30 "$BUDGET_S" che sweep cpu_leaderboard --device cuda --jobs-per-gpu 6 \
  --results "$RESULTS" --quiet > "$OUT/gpu_sweep.log" 2>&1 &
gpu=$!
sleep 20  # the GPU sweep claims the first packs first
taskset -c "$cpu_cores" timeout -k 30 $((BUDGET_S - 20)) che sweep cpu_leaderboard --device cpu \
  ${reversed_tasks:+--tasks "$reversed_tasks"} --results "$RESULTS" --quiet > "$OUT/cpu_sweep.log" 2>&1 &
cpu=$!
wait $gpu; echo "GPU sweep exit $?"; wait $cpu; echo "CPU sweep exit $?"

finished=$(find "$RESULTS" -name "*.json" | wc -l)
echo "finished results: $finished / 180 in $(( $(date +%s) - started )) s"
(cd "$RESULTS" && find . -name "*.json" -print0 | tar czf "$OUT/leaderboard_runs.tgz" --null -T -)
tail -n 3 "$OUT/gpu_sweep.log" "$OUT/cpu_sweep.log"
