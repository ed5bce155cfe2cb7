"""Hugging Face interop against `transformers` itself, offline on a CPU: the exported Llama (Qwen3
with QK-norm) gives lmlab's logits and greedy tokens, its tokenizer.json lmlab's ids, export ->
import -> export is the identity, and what Llama cannot express is a one-line error."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.config import ModelConfig, load_config
from lmlab.errors import ConfigError
from lmlab.generate import Sampling, generate
from lmlab.hf import export_hf
from lmlab.inference import load_run
from lmlab.nn import TransformerLM
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.weights import export_weights
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import SHARED_DATA
from tests.helpers.tokenizer_refs import FIXTURES, need

transformers = pytest.importorskip("transformers")
EOT = "<|endoftext|>"
FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    text = need(FIXTURES / "tinystories_sample.txt")
    return Tokenizer(*train_bpe(text, 400, [EOT], num_workers=1), [EOT])


def _model(tied: bool, **switches) -> TransformerLM:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=400, context_length=48, d_model=64, num_layers=3,
                         num_heads=4, tie_embeddings=tied, **switches)
    model = TransformerLM(config).eval()
    with torch.no_grad():  # norm gains away from 1, so a misplaced one would show
        for param in model.parameters():
            if param.dim() == 1:
                param.uniform_(0.5, 1.5)
    return model


SHAPES = [(False, False), (True, False), (True, True)]
"""(tied, qk_norm): the Llama export untied and tied, and the Qwen3 one."""
SHAPE_IDS = ["untied", "tied", "qk-norm"]


@pytest.mark.parametrize("tied, qk_norm", SHAPES, ids=SHAPE_IDS)
def test_the_exported_llama_computes_lmlab_s_logits_and_tokens(tmp_path: Path, tokenizer,
                                                                 tied: bool, qk_norm: bool) -> None:
    model = _model(tied, qk_norm=qk_norm)
    folder = export_hf(model, tokenizer, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(hf).__name__ == ("Qwen3ForCausalLM" if qk_norm else "LlamaForCausalLM")
    ids = torch.randint(0, 400, (3, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=1e-4)
    prompt = ids[0, :5].tolist()
    ours = list(generate(model, prompt, 20, Sampling(temperature=0)))
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                         eos_token_id=None, pad_token_id=0)[0, 5:].tolist()
    assert theirs == ours


def _texts() -> list[str]:
    texts = [need(FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8")]
    for name in ("tinystories", "owt"):
        path = SHARED_DATA / name / "valid.txt"
        if path.is_file():
            texts.append(path.read_text(encoding="utf-8")[:200_000])
    return texts


def test_tokenizer_json_gives_lmlab_s_ids(tmp_path: Path, tokenizer, capsys) -> None:
    tokenizer.save(tmp_path / "tok")
    code, out, err = cli(capsys, "tokenizer", "export", tmp_path / "tok", "--out", tmp_path / "hf")
    assert code == 0 and "tokenizer.json (400 tokens)" in out, err
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf.eos_token == EOT and hf.eos_token_id == tokenizer.special_ids[EOT]
    for text in _texts():
        text = text[:50_000] + EOT + text[50_000:60_000]
        assert hf(text)["input_ids"] == tokenizer.encode(text)
        assert hf.decode(tokenizer.encode(text)) == text


@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", max_codepoint=0x2FFF,
                                  exclude_categories=("Cn", "Cs")), max_size=80))
def test_tokenizer_json_ids_on_any_text(tmp_path_factory, tokenizer, text: str) -> None:
    folder = tmp_path_factory.getbasetemp() / "hypothesis-tok"
    if not (folder / "tokenizer.json").exists():
        tokenizer.save(folder / "lmlab")
        from lmlab.hf import hf_tokenizer_json

        folder.mkdir(exist_ok=True)
        (folder / "tokenizer.json").write_text(hf_tokenizer_json(tokenizer))
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    assert hf.encode(text).ids == tokenizer.encode(text)


@pytest.mark.parametrize("tied, qk_norm", SHAPES, ids=SHAPE_IDS)
def test_export_import_export_is_the_identity(tmp_path: Path, tokenizer, tied: bool,
                                              qk_norm: bool, capsys) -> None:
    model = _model(tied, qk_norm=qk_norm)
    weights = tmp_path / "model.safetensors"
    export_weights(model, weights, tokenizer.to_texts())
    code, out, err = cli(capsys, "export", weights, "--format", "hf", "--out", tmp_path / "a")
    name = "Qwen3" if qk_norm else "Llama"
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'a'} ({name}, 3 layers"), err
    code, out, err = cli(capsys, "import", tmp_path / "a", "--out", tmp_path / "run")
    assert code == 0 and f"{tmp_path / 'run' / 'model.safetensors'}" in out, err
    imported, _, imported_tokenizer = load_run(tmp_path / "run")
    for (name, a), b in zip(model.state_dict().items(), imported.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    assert imported_tokenizer.vocab == tokenizer.vocab
    assert imported_tokenizer.merges == tokenizer.merges
    export_hf(imported, imported_tokenizer, tmp_path / "b")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("switch", [{"norm": "none"}, {"norm_position": "post"},
                                    {"position": "nope"}, {"ffn": "silu"}, {"ffn": "relu2"},
                                    {"logit_softcap": 30.0},
                                    {"unet_skips": True}, {"value_residual": True}])
def test_what_llama_cannot_express_is_a_one_line_error(tmp_path: Path, tokenizer,
                                                        switch) -> None:
    (key, value), = switch.items()
    with pytest.raises(ConfigError, match=rf"^model.{key}=\S+ has no Hugging Face Llama"):
        export_hf(_model(False, **switch), tokenizer, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("qk_norm, edit, message", [
    (False, ('"num_key_value_heads": 4', '"num_key_value_heads": 2'),
     "num_key_value_heads=2 has no lmlab equivalent"),
    (True, ('"use_sliding_window": false', '"use_sliding_window": true'),
     "use_sliding_window=True has no lmlab equivalent"),
    (False, ('"model_type": "llama"', '"model_type": "mistral"'),
     "a 'mistral' model; lmlab imports Llama and Qwen3"),
], ids=["grouped-query", "sliding-window", "other-model"])
def test_import_refuses_what_lmlab_cannot_represent(tmp_path: Path, tokenizer, capsys,
                                                     qk_norm: bool, edit: tuple[str, str],
                                                     message: str) -> None:
    folder = export_hf(_model(False, qk_norm=qk_norm), tokenizer, tmp_path / "hf")
    config = (folder / "config.json").read_text()
    assert edit[0] in config
    (folder / "config.json").write_text(config.replace(*edit))
    code, _, err = cli(capsys, "import", folder, "--out", tmp_path / "run")
    assert code == 1 and message in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_import_fine_tunes_and_evaluates_on_raw_text(tmp_path: Path, tokenizer,
                                                        capsys) -> None:
    """train.init_from starts from the imported weights; eval --text needs no .bin."""
    from lmlab.tokens import tokenize_file
    from lmlab.training.loop import train

    folder = export_hf(_model(False), tokenizer, tmp_path / "hf")
    assert cli(capsys, "import", folder, "--out", tmp_path / "run")[0] == 0
    text = need(FIXTURES / "tinystories_sample.txt")
    code, out, err = cli(capsys, "eval", tmp_path / "run", "--text", text, "--device", "cpu")
    assert code == 0 and out.startswith("loss ") and f"tokens of {text})" in out, err
    before = float(out.split()[1])
    data = tokenize_file(tokenizer, text, tmp_path / "data" / "train.bin", num_workers=1,
                         progress=False)
    assert data.count > 0
    config = load_config(None, [
        f"data.train_path={tmp_path / 'data' / 'train.bin'}",
        f"data.valid_path={tmp_path / 'data' / 'train.bin'}", f"run.runs_dir={tmp_path}",
        "run.name=tuned", f"train.init_from={tmp_path / 'run'}", "train.max_steps=1",
        "optim.lr_max=1e-9", "optim.lr_min=0", "optim.warmup_iters=0", "train.eval_batches=0",
        "train.device=cpu",
        "model.vocab_size=400", "model.context_length=48", "model.d_model=64",
        "model.num_layers=3", "model.num_heads=4"])
    result = train(config)  # one step at a negligible rate: the imported model, evaluated
    assert result.metrics["val/loss"] == pytest.approx(before, abs=2e-3)
    wrong = config.model_copy(update={"model": config.model.model_copy(update={"d_ff": 64})})
    wrong.run.name = "wrong"
    with pytest.raises(ConfigError, match=r"another model: model.d_ff=192 \(config has 64\)"):
        train(wrong)
    no_weight_changed = config.model_copy(deep=True, update={"model": config.model.model_copy(
        update={"dropout": 0.1, "fused_attention": True, "embedding_std": 0.02})})
    no_weight_changed.run.name = "switches"
    assert train(no_weight_changed).status == "finished"


def test_generate_with_max_new_tokens_warns_of_nothing(tmp_path: Path, tokenizer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """generation_config.json sets no max_length, which would make every
    ``generate(max_new_tokens=...)`` warn that both are set."""
    import json
    import warnings

    folder = export_hf(_model(True), tokenizer, tmp_path / "hf")
    assert "max_length" not in json.loads((folder / "generation_config.json").read_text())
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    transformers.logging.enable_propagation()  # its logger does not reach caplog otherwise
    try:
        with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
            warnings.simplefilter("always")
            out = hf.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, do_sample=False)
    finally:
        transformers.logging.disable_propagation()
    assert out.shape[1] <= 8
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [line for line in said if "max_length" in line], said
