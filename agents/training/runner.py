"""The training loop, top to bottom: act, learn while the emulators step, store, log, evaluate, save.

One iteration is one vector step of every game. The learner's updates for that iteration run
between `actor.act` (actions sent to the C++ env threads) and `actor.recv`, so learning and
emulation overlap. Updates are owed at one per `train_frequency` agent steps of each game, and
each update samples `batch_size` transitions of every game: a G-game run gives each game the
updates and samples per stored transition of a one-game run.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from mtdqn.agents.core import checkpoint
from mtdqn.agents.training.run_folder import set_aside_later_evals
from mtdqn.agents.core.actor import Actor, ActorStep, linear_epsilon, refilled
from mtdqn.agents.core.episode_log import EvaluationInterrupted
from mtdqn.agents.core.evaluation import (learning_curves, plot_learning_curves, record_video, run_episodes, summarize,
                                          write_report)
from mtdqn.agents.core.learner import NonFiniteError
from mtdqn.agents.core.replay import TaskBalancedReplay
from mtdqn.agents.core.streams import Streams
from mtdqn.agents.core.tracking import Tracker
from mtdqn.agents.multitask import conflict, structure
from mtdqn.agents.training.build import auto_env_threads, build_learner, library_versions
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.loop import Loop, catch_signals, next_multiple
from mtdqn.agents.training.progress import FrameBar, MetricWindow, Progress, warn_refill
from mtdqn.envs import PROTOCOLS, resolve_games
from mtdqn.envs.protocol import default_protocol, frame_layout


class TrainingStopped(RuntimeError):
    """Training stopped on a numerical fault; the message names the games, update and diagnostic file."""


class Trainer:
    """Holds the run's components; `run()` trains to the frame budget. `state` resumes a checkpoint."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, tracker: Tracker | None = None, state: dict | None = None,
                 progress_interval: float | None = None):
        self.cfg, self.run_dir = cfg, run_dir
        self.progress_interval = progress_interval  # seconds between progress lines on stderr; None: none
        self.tracker = tracker or Tracker(run_dir)
        self.games = resolve_games(cfg.suite)
        cfg.protocol = cfg.protocol or default_protocol(self.games)  # a config built in code, not validated
        base = PROTOCOLS[cfg.protocol]
        self.protocol = replace(base, max_frames_per_episode=cfg.max_episode_frames,
                                life_loss_terminal=base.life_loss_terminal or cfg.life_loss_terminal,
                                life_loss_reset=base.life_loss_reset or cfg.life_loss_reset)
        torch.set_num_threads(cfg.threads)
        self.streams = Streams.spawn(cfg.seed)  # one generator per consumer (core/streams.py)
        if state:  # before the actor starts: a resumed run's emulators take the saved stream's next seeds
            self._load_streams(state)
        env_threads = cfg.env_threads or auto_env_threads(len(self.games), cfg.envs_per_game)
        self.actor = self.make_actor(env_threads)
        torch.manual_seed(self.streams.network)
        self.learner = build_learner(cfg, self.games, self.actor.action_counts, self.streams.augment)
        self.replay = TaskBalancedReplay(len(self.games), cfg.replay_size, self.actor.lanes, cfg.n_step,
                                         balance=cfg.replay_balance, rng=self.streams.replay,
                                         terminal_ends_stack=self.protocol.life_loss_reset,
                                         frame_shape=frame_layout(self.games)[0], stack=frame_layout(self.games)[1])
        self.frames = np.zeros(len(self.games), dtype=np.int64)
        self.episodes = np.zeros(len(self.games), dtype=np.int64)
        self.update_credit, self.skipped_batches = 0.0, 0
        self.learning_starts = cfg.learning_starts  # in frames per game; moves on a resume without replay
        # epsilon's uncounted frames (earlier refills' total, where the latest began: actor.refilled); the frames
        # per game of a periodic evaluation a signal stopped, owed by the resumed run
        self.epsilon_paused, self.refill_from, self.eval_owed = 0, None, None
        self.stop_signal: str | None = None
        # brings self.learner up to date before it is read (a seed batch trains stacked copies of its weights)
        self.sync_learner: Callable[[], None] = lambda: None
        if state:
            self.restore(state)
        else:  # a run restarted from nothing keeps no stale rows or evaluations
            self.tracker.truncate_after(0)
            conflict.truncate_csv(self.run_dir / "conflict.csv", 0)
            set_aside_later_evals(self.run_dir, 0)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        loop = self.start_loop()
        try:
            while not self.done():
                epsilon = self.epsilon()
                step, updates = self.step(epsilon)
                self.record(loop, step, updates, epsilon)
        finally:
            loop.close()
        return self.finish(loop)

    def stop(self, signal_name: str) -> None:
        """Stop at the end of this step: checkpoint, no final evaluation (a signal's handler calls this)."""
        self.stop_signal = signal_name

    def done(self) -> bool:
        return self.frames.min() >= self.cfg.frames_per_game or self.stop_signal is not None

    def start_loop(self, signals: bool = True, bar: bool = True) -> Loop:
        """The loop's bookkeeping; `signals`: catch Ctrl-C/SIGTERM here (a seed batch catches them once for
        all its seeds), `bar`: a tqdm bar of this run's frames."""
        cfg, G, E = self.cfg, len(self.games), self.cfg.envs_per_game
        budget = cfg.frames_per_game
        next_log, next_eval, next_ckpt = (next_multiple(self.frames.min(), i or budget)
                                          for i in (cfg.log_interval, cfg.eval_interval, cfg.checkpoint_interval))
        full_replay = self.replay.bytes_per_transition * cfg.replay_size * G / 2**30
        tqdm.write(f"{G} game{'s' * (G != 1)} x {E} env{'s' * (E != 1)} per game, actions {self.actor.action_counts}; "
                   f"replay {self.replay.bytes_per_transition:,} B/transition, {full_replay:.1f} GiB when full",
                   file=sys.stderr)
        loop = Loop(next_log, next_eval, next_ckpt, MetricWindow(), [math.nan] * G, time.perf_counter(),
                    time.perf_counter(), int(self.frames.sum()), FrameBar(self.frames, budget, enabled=bar),
                    Progress(self, self.progress_interval), catch_signals(self.stop) if signals else (lambda: None))
        if self.eval_owed is not None and self.frames.min() < budget:  # stopped by a signal: this agent's, first
            owed, self.eval_owed = self.eval_owed, None
            with loop.progress.paused():
                self.evaluate(owed)
        return loop

    def record(self, loop: Loop, step: ActorStep, updates: list[dict], epsilon: np.ndarray) -> None:
        """After a step: its episodes and updates into the window; logs, evaluations and checkpoints due."""
        cfg, budget = self.cfg, self.cfg.frames_per_game
        for metrics in updates:
            loop.window.add_update(metrics)
        for g, ret, length in step.episodes:
            self.episodes[g] += 1
            loop.window.add_episode(g, ret, length)
            loop.recent_return[g] = ret
        loop.bar.advance_to(self.frames)
        loop.progress.maybe_print(loop.recent_return, epsilon)
        done_frames = int(self.frames.min())
        if done_frames >= loop.next_log or done_frames >= budget:
            now = time.perf_counter()
            total = int(self.frames.sum())
            fps = (total - loop.last_frames) / max(now - loop.last_time, 1e-9)
            self.tracker.log(loop.window.flush(self.games, epsilon) | {
                "train/learning_rate": self.learner.optimizer.param_groups[0]["lr"],
                "perf/frames_per_second": fps, "perf/agent_steps_per_second": fps / self.protocol.frameskip,
                "perf/updates": self.learner.updates, "perf/elapsed_s": now - loop.start,
                "perf/skipped_batches": self.skipped_batches, "replay/transitions": len(self.replay),
                "replay/bytes_per_transition": self.replay.bytes_per_transition,
            }, done_frames)
            loop.last_time, loop.last_frames = now, total
            if self.learner.online.gated:
                self.log_gates(done_frames)
            finished = [r for r in loop.recent_return if not math.isnan(r)]
            loop.bar.set_postfix(fps=f"{fps:,.0f}", ret=f"{np.mean(finished):.1f}" if finished else "-",
                                 refresh=False)
            loop.next_log = next_multiple(done_frames, cfg.log_interval)
        if done_frames >= loop.next_eval and done_frames < budget:
            with loop.progress.paused():
                self.evaluate(done_frames)
            loop.next_eval = next_multiple(done_frames, cfg.eval_interval)
        if done_frames >= loop.next_ckpt and done_frames < budget:
            self.save()
            loop.next_ckpt = next_multiple(done_frames, cfg.checkpoint_interval)

    def finish(self, loop: Loop) -> dict:
        """The last checkpoint, and the final evaluation unless a signal stopped the run."""
        loop.progress.maybe_print(loop.recent_return, self.epsilon(), force=True)
        path = self.save()
        if self.stop_signal:
            self.actor.close()
            return {"checkpoint": str(path), "report": None, "interrupted": self.stop_signal}
        self.tracker.log({"perf/wall_time_s": time.perf_counter() - loop.start}, int(self.frames.min()))
        report = self.evaluate(int(self.frames.min()))
        self.actor.close()
        return {"checkpoint": str(path), "report": report, "interrupted": self.stop_signal if report is None else None}

    def make_actor(self, env_threads: int) -> Actor:
        """Where transitions come from: every game's envs in this process, seeded from the emulator
        stream, exploring with the exploration stream (distributed/ray_trainer.py overrides this and
        `step` for Ray actors)."""
        return Actor(self.games, self.cfg.envs_per_game, self.protocol, self.cfg.seed, env_threads, self.cfg.device,
                     emulator=self.streams.emulator, exploration=self.streams.exploration)

    def epsilon(self) -> np.ndarray:
        """Per-game epsilon: epsilon_start until learning starts, then linear decay (Dopamine's schedule);
        it holds still while a resumed run refills its replay, since the agent does not learn then either."""
        cfg, paused = self.cfg, self.epsilon_paused
        uncounted = paused + refilled(self.frames, self.refill_from, cfg.learning_starts, paused)
        return linear_epsilon(self.frames - cfg.learning_starts - uncounted, cfg.epsilon_start, cfg.epsilon_end,
                              cfg.epsilon_decay_frames)

    def step(self, epsilon: np.ndarray, phases: dict[str, float] | None = None) -> tuple[ActorStep, list[dict]]:
        """One vector step of every game: act, learn what is owed while the emulators step, store.

        Returns the actor's step and the updates' metrics; `phases` (if given) accumulates seconds
        spent in act / learn / recv / store, for profiling.
        """
        t0 = time.perf_counter()
        self.actor.act(self.learner.online, epsilon, self.cfg.precision)
        t1 = time.perf_counter()
        learning = self.frames.min() >= self.learning_starts
        updates = self.learn() if learning else []
        t2 = time.perf_counter()
        step = self.actor.recv()
        t3 = time.perf_counter()
        self.store(step)
        self.count(step.frames, learning)
        if phases is not None:
            for name, a, b in (("act", t0, t1), ("learn", t1, t2), ("recv", t2, t3), ("store", t3, time.perf_counter())):
                phases[name] = phases.get(name, 0.0) + b - a
        return step, updates

    def store(self, step: ActorStep) -> None:
        """Each game's envs' slots of the step into its replay."""
        E = self.cfg.envs_per_game
        for g in range(len(self.games)):
            s = slice(g * E, (g + 1) * E)
            self.replay.add(g, step.frame[s], step.action[s], step.reward[s], step.terminated[s],
                            step.truncated[s], step.first[s])

    def owed(self) -> tuple[list[int], int]:
        """The games ready to sample and the number of updates owed now (whole credits; none until a game is
        ready, while the credit keeps what it is owed)."""
        if self.update_credit < 1:
            return [], 0
        ready = self.replay.ready_games(self.cfg.batch_size)
        return ready, math.floor(self.update_credit) if ready else 0

    def learn(self, limit: float = math.inf) -> list[dict]:
        """The updates owed (at most `limit`), each on a task-balanced batch; their metrics."""
        updates = []
        ready, owed = self.owed()
        while owed > 0 and len(updates) < limit:
            metrics = self._update(ready)
            if metrics is not None:
                updates.append(metrics)
            self.update_credit -= 1
            owed -= 1
        return updates

    def count(self, frames: np.ndarray, learning: bool) -> None:
        """Per-game frames received; once learning, each `train_frequency` agent steps per game owe an update."""
        self.frames += frames
        if learning:
            self.update_credit += frames.sum() / self.protocol.frameskip / len(self.games) / self.cfg.train_frequency
        freeze = self.cfg.gate_freeze_frames
        if freeze and self.learner.online.gated and self.frames.min() >= freeze and not self.learner.online.gates_frozen:
            self.learner.freeze_gates()

    def sample(self, ready: list[int]):
        """A task-balanced batch: `batch_size` transitions of each ready game."""
        return self.replay.sample(self.cfg.batch_size * len(ready), ready)

    def _update(self, ready: list[int]) -> dict | None:
        try:
            metrics = self.learner.update(self.sample(ready))
        except NonFiniteError as e:
            self.nonfinite(e)
            return None
        self.after_update(ready)
        return metrics

    def nonfinite(self, e: NonFiniteError) -> None:
        """A refused batch: counted under --on-nonfinite skip, else a diagnostic checkpoint and TrainingStopped."""
        if self.cfg.on_nonfinite == "skip":
            self.skipped_batches += 1
            return
        names = ", ".join(self.games[g] for g in e.games) or "unknown"
        path = checkpoint.save(self.state() | {"nonfinite": {"update": e.update, "games": e.games, "what": e.what}},
                               self.run_dir / "checkpoints" / f"diagnostic_update_{e.update:09d}.pt")
        raise TrainingStopped(f"non-finite {e.what} at update {e.update} for game(s) {names}; learning stopped, "
                              f"diagnostic checkpoint {path} (--on-nonfinite skip skips such batches)") from None

    def after_update(self, ready: list[int]) -> None:
        """Transfer measured every conflict_interval updates of a multi-game batch."""
        if (every := self.cfg.conflict_interval) and len(ready) > 1 and self.learner.updates % every == 0:
            self.measure_transfer(ready)

    def measure_transfer(self, ready: list[int]) -> conflict.Transfer:
        """Gradient cosine and TAG affinity between games, logged as scalars, CSV rows and heatmaps. Its
        batch and augmentation come from the measurement streams: measuring never moves a training stream."""
        self.sync_learner()
        batch = self.replay.sample(self.cfg.conflict_batch_size, ready, self.streams.measure_replay)
        transfer = conflict.measure(self.learner, batch, self.cfg.affinity_lr, self.cfg.affinity_step,
                                    generator=self.streams.measure_augment)
        frames, update = int(self.frames.min()), self.learner.updates
        conflict.append_csv(self.run_dir / "conflict.csv", transfer, self.games, frames, update)
        self.tracker.log(conflict.summary_metrics(transfer, self.games, pairs=len(self.games) <= 8), frames)
        self.tracker.log_figures({"conflict/cosine_heatmap": lambda: conflict.heatmap(
            transfer.cosine, self.games, f"gradient cosine, update {update}"),
            "conflict/affinity_heatmap": lambda: conflict.heatmap(
            transfer.affinity, self.games, f"TAG affinity (row -> column), update {update}")}, frames)
        return transfer

    def log_gates(self, frames: int) -> None:
        """Learned sharing: gate densities, mean overlap and its heatmap logged; gates.csv, overlap.csv written."""
        gates = structure.hard_gates(self.learner.online)
        self.tracker.log(structure.metrics(gates, self.games), frames)
        structure.write_csvs(self.run_dir, gates, self.games)
        if len(self.games) > 1:
            title = f"gate overlap (Jaccard), {frames:,} frames per game"
            self.tracker.log_figures({"train/gate_overlap_heatmap": lambda: structure.heatmap(
                structure.overlaps(gates)["all"], self.games, title)}, frames)

    # -- evaluation and checkpoints ---------------------------------------------------------------
    def evaluate(self, frames_per_game: int) -> dict | None:
        """None if a signal stopped it (nothing of it written): the loop then checkpoints and stops."""
        cfg = self.cfg
        self.sync_learner()
        try:
            returns = run_episodes(self.learner.online, self.games, list(range(len(self.games))), self.protocol,
                                   cfg.eval_episodes, cfg.eval_epsilon, cfg.seed, cfg.device,
                                   progress=self.progress_interval is not None, progress_interval=self.progress_interval or 30,
                                   stop=lambda: self.stop_signal is not None)
        except EvaluationInterrupted:  # owed: the resumed run evaluates this agent before training on
            self.eval_owed = frames_per_game
            return None
        report = summarize(returns, protocol=self.protocol, epsilon=cfg.eval_epsilon,
                           frames=dict(zip(self.games, map(int, self.frames))),
                           source=f"{self.run_dir} at {frames_per_game} frames per game")
        out = self.run_dir / "evals" / f"frames_{frames_per_game:09d}"
        paths = write_report(report, out)
        paths["curves"] = plot_learning_curves(learning_curves(self.run_dir, frames_per_game),
                                               self.run_dir / "learning_curves.png", self.games)
        videos = {g: out / "videos" / f"{g}.mp4" for g in self.games} if cfg.video else {}
        for gid, (game, path) in enumerate(videos.items()):
            record_video(self.learner.online, game, gid, self.protocol, cfg.eval_epsilon, cfg.seed, path, cfg.device)
        self.tracker.log_evaluation(report, paths, frames_per_game, videos)
        return report

    def state(self) -> dict:
        self.sync_learner()
        return {
            "config": self.cfg.to_dict(), "games": list(self.games), "action_counts": self.actor.action_counts,
            "network": self.learner.online.spec(),
            "protocol": self.protocol.to_dict(), "learner": self.learner.state_dict(),
            "frames": [int(f) for f in self.frames], "episodes": [int(e) for e in self.episodes],
            "update_credit": float(self.update_credit), "skipped_batches": self.skipped_batches,
            "learning_starts": int(self.learning_starts), "epsilon_paused": int(self.epsilon_paused),
            "refill_from": self.refill_from, "eval_owed": self.eval_owed,
            "rng": self.streams.state_dict() | {"torch": torch.get_rng_state()} | (
                {"cuda": torch.cuda.get_rng_state_all()} if self.learner.device.type == "cuda" else {}),
            "wandb_run_id": self.tracker.run_id, "wandb": self.tracker.segment(), "versions": library_versions(),
        }

    def restore(self, state: dict) -> None:
        if state["games"] != self.games or state["action_counts"] != self.actor.action_counts:
            raise checkpoint.CheckpointError(f"checkpoint games {state['games']} do not match the run's {self.games}")
        self.learner.load_state_dict(state["learner"])
        self.frames[:] = state["frames"]
        self.episodes[:] = state["episodes"]
        self.update_credit, self.skipped_batches = state["update_credit"], state["skipped_batches"]
        torch.set_rng_state(state["rng"]["torch"])  # the network stream; the others were loaded first
        if "cuda" in state["rng"] and self.learner.device.type == "cuda":  # gate noise and resets drawn on the GPU
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        frames = int(self.frames.min())
        replay_file = self.run_dir / "checkpoints" / f"frames_{frames:09d}.replay.npz"
        paused, since, self.eval_owed = (state.get(k) for k in ("epsilon_paused", "refill_from", "eval_owed"))
        self.epsilon_paused, self.refill_from, starts = paused or 0, since, self.cfg.learning_starts
        if replay_file.is_file() and self._load_replay(replay_file):
            self.learning_starts = state["learning_starts"]
        else:  # refill before learning again, rather than overfit a near-empty buffer (epsilon holds still)
            self.learning_starts = frames + starts
            self.epsilon_paused += int(refilled(np.array(frames), since, starts, self.epsilon_paused))
            self.refill_from = frames
            warn_refill(frames, starts, self.cfg.frames_per_game)
        self.tracker.truncate_after(frames)
        conflict.truncate_csv(self.run_dir / "conflict.csv", frames)
        set_aside_later_evals(self.run_dir, frames)

    def _load_streams(self, state: dict) -> None:
        """Every saved stream's state; one written before a stream existed leaves it at its seed's start."""
        missing = self.streams.load_state_dict(state["rng"])
        if missing:
            tqdm.write(f"mtdqn: warning: the checkpoint has no state for the random stream(s) {', '.join(missing)} "
                       f"(written before they existed): they start afresh from seed {self.cfg.seed}", file=sys.stderr)

    def _load_replay(self, path: Path) -> bool:
        """Load a saved replay; False (with a warning) if its layout differs, e.g. another backend's lanes."""
        arrays = checkpoint.load_arrays(path)
        layout = {k: v.shape for k, v in self.replay.state_dict().items()}
        if {k: v.shape for k, v in arrays.items()} != layout:
            tqdm.write(f"mtdqn: warning: {path.name} has another replay layout (lanes per game): "
                       "refilling the replay instead", file=sys.stderr)
            return False
        self.replay.load_state_dict(arrays)
        return True

    def save(self) -> Path:
        frames = int(self.frames.min())
        folder = self.run_dir / "checkpoints"
        if self.cfg.save_replay:  # before the checkpoint: a checkpoint on disk always has its replay
            checkpoint.save_arrays(self.replay.state_dict(), folder / f"frames_{frames:09d}.replay.npz")
        path = checkpoint.save(self.state(), folder / f"frames_{frames:09d}.pt")
        checkpoint.prune(self.run_dir, self.cfg.keep_checkpoints)
        tqdm.write(f"checkpoint: {path}", file=sys.stderr)
        if self.cfg.wandb_checkpoints:
            self.tracker.log_checkpoint(path, frames)
        return path
