"""The Ray backend on a local Ray instance: 2 actors on real games train, survive a killed actor with
every frame accounted for, checkpoint, evaluate, and swap checkpoints with the local backend."""

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from mtdqn.agents.bench import benchmark  # noqa: E402
from mtdqn.agents.core import checkpoint  # noqa: E402
from mtdqn.agents.core.actor import Actor  # noqa: E402
from mtdqn.agents.training.config import TrainConfig  # noqa: E402
from mtdqn.agents.distributed.ray_trainer import ActorWorker, RayTrainer, _Lane, connect, flush, placement  # noqa: E402
from mtdqn.agents.core.replay import TaskBalancedReplay  # noqa: E402
from mtdqn.agents.training.runner import Trainer  # noqa: E402
from mtdqn.envs import FRAMESKIP, PROTOCOLS  # noqa: E402
from mtdqn.scripts import bench  # noqa: E402
from mtdqn.scripts.cli import main as cli_main  # noqa: E402

GAMES = ["pong", "breakout"]
PUBLISH = 10  # updates between weight copies to the actors


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    connect(None, 3)  # a CPU slot per actor: the bench runs 1 + 2 at once
    yield
    ray.shutdown()


def config(out, **kw) -> TrainConfig:
    base = dict(suite=",".join(GAMES), frames_per_game=3200, envs_per_game=2, learning_starts=800, eval_interval=0,
                eval_episodes=1, max_episode_frames=800, replay_size=4000, log_interval=400,
                checkpoint_interval=1600, target_update_period=50, keep_checkpoints=0, save_replay=True,
                backend="ray", num_actors=2, chunk_steps=8, weight_publish_period=PUBLISH, out=str(out))
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig(**base | kw)


def test_placement_rule():
    assert placement(5, 2) == [[0, 1, 2, 3, 4]] * 2  # fewer actors than games: every actor, every game
    assert placement(2, 2) == [[0], [1]]
    assert placement(2, 3) == [[0], [1], [0]]  # otherwise actor i steps game i mod games


@pytest.mark.parametrize("sharing", ["separate", "grouped"])
def test_actors_act_with_the_learners_sharing_mode(sharing):
    """An actor builds the learner's architecture (torsos per game or group) and acts on its weights."""
    from mtdqn.agents.training.build import build_learner

    cfg = TrainConfig(suite="pong,breakout", sharing=sharing, groups="breakout;pong" if sharing == "grouped" else None)
    learner = build_learner(cfg, ["pong", "breakout"], [6, 4])
    spec = learner.online.spec()
    worker = ActorWorker(["breakout"], [1], 1, PROTOCOLS["machado"].to_dict(), spec, 1, "fp32")
    weights = {k: v.numpy() for k, v in learner.online.state_dict().items()}
    out = worker.collect(2, np.zeros(2), generation=0, seed=1, weights=weights, version=0)
    assert out["version"] == 0 and len(worker.network.torsos) == 2
    for k, v in learner.online.state_dict().items():
        assert torch.equal(worker.network.state_dict()[k], v), k
    obs = torch.from_numpy(worker.actor.obs)
    with torch.no_grad():  # the actor's game 0 is the network's head 1 (breakout)
        torch.testing.assert_close(worker.policy(obs, torch.zeros(1, dtype=torch.long)),
                                   learner.online(obs, torch.ones(1, dtype=torch.long)))


