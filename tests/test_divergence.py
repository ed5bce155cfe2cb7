"""The divergence rules on synthetic loss traces, the unigram loss of a token file, and the reason
a diverged run records."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lmlab import tokens
from lmlab.training.divergence import WINDOW, DivergenceRules
from lmlab.training.rundir import Run, RunDir

RULES = DivergenceRules(factor=2.0, rise=1.0, warmup_steps=10, unigram_loss=6.0)


@dataclass
class History:
    first_loss: float | None = None
    recent_losses: list[float] = field(default_factory=list)
    best_smoothed_loss: float | None = None


def first_reason(trace: list[float], rules: DivergenceRules = RULES,
                 max_steps: int | None = None) -> tuple[int, str] | None:
    """Feed a loss per step of a run of ``max_steps`` (default: the trace's length) and return
    (step, reason) of the first rule that fires, or None."""
    history = History(first_loss=trace[0])
    for step, loss in enumerate(trace, start=1):
        reason = rules.check(loss, step, history, step / (max_steps or len(trace)))
        if reason is not None:
            return step, reason
    return None


def learning(steps: int) -> list[float]:
    """A healthy curve from 5.5 down towards 2.5."""
    return [2.5 + 3.0 * math.exp(-step / 40) for step in range(steps)]


def test_a_healthy_run_never_diverges() -> None:
    assert first_reason(learning(400)) is None


def test_a_spike_that_recovers_is_not_divergence() -> None:
    trace = learning(400)
    for step in range(200, 200 + WINDOW // 2 - 1):  # bad batches, far above the curve (below 2x)
        trace[step] += 8.0
    assert first_reason(trace) is None


def test_a_climb_that_stays_is_divergence() -> None:
    trace = learning(200) + [4.5] * 100  # back up ~2 nats above the best, and staying there
    step, reason = first_reason(trace)
    assert 200 < step <= 200 + WINDOW // 2 + 1  # once the climb fills half a window
    assert "climbed" in reason and "train.diverge_rise 1" in reason and f"step {step}" in reason


def test_non_finite_and_blow_up_losses_diverge_at_once() -> None:
    assert first_reason([5.0, 4.9, math.nan]) == (3, "train/loss is nan at step 3")
    step, reason = first_reason([5.0, 4.9, 10.5])
    assert step == 3 and "over 2x the first step's 5.000 (train.diverge_factor)" in reason


def test_a_run_that_learns_nothing_beyond_token_frequencies_diverges_once_past_warmup() -> None:
    stuck = [6.2] * 300  # at the unigram loss from the start: not a blow-up, no climb
    step, reason = first_reason(stuck)
    assert step == 2 * WINDOW  # not earlier: two windows show it is not falling
    assert first_reason(stuck * 10)[0] == 1000  # nor before a third of a longer run
    assert "no better than a unigram model of the training data (6.000)" in reason
    assert f"has stopped falling (+0.000 over the last {WINDOW} steps)" in reason
    no_unigram = DivergenceRules(factor=2.0, rise=1.0, warmup_steps=10, unigram_loss=None)
    assert first_reason(stuck, no_unigram) is None


def test_a_slow_run_still_falling_past_the_unigram_loss_is_not_divergence() -> None:
    """A small learning rate reaches the unigram loss late, on its way down: not stuck."""
    slow = [8.0 - 0.01 * step for step in range(600)]  # 6.0 (the unigram loss) at step 200
    assert first_reason(slow) is None


def test_the_plateau_at_the_unigram_loss_early_in_a_long_run_is_not_divergence() -> None:
    """Batch-1 runs rest at the unigram loss for hundreds of steps before they learn more."""
    plateau = [8.0 - 0.02 * step for step in range(100)] + [6.05] * 400 + learning(1500)
    assert first_reason(plateau, max_steps=2000) is None


def test_warmup_losses_set_no_best() -> None:
    """During warmup the loss may rise (the rate grows): only after it does a climb count."""
    trace = [5.0] * 5 + [3.0] * 5 + [5.5] * 40 + learning(100)
    assert first_reason(trace, DivergenceRules(2.0, 1.0, warmup_steps=60, unigram_loss=None)) \
        is None
    assert first_reason(trace, DivergenceRules(2.0, 1.0, warmup_steps=0, unigram_loss=None))


def test_unigram_loss_is_the_entropy_of_the_token_frequencies(monkeypatch) -> None:
    assert tokens.unigram_loss(np.array([0, 0, 1, 1])) == pytest.approx(math.log(2))
    assert tokens.unigram_loss(np.array([3, 1, 2, 0, 9])) == pytest.approx(math.log(5))
    ids = np.random.default_rng(0).integers(0, 50, size=1000)
    p = np.bincount(ids) / len(ids)
    expected = -sum(q * math.log(q) for q in p if q > 0)
    monkeypatch.setattr(tokens, "_SCAN_CHUNK", 7)  # read in chunks whose largest ids differ
    assert tokens.unigram_loss(ids) == pytest.approx(expected)


def test_a_diverged_status_keeps_its_reason(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.set_status("diverged", "train/loss is nan at step 7")
    assert (run.status, run.reason) == ("diverged", "train/loss is nan at step 7")
    run.set_status("finished")
    assert (run.status, run.reason) == ("finished", None)
    (tmp_path / "config.json").write_text("{}")
    run.set_status("diverged", "why")
    assert Run.load(tmp_path).reason == "why"


def test_an_evaluation_far_above_the_start_is_divergence() -> None:
    """A no-norm run logged 3.61 at its last step and scored 32.5 after its last update."""
    history = History(first_loss=7.0)
    assert RULES.check_evaluation(3.98, 300, history) is None
    reason = RULES.check_evaluation(32.5, 400, history)
    assert reason.startswith("val/loss 32.500 at step 400 is over 2x the first step's "
                             "train/loss 7.000")
    assert RULES.check_evaluation(math.inf, 400, history) == "val/loss is inf at step 400"


def test_a_run_whose_final_evaluation_blows_up_ends_diverged(tmp_path: Path,
                                                            monkeypatch) -> None:
    from lmlab.config import load_config
    from lmlab.training import loop
    from tests.helpers.tiny_runs import tiny_run

    real = loop.evaluate

    def blown_up_at_the_end(model, data, **kwargs):
        metrics = real(model, data, **kwargs)
        return {**metrics, "val/loss": 1e3} if kwargs.get("num_batches") == 3 else metrics

    monkeypatch.setattr(loop, "evaluate", blown_up_at_the_end)
    result = loop.train(load_config(None, tiny_run(tmp_path, "train.max_steps=8",
                                                   "train.eval_interval=0",
                                                   "train.eval_batches=3")))
    assert result.status == "diverged" and result.reason.startswith("val/loss 1000.000 at step 8")
    assert RunDir(result.run_dir).status == "diverged"
    assert RunDir(result.run_dir).checkpoint.is_file()  # kept, for a look at what broke


def test_the_steps_since_a_log_are_judged_one_by_one() -> None:
    """Handing the rules ten steps at a log gives the verdict of handing them one at a time."""
    trace = learning(200) + [4.5] * 100
    history = History(first_loss=trace[0])
    for last in range(10, len(trace) + 1, 10):
        reason = RULES.check_steps(trace[last - 10:last], [last / len(trace)] * 10, last, history)
        if reason is not None:
            break
    assert reason == first_reason(trace)[1]


@pytest.mark.slow
def test_the_verdict_does_not_depend_on_how_often_a_run_logs(shared_data, tmp_path) -> None:
    """The run of the issue: a slow, healthy run that rests on the unigram plateau finishes, and
    gets the same status and losses, whether it logs every 1, 5 or 10 steps."""
    from lmlab.config import load_config
    from lmlab.tokenizer import END_OF_TEXT, Tokenizer, train_bpe
    from lmlab.tokens import tokenize_file
    from lmlab.training.loop import train

    text = shared_data / "tinystories"
    tokenizer = Tokenizer(*train_bpe(text / "train.txt", 512, [END_OF_TEXT]), [END_OF_TEXT])
    for split in ("train", "valid"):
        tokenize_file(tokenizer, text / f"{split}.txt", tmp_path / f"{split}.bin")
    results = {}
    for interval in (1, 5, 10):
        config = load_config("tinystories-cpu", [
            "model.d_model=32", "model.num_layers=1", "model.vocab_size=512",
            "model.context_length=32", "train.batch_size=4", "train.max_steps=200",
            "train.time_budget_s=none", "train.schedule_over_time=false", "train.compile=false",
            "train.eval_batches=4", f"train.log_interval={interval}",
            f"data.train_path={tmp_path / 'train.bin'}",
            f"data.valid_path={tmp_path / 'valid.bin'}",
            f"run.runs_dir={tmp_path / 'runs'}", f"run.name=log-{interval}"])
        result = train(config)
        results[interval] = (result.status, result.step, round(result.metrics["val/loss"], 5))
    assert results[1] == results[5] == results[10]
    assert results[1][:2] == ("finished", 200)


def test_a_checkpoint_with_the_old_loss_sum_resumes_as_that_many_mean_steps() -> None:
    from lmlab.training.state import Progress

    progress = Progress.from_saved({"tokens": 96, "loss_sum": 6.0, "loss_steps": 3})
    assert progress.tokens == 96 and progress.unlogged == [[2.0, 0.0]] * 3
    assert Progress.from_saved({"unlogged": [[1.5, 0.25]]}).unlogged == [[1.5, 0.25]]
