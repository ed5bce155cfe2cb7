"""Tokens/s of one full training step, lmlab vs a built-ins reference LM, in the same process.

A step is forward, cross-entropy, backward, global-norm clipping and an AdamW update. lmlab runs
its from-scratch model, loss, clipping and AdamW; the reference runs ``bench/reference_lm.py``
(nn.Linear, nn.RMSNorm, F.scaled_dot_product_attention) with F.cross_entropy,
torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW. Both start from the same weights. Timed
rounds alternate between the two (ABBA), so a busy machine slows both alike; the ratio is
the median over rounds of lmlab tokens/s / reference tokens/s (> 1 means lmlab is faster).

    python bench/train_step.py                       # both configs, eager and compiled
    python bench/train_step.py --configs cpu-small --modes eager --rounds 3
    python bench/train_step.py --batch-size 64       # e.g. on a GPU (bf16 autocast there)
    python bench/train_step.py --autograd attention  # lmlab without a hand-written backward

``--autograd NAME`` swaps one of lmlab's hand-written autograd Functions (``silu_gate``,
``attention``, ``cross_entropy``) for autograd over the plain formula, so that the ratio with and
without it shows what the Function pays for itself. Each line also gives the bytes that the
forward pass keeps for the backward (``saved=``, parameters aside): the activation memory.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lmlab.loss  # noqa: E402
import lmlab.nn.attention  # noqa: E402
import lmlab.nn.layers  # noqa: E402
from bench.common import describe_machine  # noqa: E402
from bench.reference_lm import ReferenceLM  # noqa: E402
from lmlab.compute import GPUS, gpu_named  # noqa: E402
from lmlab.config import ModelConfig  # noqa: E402
from lmlab.device import autocast as device_autocast  # noqa: E402
from lmlab.device import resolve_device, resolve_dtype  # noqa: E402
from lmlab.nn import TransformerLM  # noqa: E402
from lmlab.nn.attention import masked_causal_attention  # noqa: E402
from lmlab.optim import AdamW, clip_grad_norm  # noqa: E402

CONFIGS = {
    # The CS336 TinyStories model.
    "cs336-17m": (
        ModelConfig(
            vocab_size=10_000,
            context_length=256,
            d_model=512,
            num_layers=4,
            num_heads=16,
            d_ff=1344,
        ),
        8,
    ),
    "cpu-small": (
        ModelConfig(vocab_size=10_000, context_length=128, d_model=256, num_layers=4, num_heads=8),
        16,
    ),
}
HYPER = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def _plain_cross_entropy(logits, targets):
    """Autograd over ``log(sum(exp(logits - max))) + max - logits[target]``, in float32: what
    lmlab's loss would be without its hand-written backward."""
    logits = logits.float().flatten(0, -2)
    peak = logits.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = (logits - peak).exp().sum(dim=-1).log() + peak.squeeze(-1)
    return (log_sum_exp - logits.gather(-1, targets.reshape(-1, 1)).squeeze(-1)).mean()


PLAIN = {  # name: (module, attribute, the formula with autograd's gradient)
    "silu_gate": (lmlab.nn.layers, "silu_gate", lambda a, b: a * torch.sigmoid(a) * b),
    "attention": (lmlab.nn.attention, "causal_attention", masked_causal_attention),
    "cross_entropy": (lmlab.loss, "cross_entropy", _plain_cross_entropy),
}


