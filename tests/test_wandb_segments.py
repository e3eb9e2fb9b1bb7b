"""What a dashboard user looks for, read back from the offline W&B files: gradient norm, learning
rate, per-game Q, HNS and return spread, the run's files and tags; a resumed run as a second W&B
run in the first one's group, continuous on frames_per_game, with a sync command for both."""

import json
from pathlib import Path

import pytest
import yaml

import wandb_records
from test_cli import mtdqn

GAMES = "pong,breakout"
FIRST = ["--suite", GAMES, "--frames-per-game", "1200", "--learning-starts", "400", "--envs-per-game", "1",
         "--eval-interval", "0", "--eval-episodes", "1", "--max-episode-frames", "200", "--replay-size", "1000",
         "--log-interval", "400", "--target-update-period", "50", "--conflict-interval", "0",
         "--checkpoint-interval", "400", "--track", "--wandb-project", "mtdqn-test",
         "--wandb-tags", "variant:shared, seed:0"]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("segments")
    run = root / "run"
    first = mtdqn("train", *FIRST, "--out", run, cwd=root)
    second = mtdqn("train", "--resume", run, "--frames-per-game", "1600", cwd=root)
    return run, first.stderr, second.stderr


def segments(run: Path) -> list[Path]:
    folders = sorted((run / "wandb").glob("offline-run-*"))
    return [next(f.glob("run-*.wandb")) for f in folders]


def test_dashboard_metrics_are_logged(resumed):
    run, _, _ = resumed
    history = wandb_records.history(segments(run)[0])
    keys = set().union(*history)
    assert {"train/grad_norm", "train/learning_rate"} <= keys
    for game in ("pong", "breakout"):
        assert {f"train/{game}/q_mean", f"train/{game}/hns", f"train/{game}/raw_std", f"eval/{game}/raw_std"} <= keys
    rates = [h["train/learning_rate"] for h in history if "train/learning_rate" in h]
    assert rates and set(rates) == {1e-4}
    norms = [h["train/grad_norm"] for h in history if "train/grad_norm" in h]
    assert norms and all(n > 0 for n in norms)
    local = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    pong = [r for r in local if "train/pong/episodic_return" in r]
    # HNS of the training returns: (return - random) / (human - random), pong's random -20.7, human 14.6
    for r in pong:
        assert r["train/pong/hns"] == pytest.approx((r["train/pong/episodic_return"] + 20.7) / (14.6 + 20.7))


def test_run_files_and_tags_are_in_the_wandb_run(resumed):
    run, _, _ = resumed
    files = segments(run)[0].parent / "files"
    assert yaml.safe_load((files / "config.yaml").read_text())["suite"] == GAMES
    assert (files / "command.txt").read_text().startswith("mtdqn train --suite pong,breakout")
    assert (files / "metrics.jsonl").read_text().splitlines()[0].startswith('{"frames_per_game": 400')
    record = wandb_records.run_record(segments(run)[0])
    assert sorted(record.tags) == ["balance:equal", "preset:none", "seed:0", "sharing:shared", f"suite:{GAMES}",
                                   "variant:shared"]


def test_a_resumed_offline_run_is_a_second_wandb_run_in_the_same_group(resumed):
    run, first_err, second_err = resumed
    first, second = segments(run)
    a, b = wandb_records.run_record(first), wandb_records.run_record(second)
    assert a.run_id != b.run_id and a.run_group == b.run_group == a.run_id
    frames = [[h["frames_per_game"] for h in wandb_records.history(f) if "train/pong/epsilon" in h]
              for f in (first, second)]
    assert frames[0] == [400, 800, 1200] and frames[1] == [1600]  # continuous: the second goes on from 1,200
    assert all(h.get("_step", 0) >= 0 for h in wandb_records.history(second))
    sync = f"wandb sync {first.parent} {second.parent}"
    assert sync in second_err.splitlines()[-1] or any(l.endswith(sync) for l in second_err.splitlines())
    assert (second.parent / "files" / "command.txt").read_text().splitlines()[-1].startswith("mtdqn train --resume")
