"""The training loop, top to bottom: act, learn while the emulators step, store, log, evaluate, save.

One iteration is one vector step of every game. The learner's updates for that iteration run
between `actor.act` (actions sent to the C++ env threads) and `actor.recv`, so learning and
emulation overlap. Updates are owed at one per `train_frequency` agent steps summed over games.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents import checkpoint
from agents.actor import Actor, linear_epsilon
from agents.config import TrainConfig
from agents.evaluation import run_episodes, summarize, write_report
from agents.learner import DQNLearner
from agents.network import MultiHeadQNetwork
from agents.replay import TaskBalancedReplay
from agents.tracking import Tracker
from envs import FRAMESKIP, PROTOCOLS, resolve_games


def library_versions() -> dict[str, str]:
    import ale_py
    import gymnasium

    return {"torch": str(torch.__version__), "ale_py": ale_py.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


def auto_env_threads(num_games: int, envs_per_game: int) -> int:
    """Threads per game env so that all games together use about the machine's cores."""
    cores = os.cpu_count() or 1
    return max(1, min(envs_per_game, math.ceil(cores / num_games)))


class Trainer:
    """Holds the run's components; `run()` trains to the frame budget."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, tracker: Tracker | None = None):
        self.cfg = cfg
        self.run_dir = run_dir
        self.tracker = tracker or Tracker(run_dir)
        self.games = resolve_games(cfg.suite)
        self.protocol = replace(PROTOCOLS[cfg.protocol], max_frames_per_episode=cfg.max_episode_frames)
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        env_threads = cfg.env_threads or auto_env_threads(len(self.games), cfg.envs_per_game)
        self.actor = Actor(self.games, cfg.envs_per_game, self.protocol, cfg.seed, env_threads, cfg.device)
        network = MultiHeadQNetwork(self.actor.action_counts, dueling=cfg.dueling)
        self.learner = DQNLearner(
            network, learning_rate=cfg.learning_rate, adam_eps=cfg.adam_eps, gamma=cfg.gamma,
            target_update_period=cfg.target_update_period, max_grad_norm=cfg.max_grad_norm,
            reward_clip=cfg.reward_clip, device=cfg.device)
        self.replay = TaskBalancedReplay(len(self.games), cfg.replay_size, cfg.envs_per_game, cfg.n_step,
                                         balance=cfg.replay_balance, seed=cfg.seed)
        self.frames = np.zeros(len(self.games), dtype=np.int64)
        self.episodes = np.zeros(len(self.games), dtype=np.int64)
        self.last_report: dict | None = None

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg, G = self.cfg, len(self.games)
        budget = cfg.frames_per_game
        next_log = cfg.log_interval
        next_eval = cfg.eval_interval or budget
        next_ckpt = cfg.checkpoint_interval or budget
        update_credit = 0.0
        window = _Window(G)
        recent_return = [math.nan] * G
        start, last_time, last_frames = time.perf_counter(), time.perf_counter(), 0
        bar = tqdm(total=budget * G, unit="frame", unit_scale=True, dynamic_ncols=True, disable=None,
                   desc=f"{G} games")
        while self.frames.min() < budget:
            epsilon = linear_epsilon(self.frames, cfg.epsilon_start, cfg.epsilon_end,
                                     cfg.exploration_fraction * budget)
            self.actor.act(self.learner.online, epsilon)
            learning = self.frames.min() >= cfg.learning_starts
            if learning and update_credit >= 1:
                ready = self.replay.ready_games(cfg.batch_size // G + 1)
                while ready and update_credit >= 1:
                    window.add_update(self.learner.update(self.replay.sample(cfg.batch_size, ready)))
                    update_credit -= 1
            step = self.actor.recv()
            E = cfg.envs_per_game
            for g in range(G):
                s = slice(g * E, (g + 1) * E)
                self.replay.add(g, step.frame[s], step.action[s], step.reward[s], step.terminated[s],
                                step.truncated[s], step.first[s])
            self.frames += step.frames
            if learning:
                update_credit += step.frames.sum() / FRAMESKIP / cfg.train_frequency
            for g, ret, length in step.episodes:
                self.episodes[g] += 1
                window.add_episode(g, ret, length)
                recent_return[g] = ret
            bar.update(int(step.frames.sum()))

            done_frames = int(self.frames.min())
            if done_frames >= next_log or done_frames >= budget:
                now = time.perf_counter()
                total = int(self.frames.sum())
                fps = (total - last_frames) / max(now - last_time, 1e-9)
                self.tracker.log(window.flush(self.games, epsilon) | {
                    "perf/frames_per_second": fps, "perf/agent_steps_per_second": fps / FRAMESKIP,
                    "perf/updates": self.learner.updates, "perf/elapsed_s": now - start,
                    "replay/transitions": len(self.replay),
                    "replay/bytes_per_transition": self.replay.bytes_per_transition,
                }, done_frames)
                last_time, last_frames = now, total
                finished = [r for r in recent_return if not math.isnan(r)]
                bar.set_postfix(fps=f"{fps:,.0f}", ret=f"{np.mean(finished):.1f}" if finished else "-", refresh=False)
                next_log += cfg.log_interval
            if done_frames >= next_eval and done_frames < budget:
                self.evaluate(done_frames)
                next_eval += cfg.eval_interval
            if done_frames >= next_ckpt and done_frames < budget:
                self.save()
                next_ckpt += cfg.checkpoint_interval
        bar.close()
        self.tracker.log({"perf/wall_time_s": time.perf_counter() - start}, int(self.frames.min()))
        path = self.save()
        report = self.evaluate(int(self.frames.min()))
        self.actor.close()
        return {"checkpoint": str(path), "report": report}

    # -- evaluation and checkpoints ---------------------------------------------------------------
    def evaluate(self, frames_per_game: int) -> dict:
        cfg = self.cfg
        returns = run_episodes(self.learner.online, self.games, list(range(len(self.games))), self.protocol,
                               cfg.eval_episodes, cfg.eval_epsilon, cfg.seed, cfg.device)
        report = summarize(returns, protocol=self.protocol, epsilon=cfg.eval_epsilon,
                           frames=dict(zip(self.games, map(int, self.frames))),
                           source=f"{self.run_dir} at {frames_per_game} frames per game")
        paths = write_report(report, self.run_dir / "evals" / f"frames_{frames_per_game:09d}")
        self.tracker.log_evaluation(report, paths, frames_per_game)
        self.last_report = report
        return report

    def state(self) -> dict:
        return {
            "config": self.cfg.to_dict(), "games": list(self.games), "action_counts": self.actor.action_counts,
            "protocol": self.protocol.to_dict(), "learner": self.learner.state_dict(),
            "frames": [int(f) for f in self.frames], "episodes": [int(e) for e in self.episodes],
            "versions": library_versions(),
        }

    def save(self) -> Path:
        frames = int(self.frames.min())
        path = checkpoint.save(self.state(), self.run_dir / "checkpoints" / f"frames_{frames:09d}.pt")
        self.tracker.log_checkpoint(path, frames)
        return path


class _Window:
    """Per-game metrics accumulated between two logs."""

    def __init__(self, num_games: int):
        self.num_games = num_games
        self.reset()

    def reset(self):
        self.returns = defaultdict(list)
        self.lengths = defaultdict(list)
        self.loss_sum = None
        self.loss_count = None
        self.q = []
        self.updates = 0

    def add_episode(self, game: int, ret: float, frames: int):
        self.returns[game].append(ret)
        self.lengths[game].append(frames)

    def add_update(self, metrics: dict):
        per_game = metrics["per_game_loss"]
        present = ~torch.isnan(per_game)
        if self.loss_sum is None:
            self.loss_sum = torch.zeros_like(per_game)
            self.loss_count = torch.zeros_like(per_game)
        self.loss_sum += torch.nan_to_num(per_game)
        self.loss_count += present
        self.q.append(metrics["q"])
        self.updates += 1

    def flush(self, games: list[str], epsilon: np.ndarray) -> dict:
        out = {}
        for g, name in enumerate(games):
            out[f"train/{name}/epsilon"] = float(epsilon[g])
            if self.returns[g]:
                out[f"train/{name}/episodic_return"] = float(np.mean(self.returns[g]))
                out[f"train/{name}/episode_frames"] = float(np.mean(self.lengths[g]))
        if self.updates:
            losses = (self.loss_sum / self.loss_count.clamp(min=1)).tolist()
            for g, name in enumerate(games):
                if self.loss_count[g] > 0:
                    out[f"train/{name}/td_loss"] = losses[g]
            out["train/td_loss"] = float(np.mean([losses[g] for g in range(len(games)) if self.loss_count[g] > 0]))
            out["train/q_mean"] = float(torch.stack(self.q).mean())
        self.reset()
        return out
