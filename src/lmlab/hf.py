"""Hugging Face interop: an lmlab model as a Llama checkpoint (Qwen3 with QK-norm), its tokenizer
as ``tokenizer.json``, and back.

::

    run ─► export_hf ─► DIR/{config.json, model.safetensors, generation_config.json,
                             tokenizer.json, tokenizer_config.json}   (AutoModelForCausalLM)
    DIR ─► import_hf ─► run directory (model.safetensors: weights, model config, tokenizer)

lmlab's pre-norm RMSNorm + RoPE + SwiGLU model *is* Llama, with other names and one difference
that renaming cannot fix: lmlab's RoPE rotates adjacent pairs of each head's dimensions
``(0, 1), (2, 3), ...``, Llama's rotates halves ``(0, d/2), (1, d/2 + 1), ...``, at the same
frequencies. Reordering the rows of each head's query and key projections (even dimensions
first, then odd) turns one into the other: the rotated dot products are the same numbers.
With ``model.qk_norm`` the model is Qwen3 instead: Llama plus an RMSNorm on each head's queries and
keys before RoPE, one gain vector of ``d_head`` shared by the heads, as lmlab's; the gains are
reordered like the rows they scale.
The tokenizer is the same byte-level BPE (GPT-2 pre-tokenization, merges by rank), built with the
``tokenizers`` library; ``<|endoftext|>`` is the bos and eos token.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
from pydantic import ValidationError
from torch import Tensor

from lmlab.atomic import atomic_path, atomic_write_json, atomic_write_text, storage_errors
from lmlab.config import ModelConfig, describe_error
from lmlab.errors import CheckpointError, ConfigError
from lmlab.nn import TransformerLM
from lmlab.tokenizer import END_OF_TEXT, Tokenizer
from lmlab.tokenizer.files import str_to_token, token_to_str

LLAMA_ONLY = {"norm": "rms", "norm_position": "pre", "position": "rope", "ffn": "swiglu",
              "logit_softcap": None, "unet_skips": False, "value_residual": False}
"""The architecture switches Llama and Qwen3 have one setting of (dropout is not a switch: it is
dropped; ``qk_norm`` picks between the two)."""
ARCHITECTURES = {False: ("llama", "LlamaForCausalLM"), True: ("qwen3", "Qwen3ForCausalLM")}
"""``model.qk_norm`` -> the Hugging Face ``model_type`` and class that compute the same function."""
RMS_NORM_EPS = 1e-5
"""lmlab's RMSNorm epsilon (``nn.layers.RMSNorm``)."""


def check_llama(model: ModelConfig) -> None:
    """A :class:`ConfigError` naming the first key that Llama (or Qwen3, Llama with QK-norm)
    cannot express."""
    for key, value in LLAMA_ONLY.items():
        if getattr(model, key) != value:
            raise ConfigError(f"model.{key}={getattr(model, key)} has no Hugging Face Llama "
                              f"equivalent (Llama is model.{key}={value}): only a run with "
                              f"Llama's architecture (with QK-norm: Qwen3's) exports to "
                              f"--format hf")


