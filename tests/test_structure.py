"""The learned structure as data: Jaccard overlaps by hand, groups above a threshold, and `mtdqn sharing`
end to end on a hand-made checkpoint, its groups file accepted by --sharing grouped."""

import csv

import numpy as np
import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.multitask import structure
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.validate import validate
from mtdqn.agents.multitask.sharing import parse_groups
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.training.build import network_spec
from test_cli import mtdqn

GAMES = ["pong", "breakout", "qbert"]


def test_jaccard_by_hand():
    gates = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], bool)
    expected = np.array([[1, 1 / 3, 0, 0], [1 / 3, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])  # two empty sets: equal
    np.testing.assert_allclose(structure.jaccard(gates), expected)


def test_overall_overlap_pools_the_layers_channels():
    gates = {"conv1": np.array([[1, 0], [1, 0]], bool), "dense": np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool)}
    over = structure.overlaps(gates)
    assert over["conv1"][0, 1] == 1.0 and over["dense"][0, 1] == 0.0
    assert over["all"][0, 1] == pytest.approx(1 / 5)  # one shared channel out of five kept by either
    np.testing.assert_allclose(structure.density(gates), [0.5, 0.5])


def test_groups_link_games_above_the_threshold_transitively():
    overlap = np.array([[1, .8, .1, .0], [.8, 1, .6, .0], [.1, .6, 1, .0], [0, 0, 0, 1]])
    games = ["a", "b", "c", "d"]
    assert structure.groups_above(overlap, games, 0.5) == [["a", "b", "c"], ["d"]]
    assert structure.groups_above(overlap, games, 0.7) == [["a", "b"], ["c"], ["d"]]
    assert structure.groups_above(overlap, games, 0.0) == [games]


def test_channel_ranges():
    assert structure.channel_ranges(np.array([1, 1, 1, 0, 1, 0, 1, 1], bool)) == "0-2,4,6-7"
    assert structure.channel_ranges(np.zeros(3, bool)) == "-"


@pytest.fixture
def learned_checkpoint(tmp_path):
    """pong and breakout keep the first half of every layer, qbert the second half."""
    net = MultiHeadQNetwork([6, 4, 6], gated=True, width=0.25)
    with torch.no_grad():
        for a in net.gate_logits:
            half = a.shape[1] // 2
            a[2, :half] = -1.0
            a[:2, half:] = -1.0
    state = {"games": GAMES, "frames": [5000] * 3, "learner": {"online": net.state_dict()}, "network": net.spec()}
    return checkpoint.save(state, tmp_path / "run" / "checkpoints" / "frames_000005000.pt")


def test_sharing_command_writes_tables_csvs_heatmap_and_a_groups_file_grouped_sharing_reads(learned_checkpoint,
                                                                                            tmp_path):
    run = tmp_path / "run"
    groups = tmp_path / "groups.txt"
    out = mtdqn("sharing", run, "--groups-out", groups, "--threshold", "0.5", cwd=tmp_path)
    assert "| pong | conv1 | 4/8 | 0-3 |" in out.stdout and "| qbert | dense | 64/128 | 64-127 |" in out.stdout
    assert "Jaccard overlap of kept channels, all layers' channels pooled" in out.stdout
    assert '--groups "pong,breakout;qbert"' in out.stdout
    rows = list(csv.DictReader((run / "overlap.csv").open()))
    pair = {(r["layer"], r["source"], r["target"]): float(r["jaccard"]) for r in rows}
    assert pair[("all", "pong", "breakout")] == 1.0 and pair[("dense", "pong", "qbert")] == 0.0
    kept = list(csv.DictReader((run / "gates.csv").open()))
    assert len(kept) == 3 * (8 + 16 + 16 + 128)
    assert (run / "overlap.png").stat().st_size > 1000
    # the round trip: the groups file is what --sharing grouped --groups reads
    assert parse_groups(str(groups), GAMES) == [0, 0, 1]
    cfg = validate(TrainConfig(suite=",".join(GAMES), sharing="grouped", groups=str(groups)))
    assert network_spec(cfg, GAMES, [6, 4, 6])["torso_of"] == [0, 0, 1]


@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "--threshold must be in [0, 1]"),
    (["nowhere"], "is neither a run folder nor a checkpoint file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    argv = args if args[0] == "nowhere" else [str(tmp_path), *args]
    proc = mtdqn("sharing", *argv, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("mtdqn: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_run_without_gates_is_refused(tmp_path):
    net = MultiHeadQNetwork([6, 4])
    checkpoint.save({"games": GAMES[:2], "frames": [1, 1], "learner": {"online": net.state_dict()}},
                    tmp_path / "checkpoints" / "frames_000000001.pt")
    proc = mtdqn("sharing", tmp_path, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no gates: train with --sharing learned" in proc.stderr
