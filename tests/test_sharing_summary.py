"""`mtdqn sharing` prints a short summary of each game's kept channels per layer, not every index (a trained
dense layer's scatter printed 600 characters in one row); gates.csv keeps every channel."""

import csv

import numpy as np
import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.scripts import sharing
from mtdqn.scripts.sharing import channel_summary


def mask(total: int, kept) -> np.ndarray:
    out = np.zeros(total, bool)
    out[list(kept)] = True
    return out


@pytest.mark.parametrize("kept, text", [
    (mask(8, [0, 1, 2, 4, 6, 7]), "0-2,4,6-7"),  # 6 of 8: ranges (9 characters) beat "all but 3,5" (11)
    (mask(256, [*range(13), 15, *range(17, 31), *range(42, 256)]), "0-12,15,17-30,42-255"),  # 242 of 256
    (mask(256, [k for k in range(256) if k not in (3, 100)]), "all but 3,100"),  # shorter than 0-2,4-99,101-255
    (mask(16, range(16)), "all"),
    (mask(16, []), "none"),
    # every other channel of 256: 128 ranges; as many as fit in 40 characters (0,2,...,28 is 39), then a count
    (mask(256, range(0, 256, 2)), "0,2,4,6,8,10,12,14,16,18,20,22,24,26,28 ... +113 more ranges"),
    (mask(64, [*range(0, 60, 2), 62]), "0,2,4,6,8,10,12,14,16,18,20,22,24,26,28 ... +16 more ranges"),
])
def test_channel_summary(kept, text):
    assert channel_summary(kept) == text


def test_one_part_longer_than_the_width_is_still_shown():
    assert channel_summary(mask(300, [*range(100, 200), 250, 270]), width=5) == "100-199 ... +2 more ranges"
    assert channel_summary(mask(10, [1, 3, 5]), width=3) == "1,3 ... +1 more range"


def test_the_command_prints_summaries_and_gates_csv_keeps_every_channel(tmp_path, capsys):
    net = MultiHeadQNetwork([6, 4], gated=True, width=0.25)  # dense: 128 channels
    with torch.no_grad():
        for a in net.gate_logits:
            a[:] = -1.0
            a[0, ::2] = 1.0  # pong: every other channel
            a[1, :] = 1.0  # breakout: all
        net.gate_logits[3][1, 100] = -1.0  # but one channel of dense
    path = checkpoint.save({"games": ["pong", "breakout"], "frames": [5000] * 2,
                            "learner": {"online": net.state_dict()}, "network": net.spec()},
                           tmp_path / "run" / "checkpoints" / "frames_000005000.pt")
    sharing.main([str(path.parent.parent)])
    out = capsys.readouterr().out
    assert "| pong | dense | 64/128 | 0,2,4,6,8,10,12,14,16,18,20,22,24,26,28 ... +49 more ranges |" in out
    assert "| pong | conv1 | 4/8 | 0,2,4,6 |" in out
    assert "| breakout | dense | 127/128 | all but 100 |" in out and "| breakout | conv1 | 8/8 | all |" in out
    assert "Every kept channel, a row each, is in gates.csv." in out
    kept = [int(r["channel"]) for r in csv.DictReader((tmp_path / "run" / "gates.csv").open())
            if r["game"] == "pong" and r["layer"] == "dense" and r["kept"] == "1"]
    assert kept == list(range(0, 128, 2))
