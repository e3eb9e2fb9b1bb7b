"""Learned sharing end to end on 2 real games: train with W&B offline and a gate freeze, checkpoint,
resume, evaluate with the hard gates, `mtdqn sharing` and its groups file back into --sharing grouped."""

import pytest
import torch

import wandb_records
from test_cli import mtdqn

TRAIN = ["--suite", "pong,breakout", "--frames-per-game", "2000", "--learning-starts", "800", "--envs-per-game", "2",
         "--eval-interval", "0", "--eval-episodes", "2", "--checkpoint-interval", "1000", "--log-interval", "400",
         "--max-episode-frames", "800", "--replay-size", "2000", "--target-update-period", "50", "--batch-size", "8",
         "--conflict-interval", "0", "--seed", "3", "--sharing", "learned", "--torso-width", "0.5",
         "--gate-lr", "0.05", "--gate-sparsity", "1", "--gate-freeze-frames", "1600", "--save-replay"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    run = root / "run"
    mtdqn("train", *TRAIN, "--track", "--wandb-project", "mtdqn-test", "--out", run, cwd=root)
    first = torch.load(sorted((run / "checkpoints").glob("frames_*.pt"))[-1], weights_only=True)
    mtdqn("train", "--resume", run, "--frames-per-game", "2400", cwd=root)
    final = torch.load(sorted((run / "checkpoints").glob("frames_*.pt"))[-1], weights_only=True)
    return {"root": root, "run": run, "first": first, "final": final,
            "evaluate": mtdqn("evaluate", run, "--episodes", "2", cwd=root).stdout}


def test_checkpoints_carry_the_gates_and_the_freeze_through_a_resume(run):
    first, final = run["first"], run["final"]
    assert first["network"]["gated"] and first["network"]["width"] == 0.5 and final["network"] == first["network"]
    online = first["learner"]["online"]
    assert bool(online["gates_frozen"]) and online["gate_logits.3"].shape == (2, 256)
    assert (online["gate_logits.3"] < 3.0).any()  # the gates trained before the freeze
    for k in range(4):  # frozen: the resumed run trained on without moving a gate
        assert torch.equal(final["learner"]["online"][f"gate_logits.{k}"], online[f"gate_logits.{k}"])
    assert final["learner"]["updates"] > first["learner"]["updates"]
    assert "| pong | " in run["evaluate"] and "| breakout | " in run["evaluate"]


def test_gate_density_and_overlap_heatmap_are_logged_to_wandb(run):
    files = sorted((run["run"] / "wandb").glob("offline-run-*/run-*.wandb"))  # the first run, then its resume
    assert len(files) == 2
    history = [row for f in files for row in wandb_records.history(f)]
    keys = set().union(*history)
    assert {"train/pong/gate_density", "train/breakout/gate_density_dense", "train/gate_overlap_mean",
            "train/gate_sparsity", "train/gate_sharing"} <= keys
    assert any(k.startswith("train/gate_overlap_heatmap") for k in keys)  # an image: nested keys
    density = [row["train/pong/gate_density"] for row in history if "train/pong/gate_density" in row]
    assert density[0] == 1.0 and all(0.0 <= d <= 1.0 for d in density)


def test_sharing_command_reads_the_trained_run(run):
    out = mtdqn("sharing", run["run"], "--out", run["root"] / "sharing", cwd=run["root"])
    assert "gates frozen" in out.stdout and "| breakout | dense |" in out.stdout
    assert (run["root"] / "sharing" / "overlap.csv").is_file()


def test_the_run_folder_holds_its_newest_gates_as_mtdqn_sharing_reads_them(run):
    """The run writes gates.csv and overlap.csv at every log (the last at its budget), so kept results and
    `mtdqn atlas` have the final gates without a checkpoint: the same files `mtdqn sharing` writes from the
    final checkpoint."""
    sharing = run["root"] / "sharing"
    if not (sharing / "overlap.csv").is_file():
        mtdqn("sharing", run["run"], "--out", sharing, cwd=run["root"])
    for name in ("gates.csv", "overlap.csv"):
        assert (run["run"] / name).read_text() == (sharing / name).read_text(), name
