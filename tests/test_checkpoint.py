"""Checkpoints: atomic round trip, and files that are not ours or would run code are refused."""

import os
import pickle

import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.core.checkpoint import CheckpointError


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    state = {"learner": {"w": torch.arange(6.0).reshape(2, 3)}, "games": ["pong", "breakout"], "frames": [4, 8]}
    path = checkpoint.save(state, tmp_path / "checkpoints" / "frames_000000008.pt")
    loaded = checkpoint.load(path)
    torch.testing.assert_close(loaded["learner"]["w"], state["learner"]["w"])
    assert loaded["games"] == ["pong", "breakout"] and loaded["frames"] == [4, 8]
    assert loaded["format"] == checkpoint.FORMAT
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    assert checkpoint.latest(tmp_path) == path


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "payload": RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a checkpoint at all", "unreadable"),
    ("truncated", "unreadable"),
    ("foreign", "not an mtdqn checkpoint"),
])
def test_bad_files_get_one_clear_line(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content == "truncated":
        checkpoint.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif content == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


def test_failed_write_leaves_the_previous_checkpoint(tmp_path):
    path = checkpoint.save({"w": torch.ones(2)}, tmp_path / "c.pt")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises((RuntimeError, pickle.PicklingError)):
        checkpoint.save({"w": Boom()}, path)
    torch.testing.assert_close(checkpoint.load(path)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
