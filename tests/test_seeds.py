"""Seeds in one process (agents/core/seeds.py, training/seed_runner.py, `train --seeds`): seed s learns what it
learns alone, a seed that owes no update is left exactly as it was, and the CLI lays out, logs, resumes and
refuses as a researcher expects."""

import json

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("minatar")

from mtdqn.agents.core.learner import DQNLearner, greedy_actions  # noqa: E402
from mtdqn.agents.core.network import MultiHeadQNetwork  # noqa: E402
from mtdqn.agents.core.replay import Batch  # noqa: E402
from mtdqn.agents.core.seeds import SeedBatch  # noqa: E402
from mtdqn.agents.training.config import TrainConfig  # noqa: E402
from mtdqn.agents.training.runner import Trainer  # noqa: E402
from mtdqn.agents.training.seed_runner import SeedBatchTrainer  # noqa: E402
from test_cli import mtdqn  # noqa: E402
from wandb_records import config as wandb_config  # noqa: E402
from wandb_records import history, run_file  # noqa: E402

GAMES = "minatar/breakout,minatar/asterix"
TOLERANCE = dict(rtol=0, atol=1e-5)  # float rounding: a batched kernel sums in another order


def random_batch(rng, games=2, per_game=16) -> Batch:
    n = games * per_game
    return Batch(obs=(rng.random((n, 10, 10, 10)) < 0.1).astype(np.uint8), action=rng.integers(0, 3, n),
                 rewards=rng.random((n, 3)).astype(np.float32), terminated=rng.random(n) < 0.2,
                 steps=rng.integers(1, 4, n), next_obs=(rng.random((n, 10, 10, 10)) < 0.1).astype(np.uint8),
                 game=np.repeat(np.arange(games), per_game))


def learner(seed: int) -> DQNLearner:
    torch.manual_seed(seed)
    return DQNLearner(MultiHeadQNetwork([3, 5], torso="minatar"), learning_rate=1e-3, target_update_period=4,
                      max_grad_norm=1.0, balance="weighted", task_weights=[1.0, 0.5], intensity_noise=0.1,
                      generator=torch.Generator().manual_seed(seed))  # augmentation: a stream of its own per seed


def test_a_seed_that_owes_no_update_is_left_as_it_was_and_the_others_step_as_alone():
    """Seeds step on different updates (a MinAtar seed owes none on a reset step): each one's weights, target
    (synced after its own 4th update), Adam moments and step count equal a learner updated alone on its batches,
    and a resting seed draws nothing from its augmentation stream."""
    rng = np.random.default_rng(0)
    alone, batched = [learner(s) for s in range(3)], [learner(s) for s in range(3)]
    seeds = SeedBatch(batched)
    for i in range(13):
        batches = [random_batch(rng) if (i + s) % 3 else None for s in range(3)]
        for a, b in zip(alone, batches):
            if b is not None:
                a.update(b)
        seeds.update(batches)
    seeds.unstack()
    assert [a.updates for a in alone] == [b.updates for b in batched] == [8, 9, 9]
    for a, b in zip(alone, batched):
        for (name, p), q, tp, tq in zip(a.online.named_parameters(), b.online.parameters(), a.target.parameters(),
                                        b.target.parameters()):
            torch.testing.assert_close(q, p, **TOLERANCE, msg=name)
            torch.testing.assert_close(tq, tp, **TOLERANCE, msg=name)
            sa, sb = a.optimizer.state[p], b.optimizer.state[q]
            assert float(sa["step"]) == float(sb["step"]) == a.updates
            torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=1e-5, atol=1e-12)
    # acting: every seed's greedy actions from one forward equal each network's own
    obs = (rng.random((3, 6, 10, 10, 10)) < 0.2).astype(np.uint8)
    game = np.array([0, 0, 0, 1, 1, 1])
    greedy = seeds.greedy(obs, game)
    for s, b in enumerate(batched):
        assert greedy[s].tolist() == greedy_actions(b.online, obs[s], torch.from_numpy(game), "cpu").tolist()
    # a seed left out of an update: not one bit of it moves
    before = [p.clone() for p in batched[0].online.parameters()]
    seeds.update([None, random_batch(rng), random_batch(rng)])
    seeds.unstack()
    assert all(torch.equal(p, q) for p, q in zip(before, batched[0].online.parameters()))


def config(out, seed: int) -> TrainConfig:
    # 2 games, an update per step from 200 frames per game: ~650 updates each, targets synced every 50. Actions
    # stay uniform (epsilon 1): rounding could otherwise flip a greedy action between near-equal Q-values and
    # the trajectories part (the batched greedy actions are checked on their own above)
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig(suite=GAMES, frames_per_game=900, learning_starts=200, envs_per_game=1, train_frequency=1,
                       batch_size=16, replay_size=2000, epsilon_end=1.0,
                       target_update_period=50, learning_rate=1e-3, conflict_interval=300,
                       conflict_batch_size=16, eval_interval=0, eval_episodes=2, log_interval=300,
                       checkpoint_interval=450, keep_checkpoints=0, seed=seed, out=str(out))


