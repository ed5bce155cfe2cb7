#!/usr/bin/env bash
# Every preset's CPU variant with three seeds, two runs at a time, one thread each, then the
# experiment log. Run from the repository root after tokenizing (docs/experiments/README.md):
#   bash docs/experiments/run_cpu_suite.sh            # ~2 hours on two cores
#   SEEDS=1 bash docs/experiments/run_cpu_suite.sh    # a quicker check of the directions
# A re-run skips every finished run, so an interrupted suite continues where it stopped.
set -euo pipefail
SEEDS=${SEEDS:-3}
RUNS=${RUNS:-runs/experiments}
export OMP_NUM_THREADS=1
for preset in lr_sweep no_rmsnorm post_norm nope silu_ffn owt_main leaderboard batch_size; do
    start=$(date +%s)
    lmlab sweep "$preset" --variant cpu --seeds "$SEEDS" --parallel 2 \
        "run.runs_dir=$RUNS"
    echo "$preset: $(( $(date +%s) - start )) s" | tee -a "$RUNS/times.txt"
done
lmlab report "$RUNS" --out "$RUNS/EXPERIMENTS.md"
