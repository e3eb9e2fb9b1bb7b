"""Task-balanced replay: one circular buffer per game, frames stored once, stacks built at sampling.

Layout of one game's buffer (Dopamine's circular buffer, with one lane per env of that game):
slot t of lane e holds the newest frame of the observation the env showed at step t, the action
taken on it, and what that action brought: raw reward, `terminated`, `truncated`. `first` marks
the first frame of an episode. With ale-py's next-step autoreset, the slot after an episode's end
holds its final frame (kept: a truncated episode bootstraps from it) and is never a transition
start, because the action stored there was not applied. The slot after that is `first`.

At sampling, a stack is the 4 frames ending at a slot, with frames from before the episode's
`first` zeroed (what the env itself shows at an episode start), and an n-step transition from
slot i runs until n steps pass or the episode ends: termination cuts the bootstrap, truncation
does not. Raw rewards come out per step so the learner owns clipping or normalization.

With `terminal_ends_stack` (the protocol's `life_loss_reset`, where a lost life is `terminated`
and the game goes on) a stack also zeroes the frames at and before a terminated slot, so the learner
sees the stack the actor acted on after a lost life.

A window also stops before a slot whose successor is `first`. At an episode's end it has stopped
earlier, at the done; the case left is a run resumed from a checkpoint, which starts fresh episodes
right after the last slot written before the save, whose next frame was never stored. The window
then bootstraps from that slot's own state instead of running into the next episode (if that slot
ended its episode, its step is dropped too: fewer steps, the target still valid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SHAPE = (84, 84)  # ALE: one grey frame per slot, stacks of 4 (MinAtar: its whole [C, 10, 10] grid, stacks of 1)
STACK = 4


@dataclass
class Batch:
    """A sampled batch; arrays are numpy, index b is one transition."""

    obs: np.ndarray  # uint8 [B, 4, 84, 84]
    action: np.ndarray  # int64 [B]
    rewards: np.ndarray  # float32 [B, n]: raw rewards of the steps taken, 0 after the episode ended
    terminated: np.ndarray  # bool [B]: the episode terminated within the n steps (no bootstrap)
    steps: np.ndarray  # int64 [B]: steps m taken (<= n); bootstrap discount is gamma**m
    next_obs: np.ndarray  # uint8 [B, 4, 84, 84]: the stack m steps later
    game: np.ndarray  # int64 [B]: game id


class GameReplay:
    """Circular buffer for one game with `lanes` envs stepping in lockstep."""

    ARRAYS = ("frames", "action", "reward", "terminated", "truncated", "first")  # one slot per lane each

    def __init__(self, capacity: int, lanes: int, n_step: int, terminal_ends_stack: bool = False,
                 frame_shape: tuple[int, ...] = FRAME_SHAPE, stack: int = STACK):
        self.stack_size = stack
        self.slots = max(capacity // lanes, stack + n_step + 2)
        self.lanes = lanes
        self.n_step = n_step
        self.terminal_ends_stack = terminal_ends_stack
        shape = (self.slots, lanes)
        self.frames = np.zeros(shape + tuple(frame_shape), dtype=np.uint8)
        self.action = np.zeros(shape, dtype=np.uint8)
        self.reward = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.truncated = np.zeros(shape, dtype=bool)
        self.first = np.zeros(shape, dtype=bool)
        self.cursor = 0  # next slot to write
        self.added = 0  # slots written in total, per lane

    @property
    def bytes_per_transition(self) -> int:
        return sum(getattr(self, k).nbytes for k in self.ARRAYS) // (self.slots * self.lanes)

    def __len__(self) -> int:
        return min(self.added, self.slots) * self.lanes

    def add(self, frame, action, reward, terminated, truncated, first) -> None:
        """Write one slot for every lane: arrays of shape [lanes] (frame: [lanes, 84, 84])."""
        t = self.cursor
        self.frames[t] = frame
        self.action[t] = action
        self.reward[t] = reward
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.first[t] = first
        self.cursor = (t + 1) % self.slots
        self.added += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """Contents and cursor; slots never written are saved too (zeros), keeping the layout exact."""
        return {**{k: getattr(self, k) for k in self.ARRAYS},
                "cursor": np.array(self.cursor), "added": np.array(self.added)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k in self.ARRAYS:
            if state[k].shape != getattr(self, k).shape:
                raise ValueError(f"saved replay {k} has shape {state[k].shape}, expected {getattr(self, k).shape}")
            getattr(self, k)[...] = state[k]
        self.cursor, self.added = int(state["cursor"]), int(state["added"])

    def _valid_range(self) -> tuple[int, int]:
        """Start slots [lo, lo + count) (mod slots) whose stack and n next slots are written."""
        if self.added <= self.slots:
            return 0, max(0, self.added - self.n_step)
        # Oldest slot is `cursor`; a stack needs 3 older slots, n-step needs n newer written ones.
        return self.cursor + self.stack_size - 1, self.slots - (self.stack_size - 1) - self.n_step

    def num_valid(self) -> int:
        return self._valid_range()[1] * self.lanes

    def sample_indices(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (slot, lane) transition starts, skipping final-frame slots."""
        lo, n = self._valid_range()
        t = np.empty(0, dtype=np.int64)
        e = np.empty(0, dtype=np.int64)
        while len(t) < count:
            need = count - len(t)
            ct = (lo + rng.integers(0, n, need)) % self.slots
            ce = rng.integers(0, self.lanes, need)
            keep = ~self.first[(ct + 1) % self.slots, ce]  # next slot first => ct is a final frame
            t, e = np.concatenate([t, ct[keep]]), np.concatenate([e, ce[keep]])
        return t, e

    def stack(self, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        """[B, 4, 84, 84] stacks ending at slots t of lanes e, zeroed before the episode start (a stack of
        one multi-channel frame, MinAtar's: [B, C, 10, 10])."""
        offsets = np.arange(-(self.stack_size - 1), 1)  # oldest .. newest
        slots = (t[:, None] + offsets[None, :]) % self.slots
        obs = self.frames[slots, e[:, None]]
        # column k of `breaks` marks a break just after frame k: slot k+1 starts an episode or, here,
        # slot k ended a life; frame k is zeroed if any break lies at k or later
        breaks = self.first[slots[:, 1:], e[:, None]]
        if self.terminal_ends_stack:
            breaks = breaks | self.terminated[slots[:, :-1], e[:, None]]
        obs[:, :-1][np.flip(np.maximum.accumulate(np.flip(breaks, 1), 1), 1)] = 0
        return obs.reshape(len(t), -1, *obs.shape[-2:])

    def transitions(self, t: np.ndarray, e: np.ndarray, game_id: int) -> Batch:
        """n-step transitions starting at slots t of lanes e."""
        k = np.arange(self.n_step)
        slots = (t[:, None] + k[None, :]) % self.slots
        term = self.terminated[slots, e[:, None]]
        done = term | self.truncated[slots, e[:, None]]
        cut = self.first[(slots + 1) % self.slots, e[:, None]]  # the step's outcome is another episode's
        # step k counts if no earlier step of the window ended the episode and it is not cut itself
        alive = np.concatenate([np.ones((len(t), 1), bool), np.cumsum(done, 1)[:, :-1] == 0], 1)
        alive &= np.cumsum(cut, 1) == 0
        steps = alive.sum(1)
        return Batch(
            obs=self.stack(t, e),
            action=self.action[t, e].astype(np.int64),
            rewards=np.where(alive, self.reward[slots, e[:, None]], 0.0).astype(np.float32),
            terminated=(term & alive).any(1),
            steps=steps.astype(np.int64),
            next_obs=self.stack((t + steps) % self.slots, e),
            game=np.full(len(t), game_id, dtype=np.int64),
        )


def concat(batches: list[Batch]) -> Batch:
    return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in Batch.__dataclass_fields__))