def test_seed_s_in_a_batch_learns_what_seed_s_alone_learns(tmp_path):
    """Two seeds of a 2-game MinAtar agent trained together and each alone: the same episodes, update counts,
    logged losses, transfer measurements, checkpoints and final weights, to float rounding."""
    alone = []
    for seed in (0, 1):
        t = Trainer(config(tmp_path / f"alone{seed}", seed), tmp_path / f"alone{seed}")
        t.run()
        alone.append(t)
    batched = [Trainer(config(tmp_path / f"seed{s}", s), tmp_path / f"seed{s}") for s in (0, 1)]
    results = SeedBatchTrainer(batched).run()
    assert all(r["report"] is not None for r in results)
    for a, b in zip(alone, batched):
        assert a.frames.tolist() == b.frames.tolist() and a.episodes.tolist() == b.episodes.tolist()
        assert a.learner.updates == b.learner.updates > 600
        for p, q in zip(a.learner.online.parameters(), b.learner.online.parameters()):
            torch.testing.assert_close(q, p, **TOLERANCE)
        rows = [[json.loads(line) for line in (t.run_dir / "metrics.jsonl").read_text().splitlines()] for t in (a, b)]
        assert len(rows[0]) == len(rows[1]) > 3
        for ra, rb in zip(*rows):
            assert ra.keys() == rb.keys()
            for key in (k for k in ra if k.startswith(("train/", "conflict/")) and isinstance(ra[k], float)):
                assert rb[key] == pytest.approx(ra[key], rel=1e-3, abs=1e-5), key
        assert sorted(p.name for p in (a.run_dir / "checkpoints").glob("*.pt")) == sorted(
            p.name for p in (b.run_dir / "checkpoints").glob("*.pt"))


def final_frames(run) -> int:
    """The frames per game of a run's newest evaluation."""
    return max(int(p.parent.name.split("_")[1]) for p in (run / "evals").glob("frames_*/eval.json"))


def test_train_seeds_lays_out_one_run_per_seed_logs_each_and_resumes_them(tmp_path):
    tiny = ["--suite", GAMES, "--frames-per-game", "600", "--learning-starts", "200", "--eval-episodes", "2",
            "--eval-interval", "0", "--checkpoint-interval", "300", "--replay-size", "1000", "--conflict-interval", "0"]
    mtdqn("train", *tiny, "--seeds", "3,5", "--track", "--out", "batch", cwd=tmp_path)
    for seed in (3, 5):
        run = tmp_path / "batch" / f"seed{seed}"
        assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed
        assert final_frames(run) >= 600
        logged = run_file(run / "wandb")  # each seed its own W&B run, in one group
        assert wandb_config(logged)["seed"] == seed and wandb_config(logged)["wandb_group"] == "batch"
        assert [r["frames_per_game"] for r in history(logged) if "train/minatar/breakout/td_loss" in r]
    resumed = mtdqn("train", "--resume", "batch", "--frames-per-game", "900", cwd=tmp_path)
    assert "resuming seed3, seed5 of batch" in resumed.stderr
    for seed in (3, 5):
        assert final_frames(tmp_path / "batch" / f"seed{seed}") >= 900
    done = mtdqn("train", "--resume", "batch", cwd=tmp_path)
    assert "already finished" in done.stdout
    # seeds resume together only as one configuration
    config = tmp_path / "batch" / "seed5" / "config.yaml"
    config.write_text(config.read_text().replace("learning_rate: 0.0001", "learning_rate: 0.001"))
    proc = mtdqn("train", "--resume", "batch", "--frames-per-game", "1200", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "differs from" in proc.stderr and "in learning_rate" in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "1,1"], "--seeds '1,1' must name 2 or more distinct integers >= 0"),
    (["--seeds", "1,x"], "--seeds '1,x' must be integers >= 0 separated by commas"),
    (["--seeds", "1,2", "--seed", "4"], "drop --seed"),
    (["--seeds", "1,2", "--replay-balance", "proportional"], "--seeds cannot run with --replay-balance proportional"),
    (["--seeds", "1,2", "--sharing", "separate"], "--seeds cannot run with --sharing separate"),
    (["--seeds", "1,2", "--balance", "pcgrad", "--on-nonfinite", "skip"],
     "--seeds cannot run with --balance pcgrad, --on-nonfinite skip"),
])
def test_train_seeds_refuses_what_one_computation_over_seeds_cannot_do(tmp_path, flags, message):
    proc = mtdqn("train", "--suite", GAMES, *flags, "--out", "batch", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "batch").exists()


def test_train_seeds_writes_only_into_a_folder_of_its_own(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("")
    for out, message in (("runs", "holds 'notes.txt', which is not a seed<k> run"), ("file", "is a file")):
        proc = mtdqn("train", "--suite", GAMES, "--seeds", "0,1", "--out", out, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]