def rope_to_halves(weight: Tensor, num_heads: int) -> Tensor:
    """Reorder a query/key projection ``(num_heads * d_head, d_model)`` from lmlab's adjacent
    RoPE pairs to Llama's halves: within each head, rows 0, 2, 4, ... then 1, 3, 5, ..."""
    d_head = weight.shape[0] // num_heads
    heads = weight.reshape(num_heads, d_head // 2, 2, -1)
    return heads.transpose(1, 2).reshape(weight.shape)


def rope_to_pairs(weight: Tensor, num_heads: int) -> Tensor:
    """The inverse of :func:`rope_to_halves`."""
    d_head = weight.shape[0] // num_heads
    heads = weight.reshape(num_heads, 2, d_head // 2, -1)
    return heads.transpose(1, 2).reshape(weight.shape)


_LAYER_NAMES = {"ln1.weight": "input_layernorm.weight",
                "attn.q_proj.weight": "self_attn.q_proj.weight",
                "attn.k_proj.weight": "self_attn.k_proj.weight",
                "attn.v_proj.weight": "self_attn.v_proj.weight",
                "attn.output_proj.weight": "self_attn.o_proj.weight",
                "ln2.weight": "post_attention_layernorm.weight",
                "ffn.w1.weight": "mlp.gate_proj.weight",
                "ffn.w3.weight": "mlp.up_proj.weight",
                "ffn.w2.weight": "mlp.down_proj.weight",
                "attn.q_norm.weight": "self_attn.q_norm.weight",
                "attn.k_norm.weight": "self_attn.k_norm.weight"}
"""lmlab's names within a block -> Llama's (SwiGLU: w1 is the gate, w3 the up projection) and
Qwen3's QK-norm gains."""
QK_NORMS = ("attn.q_norm.weight", "attn.k_norm.weight")


def _reorder(name: str, tensor: Tensor, num_heads: int,
             reorder: Callable[[Tensor, int], Tensor]) -> Tensor:
    """``tensor`` in the other RoPE order (``reorder`` is :func:`rope_to_halves` or
    :func:`rope_to_pairs`) where its rows follow a head's dimensions: every head's rows of the
    query and key projections, and the ``d_head`` entries of a QK-norm gain, which the heads
    share."""
    if name in ("attn.q_proj.weight", "attn.k_proj.weight"):
        return reorder(tensor, num_heads)
    if name in QK_NORMS:
        return reorder(tensor.unsqueeze(1), 1).squeeze(1)
    return tensor


def hf_state_dict(model: TransformerLM) -> dict[str, Tensor]:
    """The model's weights under Llama's (Qwen3's) names, query/key rows and QK-norm gains
    reordered for its RoPE; a tied head is left to ``tie_word_embeddings``."""
    config = model.config
    state = {"model.embed_tokens.weight": model.token_embeddings.weight,
             "model.norm.weight": model.ln_final.weight}
    if not config.tie_embeddings:
        state["lm_head.weight"] = model.lm_head.weight
    for i, layer in enumerate(model.layers):
        for name, tensor in layer.state_dict().items():
            tensor = _reorder(name, tensor, config.num_heads, rope_to_halves)
            state[f"model.layers.{i}.{_LAYER_NAMES[name]}"] = tensor
    return {name: tensor.detach().contiguous().clone() for name, tensor in state.items()}


def hf_config(config: ModelConfig, eos_id: int | None) -> dict[str, Any]:
    """Llama's ``config.json`` for ``config`` (Qwen3's with QK-norm, with no sliding window)."""
    model_type, architecture = ARCHITECTURES[config.qk_norm]
    sliding = {"use_sliding_window": False} if config.qk_norm else {}
    return sliding | {
        "architectures": [architecture], "model_type": model_type,
        "vocab_size": config.vocab_size, "hidden_size": config.d_model,
        "intermediate_size": config.ffn_width, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "num_key_value_heads": config.num_heads,
        "head_dim": config.d_head, "hidden_act": "silu",
        "max_position_embeddings": config.context_length, "rope_theta": config.rope_theta,
        "rms_norm_eps": RMS_NORM_EPS, "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0,
        "bos_token_id": eos_id, "eos_token_id": eos_id, "torch_dtype": "float32",
    }


def hf_tokenizer_json(tokenizer: Tokenizer) -> str:
    """``tokenizer.json`` (the ``tokenizers`` library's format) with the same ids as lmlab's."""
    try:
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise ConfigError("writing tokenizer.json needs the tokenizers library: "
                          "pip install \"lmlab[hf]\"") from None

    specials = set(tokenizer.special_tokens)
    vocab = {token_to_str(token): i for i, token in tokenizer.vocab.items()}
    merges = [(token_to_str(a), token_to_str(b)) for a, b in tokenizer.merges]
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(token, special=True, normalized=False)
                           for token in tokenizer.special_tokens])
    ids = {hf.token_to_id(token): tokenizer.special_ids[token] for token in specials}
    if any(got != want for got, want in ids.items()):
        raise ConfigError(f"special tokens {sorted(specials)} would get other ids in "
                          f"tokenizer.json ({ids})")
    return hf.to_str(pretty=True)


