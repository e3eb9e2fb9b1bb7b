"""MinAtar games through the whole agent: replay of multi-channel frames, the MinAtar torso and its per-game
input layer, train + evaluate + resume end to end, the protocol recorded, and bad combinations refused."""

import json
import os

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("minatar")

from mtdqn.agents.core.machine import cpu_info  # noqa: E402
from mtdqn.agents.core.network import MultiHeadQNetwork  # noqa: E402
from mtdqn.agents.core.replay import TaskBalancedReplay  # noqa: E402
from mtdqn.envs import PROTOCOLS, hns  # noqa: E402
from mtdqn.envs.minatar import reference_scores  # noqa: E402
from mtdqn.envs.protocol import frame_layout, make_env  # noqa: E402
from test_cli import mtdqn  # noqa: E402

TINY = ["--frames-per-game", "1500", "--learning-starts", "300", "--envs-per-game", "2", "--eval-episodes", "2",
        "--eval-interval", "0", "--checkpoint-interval", "750", "--replay-size", "2000", "--conflict-interval", "0",
        "--target-update-period", "50"]


def test_a_minatar_frame_is_its_whole_grid_and_the_replay_gives_it_back():
    shape, stack = frame_layout(["minatar/breakout", "minatar/seaquest"])
    assert shape == (10, 10, 10) and stack == 1
    env = make_env("minatar/breakout", 2, PROTOCOLS["minatar"])
    obs, _ = env.reset(seed=3)
    assert obs.shape == (2, 10, 10, 10) and not obs[:, 4:].any()  # breakout's 4 channels, zero-padded to 10
    replay = TaskBalancedReplay(1, 100, 2, n_step=1, frame_shape=shape, stack=stack)
    frames = []
    for t in range(6):
        frames.append(obs)
        next_obs, reward, term, trunc, _ = env.step(np.array([1, 2]))
        replay.add(0, obs, np.array([1, 2]), reward, term, trunc, np.array([t == 0, t == 0]))
        obs = next_obs
    t, e = np.array([0, 3]), np.array([1, 0])
    batch = replay.games[0].transitions(t, e, 0)
    assert batch.obs.shape == (2, 10, 10, 10)
    assert np.array_equal(batch.obs[0], frames[0][1]) and np.array_equal(batch.obs[1], frames[3][0])
    assert np.array_equal(batch.next_obs[1], frames[4][0])  # one step on, no stack to rebuild


def test_the_minatar_torso_and_its_per_game_input_layer():
    obs = torch.randint(0, 2, (4, 10, 10, 10), dtype=torch.uint8)
    games = torch.tensor([0, 1, 0, 1])
    torch.manual_seed(0)
    plain = MultiHeadQNetwork([3, 6], torso="minatar")
    torch.manual_seed(0)
    adapted = MultiHeadQNetwork([3, 6], torso="minatar", adapter=True)
    # the paper's network: conv 10 -> 16 channels 3x3 (8x8 left), dense 1,024 -> 128, heads 128 -> 3 + 6
    assert sum(p.numel() for p in plain.parameters()) == (10 * 9 * 16 + 16) + (1024 * 128 + 128) + (128 * 9 + 9)
    # the per-game 1x1 input layers start as the identity: the same Q-values as without them
    assert torch.allclose(plain(obs, games), adapted(obs, games))
    assert adapted.torsos[0].adapter.shape == (2, 10, 10)
    with torch.no_grad():
        adapted.torsos[0].adapter[1].zero_()  # game 1 now sees nothing: its Q-values no longer depend on obs
    q = adapted(torch.cat([obs[:1], 1 - obs[:1]]), torch.tensor([1, 1]))
    assert torch.equal(q[0], q[1])
    with pytest.raises(ValueError, match="torso must be 'minatar'"):
        MultiHeadQNetwork([3, 6], adapter=True)
    # the learner feeds training batches scaled as the torso scales what it acts on: 0/1 stays 0/1
    # (ALE's grey levels are divided by 255)
    from mtdqn.agents.core.learner import DQNLearner
    for network, levels in ((plain, 1.0), (MultiHeadQNetwork([3, 6]), 255.0)):
        learner = DQNLearner(network)
        assert torch.equal(learner.augment(obs, games), obs.float() / levels)


