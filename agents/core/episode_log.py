"""What an evaluation says while it plays (evaluation.py `run_episodes`): a line per finished episode, a
line now and then while episodes still run, and the stop that abandons it.

A greedy agent that never presses FIRE plays Breakout to the 108,000-frame cap: ten such episodes took
524 s with nothing printed. Each episode's line says why it ended (the game over, a lost life under an
episodic-life protocol, or the cap, named with its value: a capped score is not a finished game), and
the periodic line shows that a long episode is alive and how far it is from the cap.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from mtdqn.envs import Protocol


class EvaluationInterrupted(KeyboardInterrupt):
    """The caller's `stop` said so between two steps: the episodes were abandoned, nothing is returned.
    A KeyboardInterrupt, so a caller that does not catch it ends as on Ctrl-C."""


def end_reason(terminated: bool, truncated: bool, lives: int, protocol: Protocol) -> str:
    """Why an episode ended: 'game over', 'life lost' (an episodic-life protocol ends the episode at each
    lost life; lives still left tell it from the game's end) or 'episode cap reached at N frames'."""
    if truncated and not terminated:
        return f"episode cap reached at {protocol.max_frames_per_episode:,} frames"
    return "life lost" if protocol.episodic_life and lives > 0 else "game over"


def episode_line(game: str, k: int, n: int, ret: float, frames: int, reason: str, seconds: float) -> str:
    """'evaluate: breakout episode 1/10: return 0, 108,004 frames, episode cap reached at 108,000 frames, 98.6 s'
    (k: the k-th of the game's n episodes to end; frames: emulator frames, no-op starts included)."""
    return f"evaluate: {game} episode {k}/{n}: return {ret:g}, {frames:,} frames, {reason}, {seconds:.1f} s"


def playing_line(game: str, done: int, n: int, frames: int, cap: int, seconds: float) -> str:
    """'evaluate: breakout still playing at 30.0 s: 1/2 episodes done, 1 running at 7,520 frames so far
    (episode cap 108,000 frames)' (frames: the longest running episode's)."""
    running = n - done
    at = "at" if running == 1 else "at up to"
    return (f"evaluate: {game} still playing at {seconds:.1f} s: {done}/{n} episodes done, {running} running "
            f"{at} {frames:,} frames so far (episode cap {cap:,} frames)")


def say(line: str) -> None:
    """On stderr, above a tqdm bar if one is drawn (training's periodic evaluations)."""
    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


class EpisodeLog:
    """The lines of one evaluation of `games`, `episodes` envs each, env i of game i // episodes.

    `enabled` False: silent. `interval`: seconds between playing lines while episodes run.
    `stop`: polled every step; True abandons the evaluation (EvaluationInterrupted)."""

    def __init__(self, games: list[str], episodes: int, protocol: Protocol, enabled: bool, interval: float,
                 stop: Callable[[], bool] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.games, self.episodes, self.protocol = games, episodes, protocol
        self.enabled, self.interval, self.stop, self.clock = enabled, interval, stop, clock
        self.start = self.last = clock()
        self.ended = np.zeros(len(games), dtype=np.int64)

    def seconds(self) -> float:
        return self.clock() - self.start

    def step(self, ending: np.ndarray, running: np.ndarray, returns: np.ndarray, frames: np.ndarray,
             terminated: np.ndarray, truncated: np.ndarray, lives: np.ndarray) -> None:
        """After a step: `ending` marks the envs whose episode ended with it, `running` those still
        playing; the other arrays are per env (frames: emulator frames into the episode)."""
        if self.stop is not None and self.stop():
            raise EvaluationInterrupted("evaluation stopped")
        if not self.enabled:
            return
        for i in np.flatnonzero(ending):
            g = i // self.episodes
            self.ended[g] += 1
            say(episode_line(self.games[g], int(self.ended[g]), self.episodes, float(returns[i]), int(frames[i]),
                             end_reason(bool(terminated[i]), bool(truncated[i]), int(lives[i]), self.protocol),
                             self.seconds()))
        now = self.clock()
        if now - self.last < self.interval or not running.any():
            return
        self.last = now
        for g, game in enumerate(self.games):
            playing = running[g * self.episodes:(g + 1) * self.episodes]
            if playing.any():
                longest = int(frames[g * self.episodes:(g + 1) * self.episodes][playing].max())
                say(playing_line(game, int(self.ended[g]), self.episodes, longest,
                                 self.protocol.max_frames_per_episode, now - self.start))