class TaskBalancedReplay:
    """One `GameReplay` per game; batches take an equal share from every game with enough data.

    balance="equal": each ready game gets batch_size // games samples, the remainder going to
    randomly chosen games; balance="proportional": shares follow the number of stored transitions.
    Batches draw from `rng` (a run's replay stream, core/streams.py; default_rng(seed) if not given),
    or from the generator `sample` is given (a measurement's own).
    """

    def __init__(self, num_games: int, capacity_per_game: int, lanes: int | list[int], n_step: int,
                 balance: str = "equal", seed: int = 0, terminal_ends_stack: bool = False,
                 rng: np.random.Generator | None = None, frame_shape: tuple[int, ...] = FRAME_SHAPE,
                 stack: int = STACK):
        if balance not in ("equal", "proportional"):
            raise ValueError(f"unknown replay balance {balance!r}: use equal or proportional")
        lanes = [lanes] * num_games if isinstance(lanes, int) else lanes  # per game: its envs
        self.games = [GameReplay(capacity_per_game, n, n_step, terminal_ends_stack, frame_shape, stack) for n in lanes]
        self.balance = balance
        self.rng = np.random.default_rng(seed) if rng is None else rng

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat {"<game>/<array>": array} for np.savez; the sampling RNG is saved with the checkpoint."""
        return {f"{g}/{k}": v for g, game in enumerate(self.games) for k, v in game.state_dict().items()}

    def load_state_dict(self, state) -> None:
        for g, game in enumerate(self.games):
            game.load_state_dict({k: state[f"{g}/{k}"] for k in (*GameReplay.ARRAYS, "cursor", "added")})

    def add(self, game_id: int, frame, action, reward, terminated, truncated, first) -> None:
        self.games[game_id].add(frame, action, reward, terminated, truncated, first)

    def __len__(self) -> int:
        return sum(len(g) for g in self.games)

    @property
    def bytes_per_transition(self) -> int:
        return self.games[0].bytes_per_transition

    def ready_games(self, min_transitions: int) -> list[int]:
        return [i for i, g in enumerate(self.games) if g.num_valid() >= max(min_transitions, 1)]

    def shares(self, batch_size: int, ready: list[int], rng: np.random.Generator | None = None) -> dict[int, int]:
        """How many samples each ready game contributes to a batch."""
        rng = self.rng if rng is None else rng
        if self.balance == "proportional":
            sizes = np.array([self.games[i].num_valid() for i in ready], dtype=np.float64)
            counts = rng.multinomial(batch_size, sizes / sizes.sum())
        else:
            counts = np.full(len(ready), batch_size // len(ready))
            counts[rng.choice(len(ready), batch_size % len(ready), replace=False)] += 1
        return {g: int(c) for g, c in zip(ready, counts) if c > 0}

    def sample(self, batch_size: int, ready: list[int], rng: np.random.Generator | None = None) -> Batch:
        """A batch drawn with `rng` (default: the replay's own generator)."""
        rng = self.rng if rng is None else rng
        parts = []
        for g, count in self.shares(batch_size, ready, rng).items():
            t, e = self.games[g].sample_indices(count, rng)
            parts.append(self.games[g].transitions(t, e, g))
        return concat(parts)
