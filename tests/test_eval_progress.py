"""Evaluation that says what it is doing and stops on Ctrl-C: a line per finished episode with why it
ended, a line now and then while a long episode runs, Ctrl-C honoured within a second with nothing
written. The agent that made this matter: a greedy one that never presses FIRE plays Breakout to the cap."""

import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.core.episode_log import EpisodeLog, EvaluationInterrupted, end_reason
from mtdqn.agents.core.evaluation import EVAL_SEED_OFFSET, run_episodes
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.training import runner
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.runner import Trainer
from mtdqn.envs import PROTOCOLS, make_env
from test_cli import source_env

MACHADO = PROTOCOLS["machado"]  # no no-op starts: a capped episode ends at the cap's frame exactly


class Constant(torch.nn.Module):
    """Always the same greedy action on Breakout: NOOP (0) never launches the ball, FIRE (1) launches it and
    loses it, the paddle never moving."""

    def __init__(self, action: int):
        super().__init__()
        self.q = torch.zeros(4)
        self.q[action] = 1.0

    def forward(self, obs, game_ids):
        return self.q.expand(len(obs), 4)


def untimed(lines: list[str]) -> list[str]:
    """The lines without their trailing ', 12.3 s' (wall time varies)."""
    return [re.sub(r", \d+\.\d s$", "", line) for line in lines]


def played_alone(protocol, seed_index: int) -> tuple[float, int]:
    """(return, frames) of the episode FIRE plays in Breakout from evaluation env `seed_index`'s seed,
    stepped here without run_episodes: what its line must report."""
    env = make_env("breakout", 1, protocol)
    env.reset(seed=EVAL_SEED_OFFSET + seed_index)
    total = 0.0
    while True:
        _, reward, term, trunc, info = env.step(np.array([1]))
        total += float(reward[0])
        if term[0] or trunc[0]:
            env.close()
            return total, int(info["episode_frame_number"][0])


def test_a_capped_episode_says_the_cap(capsys):
    run_episodes(Constant(0), ["breakout"], [0], replace(MACHADO, max_frames_per_episode=400), episodes=2,
                 epsilon=0.0, seed=0, progress=True)
    assert untimed(capsys.readouterr().err.splitlines()) == [
        "evaluate: breakout episode 1/2: return 0, 400 frames, episode cap reached at 400 frames",
        "evaluate: breakout episode 2/2: return 0, 400 frames, episode cap reached at 400 frames",
        "evaluate: breakout done, 2 episodes, mean return 0 (std 0)"]


@pytest.mark.parametrize("episodic_life, reason", [(False, "game over"), (True, "life lost")])
def test_an_ended_episode_says_its_return_frames_and_why(capsys, episodic_life, reason):
    protocol = replace(PROTOCOLS["classic"], episodic_life=episodic_life)  # no-op starts: frames differ per env
    returns = run_episodes(Constant(1), ["breakout"], [0], protocol, episodes=2, epsilon=0.0, seed=0, progress=True)
    alone = [played_alone(protocol, i) for i in range(2)]
    lines = untimed(capsys.readouterr().err.splitlines())
    assert [line.split(": ", 2)[1] for line in lines[:2]] == ["breakout episode 1/2", "breakout episode 2/2"]
    assert sorted(line.split(": ", 2)[2] for line in lines[:2]) == sorted(
        f"return {ret:g}, {frames:,} frames, {reason}" for ret, frames in alone)
    assert list(returns["breakout"]) == [ret for ret, _ in alone]


def test_end_reason():
    atari100k = PROTOCOLS["atari100k"]  # a lost life is terminal for the learner only: the episode goes on
    assert end_reason(True, False, 3, atari100k) == "game over"
    assert end_reason(True, False, 3, replace(atari100k, episodic_life=True)) == "life lost"
    assert end_reason(True, False, 0, replace(atari100k, episodic_life=True)) == "game over"
    assert end_reason(False, True, 3, MACHADO) == "episode cap reached at 108,000 frames"