def saved_bytes(model: torch.nn.Module, loss_fn: Callable, batch, autocast) -> int:
    """Bytes of the distinct tensors one forward pass keeps for its backward, parameters aside."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs, targets = batch
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast():
        loss = loss_fn(model(inputs), targets)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(saved.values())


def make_lmlab_step(config: ModelConfig, device: torch.device, compile_model: bool):
    model = TransformerLM(config, device=device)
    optimizer = AdamW(model.parameters(), **HYPER)
    forward = torch.compile(model) if compile_model else model

    def step(inputs: torch.Tensor, targets: torch.Tensor, autocast) -> None:
        with autocast():
            loss = lmlab.loss.cross_entropy(forward(inputs), targets)  # looked up: --autograd
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def make_reference_step(config: ModelConfig, device: torch.device, compile_model: bool, weights):
    model = ReferenceLM(config).to(device)
    model.load_state_dict(weights)
    optimizer = torch.optim.AdamW(model.parameters(), **HYPER)
    forward = torch.compile(model) if compile_model else model

    def step(inputs: torch.Tensor, targets: torch.Tensor, autocast) -> None:
        with autocast():
            logits = forward(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_steps(step: Callable, batch, steps: int, device: torch.device, autocast, clock) -> float:
    synchronize(device)
    start = clock()
    for _ in range(steps):
        step(*batch, autocast)
    synchronize(device)
    return clock() - start


def bench(name: str, mode: str, args, device: torch.device) -> str:
    config, batch_size = CONFIGS[name]
    config = config.model_copy(update={"fused_attention": args.fused_attention})
    batch_size = args.batch_size or batch_size
    torch.manual_seed(0)
    compile_model = mode == "compile"
    model, lmlab_step = make_lmlab_step(config, device, compile_model)
    ref_step = make_reference_step(config, device, compile_model, model.state_dict())
    ids = torch.randint(
        0, config.vocab_size, (batch_size, config.context_length + 1), device=device
    )
    batch = (ids[:, :-1], ids[:, 1:])
    amp_dtype = resolve_dtype("auto", device)  # bf16 on GPUs that have it, as `lmlab train` does

    def autocast():
        return device_autocast(device, amp_dtype)

    saved = saved_bytes(model, lmlab.loss.cross_entropy, batch, autocast)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for step in (lmlab_step, ref_step):  # warm up (and compile)
        time_steps(step, batch, args.warmup, device, autocast, clock)
    rounds: dict[str, list[float]] = {"lmlab": [], "reference": []}
    for i in range(args.rounds):  # ABBA order: neither model always runs first
        pairs = [("lmlab", lmlab_step), ("reference", ref_step)]
        for key, step in pairs if i % 2 == 0 else pairs[::-1]:
            rounds[key].append(time_steps(step, batch, args.steps, device, autocast, clock))
    tokens = batch_size * config.context_length * args.steps
    rate = {k: tokens * len(s) / sum(s) for k, s in rounds.items()}
    # The ratio is the median over rounds of the two models' speed in that round: a burst of
    # load from elsewhere slows one round of both, not the whole comparison.
    per_round = zip(rounds["lmlab"], rounds["reference"], strict=True)
    ratio = statistics.median(reference / lmlab for lmlab, reference in per_round)
    variant = "fused-attn" if args.fused_attention else "own-attn"
    variant += "".join(f" autograd-{name}" for name in args.autograd)
    precision = "bf16" if amp_dtype is not None else "fp32"
    line = (
        f"{name:<10} {mode:<8} {variant:<10} batch={batch_size:<4} {precision} "
        f"lmlab={rate['lmlab']:>10,.0f} tok/s  reference={rate['reference']:>10,.0f} tok/s  "
        f"saved={saved / 2**20:,.0f} MB"
    )
    if device.type == "cuda":
        gpu = gpu_named(torch.cuda.get_device_name())  # lmlab's table of peaks; else no MFU
        if gpu:
            peak = GPUS[gpu]["bfloat16" if amp_dtype is not None else "float32"]
            flops = model.flops_per_token()
            line += (
                f"  mfu lmlab={rate['lmlab'] * flops / peak:.1%} "
                f"reference={rate['reference'] * flops / peak:.1%}"
            )
    return line + f"  ratio={ratio:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"]
    )
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, mps")
    parser.add_argument("--batch-size", type=int, default=None, help="override each config's batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=8, help="alternating timed rounds (ABBA)")
    parser.add_argument(
        "--fused-attention",
        action="store_true",
        help="time lmlab with the opt-in model.fused_attention fast path",
    )
    parser.add_argument(
        "--autograd",
        nargs="*",
        default=[],
        choices=list(PLAIN),
        help="swap these hand-written autograd Functions for autograd over the plain formula",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (with --threads 1, a figure that\n"
        "other load on the machine barely moves; CPU only)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.autograd:
        module, attribute, plain = PLAIN[name]
        setattr(module, attribute, plain)
    device = resolve_device(args.device)
    print(
        f"# train_step on {describe_machine(device)}, threads={torch.get_num_threads()}, "
        f"clock={args.clock}"
    )
    for name in args.configs:
        for mode in args.modes:
            print(bench(name, mode, args, device), flush=True)


if __name__ == "__main__":
    main()