def test_train_evaluate_and_resume_two_minatar_games(tmp_path):
    run = tmp_path / "run"
    mtdqn("train", "--suite", "minatar/breakout,minatar/asterix", *TINY, "--frames-per-game", "750", "--out", run,
          cwd=tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["protocol"] == "minatar" and config["input_layer"] == "per-game"  # resolved from the games
    resumed = mtdqn("train", "--resume", run, "--frames-per-game", "1500", cwd=tmp_path)
    assert "resuming" in resumed.stderr
    # each training segment records the machine it ran on (so training times are compared on one machine)
    segments = [json.loads(line) for line in (run / "machine.jsonl").read_text().splitlines()]
    assert [(s["resumed"], s["device"], s["threads"]) for s in segments] == [(False, "cpu", 1), (True, "cpu", 1)]
    assert segments[0]["cpu"] == cpu_info()[0] and segments[0]["cores"] == os.cpu_count()
    report = json.loads(sorted((run / "evals").glob("frames_*/eval.json"))[-1].read_text())  # the resumed run's
    protocol = report["protocol"]
    assert (protocol["name"], protocol["family"], protocol["frameskip"]) == ("minatar", "minatar", 1)
    assert (protocol["repeat_action_probability"], protocol["difficulty_ramping"]) == (0.1, True)
    for record in report["games"]:
        # one frame per agent step; games advance in lockstep and a reset step counts no frame, so asterix
        # passes the budget while breakout (10-step episodes when random) catches up
        assert 1500 <= record["frames"] < 1.1 * 1500
        random, dqn = reference_scores()[record["game"]]
        assert record["hns"] == pytest.approx((record["raw_mean"] - random) / (dqn - random))
    assert "DQN-normalized" in sorted((run / "evals").glob("frames_*/eval.md"))[-1].read_text()
    evaluated = mtdqn("evaluate", run, "--episodes", "2", cwd=tmp_path).stdout
    assert "| minatar/breakout |" in evaluated and "| DQN-normalized |" in evaluated
    wrong = mtdqn("evaluate", run, "--protocol", "machado", cwd=tmp_path, check=False)
    assert wrong.returncode == 2 and "choose one of minatar, minatar_full" in wrong.stderr


@pytest.mark.parametrize("suite, given, used", [
    ("minatar/breakout,minatar/asterix", None, "per-game"),  # the input-layer study's finding (docs/minatar.md)
    ("minatar", None, "per-game"),
    ("minatar/breakout", None, "shared"),  # one game: the MinAtar paper's network
    ("pong,breakout", None, "shared"),  # ALE: one input format
    ("minatar", "shared", "shared"),  # asked for: kept
    ("minatar/breakout", "per-game", "per-game")])
def test_the_input_layer_default_follows_the_games(suite, given, used):
    from mtdqn.agents.training.config import TrainConfig
    from mtdqn.agents.training.validate import validate

    cfg = validate(TrainConfig(suite=suite, input_layer=given))
    assert cfg.input_layer == used


def test_hns_on_minatar_is_the_dqn_normalized_score_by_hand():
    # breakout: random 0.372, DQN 10.0 (envs/data/minatar_scores.csv)
    assert hns("minatar/breakout", 10.0) == pytest.approx(1.0)
    assert hns("minatar/breakout", 5.186) == pytest.approx((5.186 - 0.372) / (10.0 - 0.372))


def test_bad_combinations_are_refused_in_one_line(tmp_path):
    for args, message in (
            (["--suite", "minatar/breakout", "--protocol", "machado"], "--protocol machado is for ALE games"),
            (["--suite", "pong", "--protocol", "minatar"], "--protocol minatar is for MinAtar games"),
            (["--suite", "pong,minatar/breakout"], "mixes MinAtar and ALE games"),
            (["--suite", "minatar/brekout"], "did you mean minatar/breakout"),
            (["--suite", "pong", "--input-layer", "per-game"], "--input-layer per-game is for MinAtar games"),
            (["--suite", "minatar/breakout", "--random-shift", "4"], "use --random-shift 0")):
        proc = mtdqn("train", *args, "--out", tmp_path / "x", cwd=tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_dqn_learns_minatar_breakout_beyond_random(tmp_path):
    """10,000 steps of one-game DQN on MinAtar breakout (3-step returns, an update per step) and a greedy
    evaluation of 30 episodes: at least 2.0, over 5x the uniform random policy's 0.372 (envs/data/minatar_scores.csv).
    Measured with these settings: 3.83 (seed 0) and 4.40 (seed 1) at 10,000 steps; 2.6 at 5,000; 5.07 at 15,000."""
    run = tmp_path / "run"
    mtdqn("train", "--suite", "minatar/breakout", "--seed", "1", "--frames-per-game", "10000", "--learning-starts",
          "1000", "--epsilon-decay-frames", "10000", "--epsilon-end", "0.05", "--target-update-period", "250",
          "--train-frequency", "1", "--n-step", "3", "--learning-rate", "0.0005", "--envs-per-game", "1",
          "--eval-interval", "0", "--eval-episodes", "30", "--eval-epsilon", "0", "--conflict-interval", "0",
          "--out", run, cwd=tmp_path)
    record = json.loads((run / "evals" / "frames_000010000" / "eval.json").read_text())["games"][0]
    random, _ = reference_scores()["minatar/breakout"]
    assert record["episodes"] == 30 and record["raw_mean"] >= 2.0 > 5 * random
