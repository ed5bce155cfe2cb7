#!/usr/bin/env bash
# The GPU check: everything lmlab should prove on one CUDA GPU, in at most 8 minutes.
#   bash bench/gpu_check.sh            # from the repository root; PYTHONPATH=src is set here
# 1. the tests that need CUDA (pytest -m cuda)
# 2. bench/train_step.py on CUDA: lmlab against the PyTorch-built-ins reference, bf16, eager and
#    compiled, the CS336 17M model at batch 64 (target: >= 1M tokens/s on an H100), with lmlab's
#    own attention and (compiled) with fused attention
# 3. bench/muon_step.py on CUDA: lmlab's Muon step (batched, bf16) against torch.optim.Muon on
#    the 17M model's block matrices
# 4. a two-minute rehearsal of the leaderboard preset (the 110M recipe, compiled)
#    on random OWT-vocabulary ids (speed and MFU only: random ids teach nothing), its tokens/s
#    and train/mfu from metrics.jsonl
# 5. the batch probe (train.batch_size=auto) for the 17M model and the leaderboard model, with
#    the peak memory at the chosen batch against lmlab estimate's (bench/batch_probe_check.py)
# 6. out of memory: `lmlab train` of the 17M model at batch 65,536 must end in the one-line
#    `error: out of GPU memory ...` (exit code 1, status failed, no traceback)
# 7. fp16: 50 steps of the 17M model in float16 with loss scaling (train.dtype=float16): finite
#    losses that fall, the logged train/loss_scale, tokens/s
# Without CUDA it says so, runs the CPU-safe part (lmlab estimate) and exits 0.
# Record the figures in docs/benchmarks.md with the card and the date.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
WORK=${WORK:-/tmp/lmlab-gpu-check}  # scratch: 100 MB of token ids and the rehearsal run
mkdir -p "$WORK"
status=0
step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

step "device"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device: skipping the GPU parts (tests -m cuda, train_step on CUDA, rehearsal)"
    python -m lmlab estimate tinystories-17m data.train_path=x data.valid_path=x
    exit 0
fi
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true

step "tests that need CUDA"
timeout 50 python -m pytest -q -m cuda tests || status=1

step "train_step on CUDA: lmlab vs the built-ins reference (bf16)"
timeout 130 python bench/train_step.py --device cuda --configs cs336-17m --modes eager compile \
    --batch-size 64 --rounds 3 --warmup 5 --steps 20 || status=1
timeout 70 python bench/train_step.py --device cuda --configs cs336-17m --modes compile \
    --fused-attention --batch-size 64 --rounds 3 --warmup 5 --steps 20 || status=1

step "Muon step on CUDA: lmlab vs torch.optim.Muon"
timeout 30 python bench/muon_step.py --config tinystories-17m --device cuda || status=1

# ---- the batch probe (issue 41, item 1): begin ----
step "batch probe: train.batch_size=auto for the 17M and the leaderboard model"
timeout 150 python bench/batch_probe_check.py || status=1
# ---- the batch probe: end ----

# ---- out of memory and fp16 (issue 41, items 2 and 3): begin ----
step "out of memory: the 17M model at batch 65,536 ends in the one-line error"
python - "$WORK" <<'PY' || status=1
import sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.helpers.tiny_runs import pattern_tokens, write_tokens
out = Path(sys.argv[1])  # learnable ids in the 17M model's vocabulary
write_tokens(out / "ts-train.bin", pattern_tokens(2_000_000, 10_000), 10_000)
write_tokens(out / "ts-valid.bin", pattern_tokens(100_000, 10_000, seed=1), 10_000)
PY
TS=("data.train_path=$WORK/ts-train.bin" "data.valid_path=$WORK/ts-valid.bin"
    "run.runs_dir=$WORK/runs" train.max_tokens=none optim.warmup_iters=5 train.ckpt_interval=0)
rm -rf "$WORK/runs/oom" "$WORK/runs/fp16"
timeout 90 python -m lmlab train tinystories-17m "${TS[@]}" run.name=oom train.max_steps=10 \
    train.batch_size=65536 --no-progress 2>"$WORK/oom.err"
code=$?
cat "$WORK/oom.err"
if [ "$code" -eq 1 ] && ! grep -q Traceback "$WORK/oom.err" \
    && tail -n 1 "$WORK/oom.err" | grep -Eq '^error: out of GPU memory at batch 65536, context 256 \(about [0-9.]+ GB needed, [0-9.]+ GB free\): lower train.batch_size, raise train.grad_accum, or set train.batch_size=auto$' \
    && [ "$(head -n 1 "$WORK/runs/oom/status")" = failed ]; then
    echo "out of memory: one line, exit code 1, status failed"
else
    echo "FAILED: expected exit code 1 (got $code), one error: line and status failed"; status=1
fi

step "fp16: 50 steps of the 17M model in float16 with loss scaling"
timeout 120 python -m lmlab train tinystories-17m "${TS[@]}" run.name=fp16 train.dtype=float16 \
    train.max_steps=50 train.batch_size=64 train.log_interval=5 train.eval_interval=0 \
    train.eval_batches=10 --no-progress || status=1
python - "$WORK/runs/fp16" <<'PY' || status=1
import json, math, sys
rows = [json.loads(line) for line in open(f"{sys.argv[1]}/metrics.jsonl") if '"train/loss"' in line]
print("\n".join(f"step {r['step']:>2}  loss {r['train/loss']:.3f}  loss scale "
                f"{r['train/loss_scale']:g}  {r['train/tokens_per_s']:,.0f} tokens/s" for r in rows))
assert rows[-1]["step"] == 50 and all(math.isfinite(r["train/loss"]) for r in rows), "not finite"
assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 1, "the loss did not fall"
PY
# ---- out of memory and fp16: end ----

step "leaderboard rehearsal: 120 s of the leaderboard preset on random ids"
python - "$WORK" <<'PY' || status=1
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, ".")
from tests.helpers.tiny_runs import write_tokens
out = Path(sys.argv[1])
rng = np.random.default_rng(0)
for split, n in (("train", 50_000_000), ("valid", 1_000_000)):
    write_tokens(out / f"{split}.bin", rng.integers(0, 32_000, n), 32_000)
PY
timeout 200 python -m lmlab sweep leaderboard --name rehearsal \
    "data.train_path=$WORK/train.bin" "data.valid_path=$WORK/valid.bin" "run.runs_dir=$WORK/runs" \
    train.time_budget_s=120 train.eval_interval=0 train.eval_batches=20 train.ckpt_interval=0 \
    || status=1
python - "$WORK/runs/rehearsal" <<'PY' || status=1
import json, statistics, sys
from pathlib import Path
metrics = next(Path(sys.argv[1]).glob("*/metrics.jsonl"))  # the sweep's one point
rows = [json.loads(line) for line in open(metrics) if '"train/loss"' in line]
late = rows[len(rows) // 2:]
print(f"rehearsal: {len(rows)} logs, tokens/s {statistics.median(r['train/tokens_per_s'] for r in late):,.0f}",
      f"MFU {statistics.median(r.get('train/mfu', float('nan')) for r in late):.1%}")
PY
exit $status