def test_a_lost_actor_s_episodes_end_as_a_time_limit_ends_them():
    """Steps of one pong env, the actor lost after 6, a restarted one's 6 steps: the replay holds
    the first 6, a truncation, the frame after it, then the new episode."""
    worker = ActorWorker(["pong"], [0], 1, PROTOCOLS["machado"].to_dict(), {"action_counts": [6]}, 1)
    lane, replay = _Lane(), TaskBalancedReplay(1, 100, 1, n_step=3)
    before = worker.collect(6, np.ones(1), generation=0, seed=1, weights=None, version=-1)
    lane.push({k: before[k] for k in replay.games[0].ARRAYS}, before["next_frame"], before["next_first"])
    lane.cut()
    after = worker.collect(6, np.ones(1), generation=1, seed=2, weights=None, version=-1)
    assert after["fresh"] and after["first"][0, 0]
    lane.push({k: after[k] for k in replay.games[0].ARRAYS}, after["next_frame"], after["next_first"])
    flush([lane], replay, 0)
    g = replay.games[0]
    assert g.added == 12 and lane.count == 1  # 6 + the frame after them + 5; the newest step stays queued
    assert not before["terminated"].any() and g.truncated[:7, 0].tolist() == [False] * 5 + [True, False]
    np.testing.assert_array_equal(g.frames[6, 0], before["next_frame"][0])
    assert g.first[7, 0] and not g.first[1:7, 0].any()
    batch = g.transitions(np.array([4, 5]), np.array([0, 0]), 0)  # windows stop at the cut and bootstrap
    assert batch.steps.tolist() == [2, 1] and not batch.terminated.any()
    np.testing.assert_array_equal(batch.next_obs[:, -1], np.stack([before["next_frame"][0]] * 2))
    t, _ = g.sample_indices(500, np.random.default_rng(0))
    assert 6 not in t  # the frame after the cut starts no transition


def applied_frames(t: RayTrainer, game: int) -> int:
    """Frames of the steps the learner holds for `game` (replay + queued), read from their flags:
    a slot after an episode end (or a cut) holds a frame no action was applied on."""
    E, g = t.cfg.envs_per_game, t.replay.games[game]
    assert g.added <= g.slots  # the replay never wrapped: it holds every step received
    total = 0
    for k, i in enumerate(i for i, own in enumerate(t.actor.placement) if game in own):
        lanes = slice(k * E, (k + 1) * E)
        queued = t.actor.queues[i, game].parts
        done = np.concatenate([(g.terminated | g.truncated)[:g.added, lanes],
                               *[p["terminated"] | p["truncated"] for p in queued]])
        total += int((~done[:-1]).sum() + done.shape[1])  # every slot but those after a done
    return total * FRAMESKIP


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    """2 actors, 2 games; actor 0 killed by Ray at 1600 frames per game, actor 1's process by SIGKILL
    at 2000; run to 3200."""
    out = tmp_path_factory.mktemp("ray") / "run"
    t = RayTrainer(config(out), out)
    puts = []
    real_put = ray.put
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray, "put", lambda value: puts.append(1) or real_put(value))
        versions = []
        while t.frames.min() < 1600:
            versions += t.step(t.epsilon())[0].versions
        at_kill = t.learner.updates
        ray.kill(t.actor.handles[0], no_restart=False)
        pid = t.actor.pids[1]  # the process that sent actor 1's last chunk
        while t.frames.min() < 2000:
            versions += t.step(t.epsilon())[0].versions
        os.kill(pid, signal.SIGKILL)
        result = t.run()
    return t, result, at_kill, versions, len(puts), out


def test_two_actors_train_through_a_killed_actor_to_the_frame_target(ray_run):
    t, result, at_kill, versions, puts, _ = ray_run
    assert t.actor.lanes == [2, 2] and t.actor.placement == [[0], [1]]
    assert t.frames.min() >= 3200 and t.learner.updates > at_kill > 0
    assert t.actor.restarts == [1, 1]  # each actor restarted once, its episodes cut, new ones begun
    # the replay ratio is the local one: actors wait while the learner owes more than a round of chunks
    round_updates = t.cfg.chunk_steps * sum(t.actor.lanes) / t.cfg.train_frequency
    assert 0 <= t.update_credit < 2 * round_updates
    assert result["report"] is not None and result["checkpoint"].endswith(f"frames_{t.frames.min():09d}.pt")


def test_transitions_received_add_up_to_the_frames_the_actors_report(ray_run):
    t = ray_run[0]
    assert [applied_frames(t, g) for g in range(len(GAMES))] == t.frames.tolist()


