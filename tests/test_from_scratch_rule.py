"""The from-scratch rule: lmlab's own source builds its layers, loss and optimizer from tensor ops.

Allowed from torch.nn: Parameter, the container classes and init; from torch.optim: the Optimizer
base class. Everything else (torch.nn.functional, nn.Linear and friends, torch.optim.AdamW, fused
top-level functions like torch.softmax) belongs in tests and bench only.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lmlab"
ALLOWED_NN = {
    "Module",
    "ModuleList",
    "ModuleDict",
    "ParameterList",
    "ParameterDict",
    "Parameter",
    "Buffer",
    "init",
}
ALLOWED_OPTIM = {"Optimizer"}
FUSED_TORCH_FUNCTIONS = {
    "softmax",
    "log_softmax",
    "logsumexp",
    "cross_entropy",
    "layer_norm",
    "rms_norm",
    "embedding",
    "scaled_dot_product_attention",
    "silu",
    "linear",
}


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    """Names that imports bind, and what they stand for: ``{"F": "torch.nn.functional", ...}``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # import torch.nn.functional as F
                    aliases[alias.asname] = alias.name
                else:  # import torch.nn binds "torch"
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def violations(source: str) -> list[str]:
    """Every forbidden import or attribute use in ``source``, as ``line: what``."""
    tree = ast.parse(source)
    aliases = _import_aliases(tree)
    found = []
    for node in ast.walk(tree):
        names: list[tuple[int, str]] = []
        if isinstance(node, ast.Import):
            names = [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Attribute) and (dotted := _dotted(node)):
            head, _, rest = dotted.partition(".")
            if head in aliases:
                names = [(node.lineno, f"{aliases[head]}.{rest}")]
        for line, name in names:
            if _forbidden(name):
                found.append(f"{line}: {name}")
    return found


def _forbidden(name: str) -> bool:
    parts = name.split(".")
    if name.startswith("torch.nn.functional"):
        return True
    if parts[:2] == ["torch", "nn"] and len(parts) > 2:
        return parts[2] not in ALLOWED_NN
    if parts[:2] == ["torch", "optim"] and len(parts) > 2:
        return parts[2] not in ALLOWED_OPTIM
    return parts[0] == "torch" and len(parts) == 2 and parts[1] in FUSED_TORCH_FUNCTIONS


# Opt-in fast paths: a fused kernel may stand in for lmlab's own code where a test shows both
# compute the same function (tests/test_attention.py::test_fused_attention_*).
OPT_IN_FAST_PATHS = {
    "nn/attention.py": {"torch.nn.functional", "torch.nn.functional.scaled_dot_product_attention"}
}
# Distribution is not part of the from-scratch core: it wraps the finished model from outside
# (torchtitan's separation), so PyTorch's DDP is allowed there and nowhere else.
DISTRIBUTION = {"training/distributed.py": {"torch.nn.parallel.DistributedDataParallel"}}


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_core_uses_no_builtin_layers_losses_or_optimizers(path):
    name = str(path.relative_to(SRC))
    allowed = OPT_IN_FAST_PATHS.get(name, set()) | DISTRIBUTION.get(name, set())
    found = [v for v in violations(path.read_text()) if v.split(": ", 1)[1] not in allowed]
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import torch.nn.functional as F",
        "from torch.nn import functional",
        "from torch.nn import Linear",
        "import torch\nx = torch.nn.Linear(2, 2)",
        "from torch import nn\nx = nn.RMSNorm(4)",
        "import torch\nopt = torch.optim.AdamW([])",
        "import torch\ny = torch.softmax(x, -1)",
        "import torch\ntorch.nn.utils.clip_grad_norm_([], 1.0)",
        "import torch.nn.functional as F\ny = F.silu(x)",
    ],
)
def test_rule_catches_forbidden_uses(snippet):
    assert violations(snippet)


def test_rule_ignores_local_names_that_shadow_module_aliases():
    assert violations("optim = make_optimizer()\noptim.step()\nF = 3\nF.real") == []


def test_rule_allows_parameters_containers_init_and_optimizer_base():
    source = (
        "import torch\nfrom torch import nn\n"
        "class A(nn.Module):\n  w = nn.Parameter(torch.ones(1))\n  l = nn.ModuleList()\n"
        "nn.init.trunc_normal_(w)\nclass O(torch.optim.Optimizer): pass\n"
    )
    assert violations(source) == []
