"""Token files and batches: shapes, exact coverage of validation, seeded positions, bad files."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lmlab.errors import CheckpointError, DataError
from lmlab.tokens import load_tokens, sidecar_path
from lmlab.training.batches import RandomBatches, get_batch, sampled_batches, sequential_batches
from tests.helpers.tiny_runs import write_tokens


def test_get_batch_gives_windows_and_next_token_targets() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = get_batch(tokens, 4, 8, "cpu", np.random.default_rng(0))
    assert x.shape == y.shape == (4, 8)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # consecutive ids: the target is the next token
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(4, 7, dtype=torch.int64))


def test_get_batch_reaches_the_last_token() -> None:
    tokens = np.arange(10)
    ends = {int(get_batch(tokens, 1, 4, "cpu", np.random.default_rng(s))[1][0, -1])
            for s in range(200)}
    assert ends == {4, 5, 6, 7, 8, 9}  # every start 0..5, none past the end


def test_sampler_state_is_the_data_position() -> None:
    tokens = np.arange(10_000)
    sampler = RandomBatches(tokens, 2, 8, "cpu", seed=3)
    sampler.next_step()
    state = sampler.state_dict()
    expected = [sampler.next_step()[0][0] for _ in range(3)]
    resumed = RandomBatches(tokens, 2, 8, "cpu", seed=99)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.next_step()[0][0]) for a in expected)


def _pass_starts(sampler: RandomBatches, windows: int) -> list[int]:
    """The starts of the next ``windows`` windows, read off the inputs (tokens are positions)."""
    starts: list[int] = []
    while len(starts) < windows:
        starts += _step_rows(sampler)
    return starts[:windows]


@pytest.mark.parametrize("length", [17, 18, 100, 1_003])
def test_epochs_sampling_sees_every_window_once_per_pass(length: int) -> None:
    """A pass is the file cut into windows from an offset below the context length, shuffled:
    no window twice, none overlapping, every token but the offset's head and the tail covered."""
    tokens, context = np.arange(length), 8
    sampler = RandomBatches(tokens, 1, context, "cpu", seed=5, sampling="epochs")
    offsets = set()
    for _ in range(4):
        windows = len(sampler._order)
        starts = _pass_starts(sampler, windows)
        offset = min(starts)
        offsets.add(offset)
        assert sorted(starts) == list(range(offset, length - context, context))
        assert offset < context and length - (max(starts) + context + 1) < context
    assert len(offsets) > 1 or length - context == 1  # the offset moves from pass to pass


def test_epochs_sampling_resumes_mid_pass_and_across_passes() -> None:
    """The state is the generator as the pass was drawn plus the position in it; each step here
    takes 6 of a pass's 12 windows or crosses into the next pass."""
    tokens = np.arange(100)
    sampler = RandomBatches(tokens, 5, 8, "cpu", seed=3, sampling="epochs")
    for _ in range(7):
        state = sampler.state_dict()
        expected = [_step_rows(sampler) for _ in range(4)]
        resumed = RandomBatches(tokens, 5, 8, "cpu", seed=99, sampling="epochs")
        resumed.load_state_dict(state)
        assert [_step_rows(resumed) for _ in range(4)] == expected


def test_a_checkpoint_of_the_other_sampling_is_a_clear_error() -> None:
    tokens = np.arange(100)
    random_state = RandomBatches(tokens, 2, 8, "cpu", seed=3).state_dict()
    epochs_state = RandomBatches(tokens, 2, 8, "cpu", seed=3, sampling="epochs").state_dict()
    with pytest.raises(CheckpointError, match="data.sampling = 'epochs'"):
        RandomBatches(tokens, 2, 8, "cpu", seed=3, sampling="epochs").load_state_dict(
            random_state)
    with pytest.raises(CheckpointError, match="data.sampling = 'random'"):
        RandomBatches(tokens, 2, 8, "cpu", seed=3).load_state_dict(epochs_state)


def _step_rows(sampler: RandomBatches) -> list[list[int]]:
    """The first token of each window of the sampler's next step, micro-batch after micro-batch."""
    return [row for inputs, _ in sampler.next_step() for row in inputs[:, 0].tolist()]