def test_weights_published_once_per_period_and_actors_act_on_them(ray_run):
    t, _, _, versions, puts, _ = ray_run
    assert puts == t.actor.version + 1 and t.actor.published_at == t.actor.version * PUBLISH
    assert 0 <= t.learner.updates - t.actor.published_at <= PUBLISH
    assert max(versions) >= 1 and max(versions) <= t.actor.version  # actors acted with refreshed weights


def test_ray_checkpoint_evaluates_and_resumes_locally_and_back(ray_run, tmp_path, capsys):
    t, result, *_, out = ray_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    state = checkpoint.load(checkpoint.latest(run))
    assert state["config"]["backend"] == "ray" and set(state) == set(checkpoint.load(result["checkpoint"]))
    cli_main(["evaluate", str(checkpoint.latest(run)), "--episodes", "1", "--max-episode-frames", "400"])
    printed = capsys.readouterr().out
    assert "| pong |" in printed and "| breakout |" in printed

    local = Trainer(config(run, backend="local", frames_per_game=4000), run, state=state)
    assert local.learning_starts == state["learning_starts"]  # same replay layout: loaded, no refill
    local.run()
    state = checkpoint.load(checkpoint.latest(run))
    assert state["config"]["backend"] == "local" and min(state["frames"]) >= 4000
    assert state["learner"]["updates"] > t.learner.updates

    again = RayTrainer(config(run, frames_per_game=4800), run, state=state)
    # the Ray actors' generation seeds come from the run's emulator stream, restored
    assert again.learning_starts == state["learning_starts"] and again.actor.rng.bit_generator.state == state["rng"]["emulator"]
    again.run()
    final = checkpoint.load(checkpoint.latest(run))
    assert min(final["frames"]) >= 4800 and final["learner"]["updates"] > state["learner"]["updates"]
    for k, v in final["learner"]["online"].items():
        assert torch.isfinite(v).all(), k


def test_a_resumed_run_gets_valid_env_seeds():
    """A resume seeds its envs from the saved emulator stream (either backend), below ale-py's 2**31
    however far the stream has gone (seeds computed from the frames done overflowed past 21,474)."""
    emulator = np.random.default_rng(250_000)
    emulator.integers(2**31, size=10_000)
    actor = Actor(["pong"], 2, PROTOCOLS["machado"], seed=0, emulator=emulator)
    actor.close()
    assert all(0 <= s < 2**31 for s in actor.env_seeds[0]) and len(set(actor.env_seeds[0])) == 2


@pytest.mark.parametrize("argv, message", [
    (["--num-actors", "0"], "--num-actors must be a positive integer, got 0"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address '127.0.0.1:1': no Ray head node reachable there"),
    (["--chunk-steps", "-1"], "--chunk-steps must be a positive integer, got -1"),
])
def test_bad_ray_options_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--suite", "pong", "--backend", "ray", *argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith(f"mtdqn: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--suite", "pong"], ["bench", "--quick"]])
def test_backend_ray_without_ray_installed_says_how_to_install_it(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as e:
        cli_main([*command, "--backend", "ray", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == ["mtdqn: error: --backend ray needs Ray, which is not installed: "
                                         "pip install 'mtdqn[ray]' (or .[ray] in the source folder), or use --backend local"]


def test_bench_backend_ray_reports_local_and_1_and_2_actors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmark, "QUICK", benchmark.Sizes(acting_steps=80))
    out = tmp_path / "bench.json"
    bench.main(["--backend", "ray", "--quick", "--suite", ",".join(GAMES), "--envs-per-game", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["acting"]
    assert [(r["backend"], r["actors"], r["envs"]) for r in rows] == [("local", 0, 2), ("ray", 1, 2), ("ray", 2, 2)]
    for r in rows:
        assert r["steps"] >= 80 and r["seconds"] > 0
        assert r["vs_local"] == pytest.approx(r["steps_per_s"] / rows[0]["steps_per_s"])
    assert "| ray | 2 | 2 |" in capsys.readouterr().out