def test_a_long_episode_prints_its_frames_so_far(capsys):
    """Interval 0: a line after every step that leaves an episode running, 4 frames further each time."""
    run_episodes(Constant(0), ["breakout"], [0], replace(MACHADO, max_frames_per_episode=40), episodes=1,
                 epsilon=0.0, seed=0, progress=True, progress_interval=0.0)
    lines = [re.sub(r" at \d+\.\d s: ", " at T s: ", line) for line in untimed(capsys.readouterr().err.splitlines())]
    assert lines == [f"evaluate: breakout still playing at T s: 0/1 episodes done, 1 running at {f} frames so far "
                     "(episode cap 40 frames)" for f in range(4, 40, 4)] + [
        "evaluate: breakout episode 1/1: return 0, 40 frames, episode cap reached at 40 frames",
        "evaluate: breakout done, 1 episode, mean return 0 (std 0)"]


def test_playing_lines_come_at_the_interval_for_each_game_still_playing(capsys):
    """A fake clock, steps at 10, 30, 45 and 60 s: playing lines at 30 and 60 s only, none for a game
    whose episodes all ended."""
    now = [0.0]
    log = EpisodeLog(["pong", "breakout"], 2, MACHADO, enabled=True, interval=30.0, clock=lambda: now[0])
    frames = np.array([800, 804, 1200, 1196])
    no = np.zeros(4, dtype=bool)
    for t in (10.0, 30.0, 45.0):
        now[0] = t
        log.step(no, np.ones(4, dtype=bool), np.zeros(4), frames, no, no, np.full(4, 5))
    now[0] = 60.0
    ending = np.array([True, True, True, False])
    log.step(ending, ~ending, np.array([-21.0, -20.0, 3.0, 0.0]), frames, ending, no, np.array([0, 0, 0, 2]))
    assert capsys.readouterr().err.splitlines() == [
        "evaluate: pong still playing at 30.0 s: 0/2 episodes done, 2 running at up to 804 frames so far "
        "(episode cap 108,000 frames)",
        "evaluate: breakout still playing at 30.0 s: 0/2 episodes done, 2 running at up to 1,200 frames so far "
        "(episode cap 108,000 frames)",
        "evaluate: pong episode 1/2: return -21, 800 frames, game over, 60.0 s",
        "evaluate: pong episode 2/2: return -20, 804 frames, game over, 60.0 s",
        "evaluate: breakout episode 1/2: return 3, 1,200 frames, game over, 60.0 s",
        "evaluate: breakout still playing at 60.0 s: 1/2 episodes done, 1 running at 1,196 frames so far "
        "(episode cap 108,000 frames)"]


def test_stop_abandons_the_evaluation_between_two_steps():
    """Training's Ctrl-C is a flag (catch_signals): `stop` lets the evaluation see it at the next step."""
    calls = []
    net = Constant(0)
    with pytest.raises(EvaluationInterrupted):
        run_episodes(net, ["breakout"], [0], MACHADO, episodes=1, epsilon=0.0, seed=0,
                     stop=lambda: calls.append(1) or len(calls) >= 3)
    assert len(calls) == 3 and net.training  # the third step's poll ended it; the network is back in training mode


def no_fire_checkpoint(folder) -> str:
    """A Breakout checkpoint whose greedy action is always NOOP: every episode runs to the cap."""
    net = MultiHeadQNetwork([4])
    with torch.no_grad():
        net.heads.weight.zero_()
        net.heads.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    state = {"games": ["breakout"], "action_counts": [4], "network": net.spec(), "frames": [0],
             "learner": {"online": net.state_dict()}, "protocol": MACHADO.to_dict(), "config": {"dueling": False}}
    return str(checkpoint.save(state, folder / "checkpoints" / "frames_000000000.pt"))


