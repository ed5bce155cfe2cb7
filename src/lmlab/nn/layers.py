"""The basic layers of the LM, built from ``nn.Parameter`` and tensor ops only.

Weights use the ``(out_features, in_features)`` layout of PyTorch and the CS336 reference, so state
dicts move between lmlab and other Llama-style code without transposes.
"""

import math

import torch
from torch import Tensor, nn


def _trunc_normal(shape: tuple[int, ...], std: float, device, dtype) -> Tensor:
    """A tensor drawn from N(0, std^2) with values beyond +-3 std redrawn (truncated normal)."""
    weight = torch.empty(shape, device=device, dtype=dtype)
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


def softmax(x: Tensor, dim: int) -> Tensor:
    """Numerically stable softmax along ``dim`` (any shape): the row max is subtracted before
    ``exp``, so large scores neither overflow nor lose precision. Autograd derives its gradient:
    it runs in sampling and in the reference attention, not on the training path.

    >>> softmax(torch.tensor([1000.0, 1000.0]), dim=0)
    tensor([0.5000, 0.5000])
    """
    exp = (x - x.amax(dim=dim, keepdim=True)).exp()
    return exp / exp.sum(dim=dim, keepdim=True)


def silu(x: Tensor) -> Tensor:
    """SiLU / swish activation, ``x * sigmoid(x)``."""
    return x * torch.sigmoid(x)


class _SiLUGate(torch.autograd.Function):
    """``silu(a) * b``, the gate of SwiGLU, with its gradient written out.

    Shapes: ``a`` and ``b`` alike, e.g. ``(batch, seq, d_ff)``. Why: autograd over
    ``a * sigmoid(a) * b`` runs six element-wise passes over the largest activations backward;
    keeping ``s = sigmoid(a)`` and ``h = silu(a)`` from the forward leaves four:
    ``db = g h`` and ``da = g b silu'(a)`` with ``silu'(a) = s + h (1 - s)``.
    It pays in memory (a step keeps less for its backward), not in speed (measured:
    docs/benchmarks.md, "The architecture change (issue 16), before and after; what each
    hand-written backward pays").
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        s = torch.sigmoid(a)
        h = a * s
        ctx.save_for_backward(s, h, b)
        return h * b

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        s, h, b = ctx.saved_tensors
        grad_a = torch.addcmul(s, h, 1 - s).mul_(b).mul_(grad)
        return grad_a, grad * h


def silu_gate(a: Tensor, b: Tensor) -> Tensor:
    """``silu(a) * b`` (same shapes in and out); its backward keeps less than the formula's."""
    return _SiLUGate.apply(a, b)


class Linear(nn.Module):
    """``y = x W^T`` without bias (Llama-style LMs use none).

    Init: truncated normal with std ``sqrt(2 / (in + out))`` so activations keep their scale.
    Shapes: ``(..., in_features) -> (..., out_features)``; weight ``(out_features, in_features)``.
    """

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        std = math.sqrt(2.0 / (in_features + out_features))
        self.weight = nn.Parameter(_trunc_normal((out_features, in_features), std, device, dtype))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}"


class Embedding(nn.Module):
    """Lookup table from token ids to vectors; init truncated normal with std ``std`` (1 in the
    CS336 spec).

    Shapes: ids ``(...)`` -> ``(..., embedding_dim)``; weight ``(num_embeddings, embedding_dim)``.
    Ids outside ``[0, num_embeddings)`` raise ``ValueError`` instead of an opaque index error
    (checked eagerly; skipped inside ``torch.compile`` where it would break the graph).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None,
                 std: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(
            _trunc_normal((num_embeddings, embedding_dim), std, device, dtype)
        )

    def forward(self, token_ids: Tensor) -> Tensor:
        if not torch.compiler.is_compiling() and token_ids.numel() > 0:
            low, high = int(token_ids.min()), int(token_ids.max())
            if low < 0 or high >= self.weight.shape[0]:
                bad = low if low < 0 else high
                raise ValueError(
                    f"token id {bad} is out of range for a vocabulary of {self.weight.shape[0]}"
                )
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.weight.shape[0]}, embedding_dim={self.weight.shape[1]}"


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain (init 1).

    Computed in float32 and cast back: squaring bf16 activations loses too much precision.
    Shapes: ``(..., d_model) -> (..., d_model)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        in_dtype = x.dtype
        x = x.float()
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x * inv_rms * self.weight.float()).to(in_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Dropout(nn.Module):
    """Zero each entry with probability ``p`` while training, and scale the survivors by
    ``1 / (1 - p)`` so the expected value is unchanged and evaluation needs no rescaling.

    A regulariser for runs that see their data many times: no unit can count on another being
    there, so the model cannot simply memorise. The identity in ``eval()`` mode or with ``p = 0``.
    Shapes: any, unchanged.
    The mask compares 16 random bits per entry with ``p``, four entries to each 64-bit
    ``randint`` draw, so ``p`` is rounded to a multiple of 1 / 65,536 (0.1 drops with
    probability 0.100006). Why: one float from ``uniform_`` costs about what a 64-bit integer
    does, and ``torch.compile`` draws ``randint`` inside its kernels but leaves ``uniform_``
    outside them (measured: docs/benchmarks.md, "`tinystories-cpu` in ten minutes", "Dropout
    masks drawn inside the compiled kernels"). The comparison is in integers whatever ``x``'s
    dtype, so a bfloat16 activation is dropped with probability ``p`` too.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 2**16) - 2**15
        """An entry is kept when its draw, uniform on the int16 range [-2^15, 2^15), is at least
        this: a fraction ``round(p * 2^16) / 2^16`` of the draws fall below it."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        count = x.numel()
        # every bit random (2^63 - 1 itself is never drawn); randint, not random_, which
        # torch.compile cannot trace
        words = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64,
                              device=x.device)
        draws = words.view(torch.int16)[:count].view(x.shape)
        scaled_keep = (draws >= self.threshold).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scaled_keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class NoNorm(nn.Module):
    """Stands where a norm would be in the ``norm = "none"`` ablation; returns its input."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class SwiGLU(nn.Module):
    """Gated feed-forward ``W2(SiLU(W1 x) * W3 x)`` (Llama's FFN).

    Shapes: ``(..., d_model) -> (..., d_model)``, hidden ``(..., d_ff)``.
    """

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)
        self.w3 = Linear(d_model, d_ff, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu_gate(self.w1(x), self.w3(x)))


class FeedForward(nn.Module):
    """Ungated feed-forward ``W2(act(W1 x))``: ``silu`` (the ablation of SwiGLU's gate) or
    ``relu2``, ``ReLU(W1 x)^2`` (the modded-nanogpt speedrun's FFN: sparse, cheap, and at
    equal parameters as good as SwiGLU at small scale).

    Shapes: ``(..., d_model) -> (..., d_model)``, hidden ``(..., d_ff)``.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", device=None,
                 dtype=None):
        super().__init__()
        if activation not in ("silu", "relu2"):
            raise ValueError(f"unknown activation {activation!r} (valid: silu, relu2)")
        self.activation = activation
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.w1(x)
        hidden = silu(hidden) if self.activation == "silu" else hidden.clamp(min=0).square()
        return self.w2(hidden)