@pytest.mark.parametrize("sampling", ["random", "epochs"])
def test_a_global_batch_is_the_same_however_it_is_split(sampling: str) -> None:
    """Ranks take consecutive blocks of one global draw, so the state is independent of the
    world size and 2 ranks x 4, 1 rank x 8 and grad_accum 2 x 4 see the same windows (with
    ``epochs``, 9 windows a pass: steps cross passes)."""
    tokens = np.arange(10_000 if sampling == "random" else 80)
    whole = RandomBatches(tokens, 8, 8, "cpu", seed=3, sampling=sampling)
    accumulated = RandomBatches(tokens, 4, 8, "cpu", seed=3, grad_accum=2, sampling=sampling)
    ranks = [RandomBatches(tokens, 2, 8, "cpu", seed=3, grad_accum=2, rank=r, world_size=2,
                           sampling=sampling) for r in range(2)]
    for _ in range(3):
        rows = _step_rows(whole)
        assert _step_rows(accumulated) == rows
        assert _step_rows(ranks[0]) + _step_rows(ranks[1]) == rows
    assert ranks[1].state_dict() == whole.state_dict()
    assert [inputs.shape for inputs, _ in ranks[0].next_step()] == [(2, 8), (2, 8)]


@pytest.mark.parametrize("sample", [0, 5])
def test_ranks_share_the_validation_batches(sample: int) -> None:
    """Rank r scores batches r, r + 3, ...: together the same batches as one process."""
    tokens = np.arange(100)

    def batches(**shard: int) -> list[tuple[list[list[int]], int]]:
        made = (sampled_batches(tokens, 3, 8, "cpu", sample, seed=1, **shard) if sample
                else sequential_batches(tokens, 3, 8, "cpu", **shard))
        return [(b.inputs.tolist(), b.score_from) for b in made]

    alone = batches()
    shares = [batches(rank=r, world_size=3) for r in range(3)]
    assert [alone[i::3] for i in range(3)] == shares


@pytest.mark.parametrize("length", [17, 33, 40, 100])
def test_sequential_batches_score_every_target_once(length: int) -> None:
    tokens = np.arange(length)
    scored = []
    for batch in sequential_batches(tokens, 3, 8, "cpu"):
        assert torch.equal(batch.targets, batch.inputs + 1)
        scored += batch.targets[:, batch.score_from:].flatten().tolist()
    assert scored == list(range(1, length))


def test_sampled_batches_are_the_same_each_time() -> None:
    tokens = np.arange(10_000)
    first = [b.inputs for b in sampled_batches(tokens, 2, 8, "cpu", 3, seed=0)]
    again = [b.inputs for b in sampled_batches(tokens, 2, 8, "cpu", 3, seed=0)]
    assert len(first) == 3 and all(map(torch.equal, first, again))


def test_load_tokens_maps_the_file(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "t.bin", np.arange(100) % 50, vocab_size=50, source_bytes=321)
    data = load_tokens(path, vocab_size=50, context_length=8)
    assert len(data) == 100 and data.source_bytes == 321
    assert data.tokens.dtype == np.uint16 and data.tokens[51] == 1


def test_ids_beyond_the_vocabulary_are_an_error(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "t.bin", [1, 2, 70, 3] * 10, vocab_size=100)
    with pytest.raises(DataError, match=r"t.bin holds token id 70, beyond the model's "
                                        r"vocabulary of 64 \(model.vocab_size\)"):
        load_tokens(path, vocab_size=64, context_length=8)
    ok = write_tokens(tmp_path / "ok.bin", [1, 2, 63] * 10, vocab_size=100)
    assert len(load_tokens(ok, vocab_size=64, context_length=8)) == 30  # ids checked, all fit


def test_a_dataset_shorter_than_a_context_is_an_error(tmp_path: Path) -> None:
    path = write_tokens(tmp_path / "t.bin", range(16), vocab_size=64)
    with pytest.raises(DataError, match="has 16 tokens, fewer than one context of 16 \\+ 1"):
        load_tokens(path, vocab_size=64, context_length=16)
    assert len(load_tokens(path, vocab_size=64, context_length=15)) == 16


def test_missing_and_malformed_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such token file"):
        load_tokens(tmp_path / "nope.bin", vocab_size=64, context_length=8)
    path = write_tokens(tmp_path / "t.bin", range(40), vocab_size=64)
    with open(path, "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(DataError, match="sidecar says 40"):
        load_tokens(path, vocab_size=64, context_length=8)
    sidecar_path(path).unlink()
    with pytest.raises(DataError, match="sidecar missing"):
        load_tokens(path, vocab_size=64, context_length=8)
