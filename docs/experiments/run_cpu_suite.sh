#!/usr/bin/env bash
# Every preset's CPU variant with three seeds, two runs at a time, one thread each, then the
# experiment log. Run from the repository root after tokenizing (docs/experiments/README.md):
#   bash docs/experiments/run_cpu_suite.sh            # about 2 hours on two cores
#   SEEDS=1 bash docs/experiments/run_cpu_suite.sh    # a quicker check of the directions
#   EXTRA=1 bash docs/experiments/run_cpu_suite.sh    # also post_norm cpu-depth, silu_ffn cpu-long
# A re-run skips every finished run, so an interrupted suite continues where it stopped; lr_sweep
# runs first, so that the ablations reuse its runs of the baseline arm.
set -euo pipefail
SEEDS=${SEEDS:-3}
RUNS=${RUNS:-runs/experiments}
export OMP_NUM_THREADS=1
RUNS_LIST="lr_sweep:cpu no_rmsnorm:cpu post_norm:cpu nope:cpu silu_ffn:cpu owt_main:cpu"
RUNS_LIST="$RUNS_LIST leaderboard:cpu batch_size:cpu"
if [ "${EXTRA:-0}" = 1 ]; then RUNS_LIST="$RUNS_LIST post_norm:cpu-depth silu_ffn:cpu-long"; fi
for item in $RUNS_LIST; do
    preset=${item%%:*} variant=${item#*:}
    name=$preset; [ "$variant" = cpu ] || name="${preset}_$variant"
    start=$(date +%s)
    lmlab sweep "$preset" --variant "$variant" --name "$name" --seeds "$SEEDS" --parallel 2 \
        "run.runs_dir=$RUNS"
    echo "$name: $(( $(date +%s) - start )) s" | tee -a "$RUNS/times.txt"
done
lmlab report "$RUNS" --out "$RUNS/EXPERIMENTS.md"
