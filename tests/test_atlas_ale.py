"""The atlas's check on ALE (part 4, studies/atlas/ale.yaml) runs from the repo's file at a tiny budget on real
ALE games, and `mtdqn atlas` reads its runs as it reads MinAtar's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtdqn.agents.multitask.grouping import read_affinity

ROOT = Path(__file__).resolve().parents[1]


def mtdqn(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "mtdqn.scripts", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_the_ale_check_study_runs_at_a_tiny_budget_and_the_atlas_reads_it(tmp_path):
    """studies/atlas/ale.yaml (part 4) from the repo, seed 0 at 0.1% of its budget: real ALE games, the pair in
    one agent and each game alone, each run's final evaluation over its (scaled) episodes; `mtdqn atlas` reads
    the ALE runs as it reads MinAtar's, the pair's cell being its score minus the game's alone score."""
    proc = mtdqn("study", ROOT / "studies/atlas/ale.yaml", "--budget-scale", "0.001", "--seeds", "0", "--jobs", "2",
                 cwd=tmp_path)
    assert "3 done, 0 running, 0 left" in proc.stdout
    out = tmp_path / "runs/studies/atlas-ale-x0.001/shared"
    config = yaml.safe_load((out / "asterix+space_invaders/seed0/config.yaml").read_text())
    assert (config["protocol"], config["save_replay"], config["frames_per_game"]) == ("atari100k", True, 400)
    mtdqn("atlas", out, "--predictors", "", "--out", tmp_path / "atlas", "--reps", "100")

    def score(suite: str, game: str) -> float:
        report = json.loads((out / suite / "seed0/evals/frames_000000400/eval.json").read_text())
        return next(g["hns"] for g in report["games"] if g["game"] == game)

    games, realized = read_affinity(str(tmp_path / "atlas/realized.csv"))
    assert games == ["asterix", "space_invaders"]
    assert realized[1, 0] == pytest.approx(score("asterix+space_invaders", "asterix") - score("asterix", "asterix"),
                                           abs=1e-6)