def test_ctrl_c_while_playing_exits_130_within_a_second_and_writes_nothing(tmp_path):
    ckpt, out = no_fire_checkpoint(tmp_path), tmp_path / "eval"
    proc = subprocess.Popen([sys.executable, "-m", "mtdqn.scripts", "evaluate", ckpt, "--episodes", "2", "--epsilon",
                             "0", "--progress-interval", "0.2", "--out", str(out)], cwd=tmp_path, env=source_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # blocks until the first line: the episodes are under way
    assert first.startswith("evaluate: breakout still playing at "), first + proc.stderr.read()
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    rest = ""
    for line in proc.stderr:  # until its answer: the time a person waits (process teardown not counted)
        rest += line
        if line.startswith("mtdqn: interrupted"):
            break
    elapsed = time.perf_counter() - sent
    rest += proc.stderr.read()
    rc = proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert rc == 130 and elapsed < 1.0, (rc, elapsed, rest)
    assert rest.splitlines()[-1] == f"mtdqn: interrupted: evaluation stopped, nothing written to {out}"
    assert all(line.startswith("evaluate: breakout still playing at ") for line in rest.splitlines()[:-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # no OUT, no staging folder


@pytest.mark.parametrize("earlier", [False, True])
def test_ctrl_c_while_writing_leaves_no_partial_report(tmp_path, monkeypatch, earlier):
    """Ctrl-C after eval.json is written, before the chart: no eval.json appears, and an --out that held an
    earlier evaluation keeps it whole."""
    from mtdqn.scripts import evaluate

    ckpt, out = no_fire_checkpoint(tmp_path), tmp_path / "eval"
    if earlier:
        out.mkdir()
        (out / "eval.json").write_text("earlier\n")
    write_report = evaluate.write_report

    def cut(report, folder):
        write_report(report, folder)
        assert (folder / "eval.json").is_file()
        raise KeyboardInterrupt

    def exit_interrupted(message):
        raise SystemExit(f"130 {message}")

    monkeypatch.setattr(evaluate, "write_report", cut)
    monkeypatch.setattr(evaluate, "exit_interrupted", exit_interrupted)
    with pytest.raises(SystemExit) as e:
        evaluate.main([ckpt, "--episodes", "1", "--max-episode-frames", "40", "--out", str(out)])
    assert str(e.value) == f"130 interrupted: evaluation stopped, nothing written to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"] + (["eval"] if earlier else [])
    if earlier:
        assert [p.name for p in out.iterdir()] == ["eval.json"] and (out / "eval.json").read_text() == "earlier\n"


def test_a_finished_evaluation_replaces_an_earlier_one_in_out(tmp_path):
    from mtdqn.scripts import evaluate

    ckpt, out = no_fire_checkpoint(tmp_path), tmp_path / "eval"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "pong.mp4").write_text("an earlier video")
    (out / "eval.json").write_text("earlier\n")
    evaluate.main([ckpt, "--episodes", "1", "--max-episode-frames", "40", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["eval.csv", "eval.json", "eval.md", "hns.png"]
    assert '"raw_mean": 0.0' in (out / "eval.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "eval"]  # the staging folder went


def test_a_signal_during_a_periodic_evaluation_abandons_it_and_checkpoints(tmp_path, monkeypatch):
    cfg = TrainConfig(suite="breakout", frames_per_game=1600, learning_starts=400, envs_per_game=1, eval_interval=400,
                      eval_episodes=2, max_episode_frames=108_000, replay_size=1000, log_interval=400,
                      checkpoint_interval=100_000, out=str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, tmp_path / "run")
    steps = []
    play = runner.run_episodes

    def signalled(*args, **kwargs):  # Ctrl-C as catch_signals takes it, as the evaluation starts
        trainer.stop("SIGINT")
        stop = kwargs["stop"]
        return play(*args, **{**kwargs, "stop": lambda: steps.append(1) or stop()})

    monkeypatch.setattr(runner, "run_episodes", signalled)
    result = trainer.run()
    assert result["interrupted"] == "SIGINT" and result["report"] is None and steps == [1]
    assert not (tmp_path / "run" / "evals").exists()
    assert result["checkpoint"].endswith("frames_000000400.pt")
    monkeypatch.undo()  # resumed, the run owes that agent its evaluation and does it first
    state = checkpoint.load(result["checkpoint"])
    assert state["eval_owed"] == 400
    resumed = Trainer(replace(cfg, max_episode_frames=400), tmp_path / "run", state=state)
    resumed.start_loop(signals=False, bar=False).close()
    assert resumed.eval_owed is None and (tmp_path / "run" / "evals" / "frames_000000400" / "eval.json").is_file()
