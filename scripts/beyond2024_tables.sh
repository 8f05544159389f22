#!/usr/bin/env bash
# results/beyond2024's leaderboard.md and compare.md, from its runs: the 3-seed grid (seeds 0..2;
# the folder also holds the 10-seed runs of tendencies.md, which are left out here).
set -euo pipefail
cd "$(dirname "$0")/.."
CHE=${CHE:-che}
R=results/beyond2024/runs
$CHE leaderboard --results $R --seeds 0..2 --agg mean --format md --out results/beyond2024/leaderboard.md
{
for pair in none+causal,none fox,none fox+causal,none stick-breaking,none ssmax-alibi,none p-rope,none bipe-alibi,none \
            none+causal,alibi fox,alibi fox+causal,alibi stick-breaking,alibi ssmax-alibi,alibi p-rope,alibi bipe-alibi,alibi \
            rope,none rope-yarn,none irope,none rnope,none pope,none path,none path+causal,none \
            rope-yarn,rope irope,rope rnope,rope pope,rope path,rope path+causal,none+causal; do
  echo "### ${pair/,/ vs }"
  echo
  $CHE compare --pes "$pair" --results $R --seeds 0..2 --format md
  echo
done
} > results/beyond2024/compare.md
echo "wrote results/beyond2024/leaderboard.md and results/beyond2024/compare.md"