def tokenizer_from_hf(path: Path) -> Tokenizer:
    """An lmlab tokenizer from a byte-level BPE ``tokenizer.json``."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable tokenizer.json ({exc})") from None
    model = raw.get("model", {})
    if model.get("type") != "BPE":
        raise CheckpointError(f"{path}: a {model.get('type')} tokenizer, lmlab reads byte-level "
                              f"BPE only")
    specials = [t["content"] for t in raw.get("added_tokens", []) if t.get("special")]
    vocab = {i: str_to_token(text, str(path)) for text, i in model["vocab"].items()}
    vocab.update({t["id"]: t["content"].encode("utf-8") for t in raw.get("added_tokens", [])})
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Tokenizer(vocab, [(str_to_token(a, str(path)), str_to_token(b, str(path)))
                             for a, b in merges], specials)


def export_hf(model: TransformerLM, tokenizer: Tokenizer, out: str | Path) -> Path:
    """Write a Llama (Qwen3 with QK-norm) checkpoint of ``model`` and its tokenizer to the folder
    ``out`` (each file atomically), loadable offline by ``AutoModelForCausalLM`` and
    ``AutoTokenizer``."""
    config = model.config
    check_llama(config)
    out = Path(out)
    eos = tokenizer.special_ids.get(END_OF_TEXT)
    with storage_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", hf_config(config, eos))
    # no max_length: config.json's max_position_embeddings already bounds the context, and a
    # max_length here makes every generate(max_new_tokens=...) warn that both are set
    atomic_write_json(out / "generation_config.json", {"bos_token_id": eos, "eos_token_id": eos})
    with atomic_path(out / "model.safetensors") as tmp:
        safetensors.torch.save_file(hf_state_dict(model), str(tmp), {"format": "pt"})
    atomic_write_text(out / "tokenizer.json", hf_tokenizer_json(tokenizer) + "\n")
    atomic_write_json(out / "tokenizer_config.json",
                      tokenizer_config(tokenizer, config.context_length))
    return out


def tokenizer_config(tokenizer: Tokenizer, context_length: int | None) -> dict[str, Any]:
    """``tokenizer_config.json``: what ``AutoTokenizer`` needs beside ``tokenizer.json``."""
    eos = END_OF_TEXT if END_OF_TEXT in tokenizer.special_ids else None
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eos,
                              "eos_token": eos, "clean_up_tokenization_spaces": False}
    if context_length is not None:
        config["model_max_length"] = context_length
    return config


def import_hf(folder: str | Path, out: str | Path) -> tuple[TransformerLM, ModelConfig]:
    """A Llama (or Qwen3) checkpoint folder as an lmlab model, written to the run directory
    ``out`` as ``model.safetensors`` (weights, model config and tokenizer, as ``lmlab export``
    writes it): ``lmlab generate`` and ``lmlab eval`` take the folder, ``train.init_from``
    fine-tunes from it. Architectures lmlab cannot represent are a one-line error."""
    from lmlab.weights import WEIGHTS_FILE, export_weights

    folder, out = Path(folder), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty: choose another --out")
    hf = _read_json(folder / "config.json")
    qk_norm = {model_type: qk for qk, (model_type, _) in ARCHITECTURES.items()}.get(
        hf.get("model_type"))
    if qk_norm is None:
        raise CheckpointError(f"{folder}: a {hf.get('model_type')!r} model; lmlab imports "
                              f"Llama and Qwen3 (model_type llama or qwen3) only")
    heads = hf["num_attention_heads"]
    for key, expected in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False),
                          ("rope_scaling", None), ("use_sliding_window", False),
                          ("num_key_value_heads", heads),
                          ("head_dim", hf["hidden_size"] // heads),
                          ("rms_norm_eps", RMS_NORM_EPS)):
        if hf.get(key, expected) != expected:
            raise CheckpointError(f"{folder}/config.json: {key}={hf[key]!r} has no lmlab "
                                  f"equivalent (lmlab needs {expected!r})")
    tokenizer = tokenizer_from_hf(folder / "tokenizer.json")
    try:
        config = ModelConfig(
            vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"], num_heads=heads, d_ff=hf["intermediate_size"],
            context_length=hf["max_position_embeddings"],
            rope_theta=float(hf.get("rope_theta", 10_000.0)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)), qk_norm=qk_norm)
    except ValidationError as exc:
        raise CheckpointError(f"{folder}/config.json: {describe_error(exc, ModelConfig)}"
                              ) from None
    model = TransformerLM(config)
    weights: dict[str, Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        weights.update(safetensors.torch.load_file(path))
    if not weights:
        raise CheckpointError(f"{folder}: no .safetensors weights")
    model.load_state_dict(_from_hf_names(weights, config))
    export_weights(model, out / WEIGHTS_FILE, tokenizer.to_texts())
    return model.eval(), config


def _from_hf_names(weights: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Llama's (Qwen3's) state dict -> lmlab's (the inverse of :func:`hf_state_dict`)."""
    lookup = {hf: ours for ours, hf in _LAYER_NAMES.items()
              if config.qk_norm or ours not in QK_NORMS}
    state: dict[str, Tensor] = {}
    try:
        state["token_embeddings.weight"] = weights.pop("model.embed_tokens.weight")
        state["ln_final.weight"] = weights.pop("model.norm.weight")
        state["lm_head.weight"] = weights.pop("lm_head.weight", state["token_embeddings.weight"])
        for i in range(config.num_layers):
            for hf_name, ours in lookup.items():
                tensor = weights.pop(f"model.layers.{i}.{hf_name}").float()
                state[f"layers.{i}.{ours}"] = _reorder(ours, tensor, config.num_heads,
                                                        rope_to_pairs)
    except KeyError as exc:
        raise CheckpointError(f"the Llama weights lack {exc.args[0]}") from None
    extra = [name for name in weights if "rotary_emb" not in name]
    if extra:
        raise CheckpointError(f"the Llama weights hold tensors lmlab has no place for: "
                              f"{', '.join(extra[:5])}")
    return {name: tensor.float() for name, tensor in state.items()}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: not a Hugging Face model folder") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
