"""The actor: steps every game's vector env with one batched policy forward.

Split into `act` (forward + send actions) and `recv` (collect results) so the learner can run
while the C++ emulator threads step. What it hands on is an `ActorStep`: per env, the newest
frame the action was chosen on, the action, and its raw outcome, which is exactly one replay slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mtdqn.agents.core.learner import Precision, autocast, explore, greedy_actions
from mtdqn.agents.core.streams import Streams, emulator_seeds
from mtdqn.envs import Lives, Protocol, make_env
from mtdqn.envs.protocol import frame_layout, newest_frame


@dataclass
class ActorStep:
    """One vector step of all games; arrays are [num_games * envs_per_game], game-major."""

    frame: np.ndarray  # uint8 [N, 84, 84]: newest frame of the observation acted on (MinAtar: [N, C, 10, 10])
    action: np.ndarray
    reward: np.ndarray  # raw game reward
    terminated: np.ndarray  # no bootstrap past this step (with life_loss_terminal also a lost life)
    truncated: np.ndarray
    first: np.ndarray  # the observation acted on starts an episode
    frames: np.ndarray  # [num_games] emulator frames this step advanced each game
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (game, return, frames)


def linear_epsilon(frames: np.ndarray, start: float, end: float, decay_frames: float) -> np.ndarray:
    """Per-game epsilon, linear from `start` to `end` over `decay_frames` of that game's frames."""
    fraction = np.clip(np.asarray(frames, dtype=np.float64) / max(decay_frames, 1.0), 0.0, 1.0)
    return start + fraction * (end - start)


def refilled(frames: np.ndarray, refill_from: int | None, learning_starts: int, paused: int) -> np.ndarray:
    """Frames of a resumed run's latest replay refill (begun at `refill_from`, `learning_starts` long) that the
    epsilon schedule does not count, `paused` frames having gone uncounted before: those past where the decay
    would have run (a refill within the first warm-up pauses nothing: epsilon is at its start there anyway)."""
    if refill_from is None:
        return np.zeros_like(frames)
    start = max(refill_from, learning_starts + paused)
    return np.clip(frames - start, 0, max(refill_from + learning_starts - start, 0))


class Actor:
    """Owns one ale-py `AtariVectorEnv` per game and each env's episode bookkeeping.

    With the protocol's life_loss_terminal a lost life is reported as `terminated` for the learner
    (its TD target stops there), while the game, the frame stack and the episode's return go on. ale-py's own
    `episodic_life` restarts the game at a lost life instead, so the agent would only see first lives.
    With the protocol's `life_loss_reset` the frame stack restarts there too, as Dopamine's does: the
    actor acts on zeroed older frames, and the replay (`terminal_ends_stack`) stacks alike.

    Its emulators are seeded from the `emulator` stream and epsilon-greedy draws from `exploration`
    (core/streams.py); either not given is spawned from `seed` as a run's would be.
    """

    def __init__(self, games: list[str], envs_per_game: int, protocol: Protocol, seed: int,
                 env_threads: int = 1, device: str | torch.device = "cpu",
                 emulator: np.random.Generator | None = None, exploration: np.random.Generator | None = None):
        if protocol.life_loss_reset and not protocol.life_loss_terminal:  # else the replay would not restart stacks
            raise ValueError("life_loss_reset needs life_loss_terminal=True: the replay restarts a stack only "
                             "after a terminated slot")
        self.games = games
        self.life_loss_terminal = protocol.life_loss_terminal
        self.life_loss_reset = protocol.life_loss_reset
        self.envs_per_game = envs_per_game
        self.frameskip = protocol.frameskip
        self.stack = frame_layout(games)[1]
        self.device = torch.device(device)
        self.envs = [make_env(g, envs_per_game, protocol, num_threads=env_threads) for g in games]
        self.lanes = [envs_per_game] * len(games)  # replay lanes per game: one per env
        self.action_counts = [int(env.single_action_space.n) for env in self.envs]
        if emulator is None or exploration is None:
            streams = Streams.spawn(seed)
            emulator = streams.emulator if emulator is None else emulator
            exploration = streams.exploration if exploration is None else exploration
        self.env_seeds = emulator_seeds(emulator, len(games), envs_per_game)  # one per env of each game
        resets = [env.reset(seed=seeds) for env, seeds in zip(self.envs, self.env_seeds)]
        self.obs = np.concatenate([obs for obs, _ in resets])
        self.lives = Lives(np.concatenate([info["lives"] for _, info in resets]))
        n = len(self.obs)
        self.game_ids = np.repeat(np.arange(len(games)), envs_per_game)
        self._game_ids_t = torch.from_numpy(self.game_ids).to(self.device)
        self._actions_per_env = np.array(self.action_counts)[self.game_ids]
        self.first = np.ones(n, dtype=bool)
        self.final = np.zeros(n, dtype=bool)  # the current observation ends an episode
        self.returns = np.zeros(n, dtype=np.float64)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.rng = exploration
        self._pending: np.ndarray | None = None

    def act(self, network, epsilon: np.ndarray, precision: Precision = "fp32") -> np.ndarray:
        """Epsilon-greedy actions (epsilon per game) from one forward over all envs; sent at once."""
        with autocast(self.device, precision):
            greedy = greedy_actions(network, self.obs, self._game_ids_t, self.device)
        return self.send(greedy, epsilon)

    def send(self, greedy: np.ndarray, epsilon: np.ndarray) -> np.ndarray:
        """The greedy actions for `obs`, explored with epsilon per game from the exploration stream, sent to
        the envs (`act` computes them; a seed batch computes every seed's in one forward, core/seeds.py)."""
        actions = explore(greedy, self._actions_per_env, np.asarray(epsilon)[self.game_ids], self.rng)
        for i, env in enumerate(self.envs):
            env.send(actions[i * self.envs_per_game:(i + 1) * self.envs_per_game])
        self._pending = actions
        return actions

    def recv(self) -> ActorStep:
        """Collect the step started by `act` and advance each env's episode bookkeeping."""
        results = [env.recv() for env in self.envs]
        next_obs = np.concatenate([r[0] for r in results])
        reward = np.concatenate([r[1] for r in results]).astype(np.float32)
        terminated = np.concatenate([r[2] for r in results])
        truncated = np.concatenate([r[3] for r in results])
        applied = ~self.final  # on a final observation ale-py resets instead of acting
        life_lost = False
        if self.life_loss_terminal or self.life_loss_reset:
            lives = np.concatenate([r[4]["lives"] for r in results])
            life_lost = self.lives.step(lives, next_obs if self.life_loss_reset else None) & applied
            life_lost &= self.life_loss_terminal
        step = ActorStep(
            frame=newest_frame(self.obs, self.stack), action=self._pending, reward=reward, terminated=terminated | life_lost,
            truncated=truncated, first=self.first,
            frames=np.bincount(self.game_ids, weights=applied, minlength=len(self.games)).astype(np.int64) * self.frameskip,
        )
        self.returns += reward
        self.lengths += applied
        done = terminated | truncated
        for i in np.flatnonzero(done):
            step.episodes.append((int(self.game_ids[i]), float(self.returns[i]), int(self.lengths[i]) * self.frameskip))
        self.returns[done] = 0.0
        self.lengths[done] = 0
        self.first = self.final.copy()
        self.final = done
        self.obs = next_obs
        return step

    def close(self) -> None:
        for env in self.envs:
            env.close()
