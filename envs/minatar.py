"""MinAtar (Young & Tian 2019) as a game family: ids, suite, protocol, a vector env and normalized scores.

MinAtar is five miniature Atari games on a 10x10 grid of binary channels (`pip install minatar==1.0.15`,
GPL-3.0: an optional extra, `mtdqn[minatar]`, imported only when an env is built). It is a proxy for
developing methods quickly; ALE stays the target (docs/minatar.md).

Game ids are `minatar/<game>`: the family as a namespace, as Gymnasium names `MinAtar/Breakout-v1` and
`ALE/Breakout-v5`, so `minatar/breakout` can never be read as ale-py's `breakout` ROM (ROM ids are
snake_case, without a slash). `slug()` gives the flat form (`minatar-breakout`) for file names.

`MinAtarVectorEnv` steps N copies of one game behind the interface our actor uses on ale-py's
`AtariVectorEnv`: `reset(seed=)`, `send`/`recv`/`step`, NextStep autoreset (the step after a done is a reset
step: its action is ignored, reward 0, flags False), `info["env_id"|"lives"|"frame_number"|
"episode_frame_number"]`, uint8 observations [N, C, 10, 10], channels first. One agent step is one
MinAtar frame (no frameskip), and there is no frame stack: one observation is the full state.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

PREFIX = "minatar/"
NAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")  # the package's env names
MINATAR = tuple(PREFIX + n for n in NAMES)
SUITES = {"minatar": MINATAR}

# The package's state_shape()[2] and len(minimal_action_set()) per game (tests check them on the package).
CHANNELS = {"minatar/asterix": 4, "minatar/breakout": 4, "minatar/freeway": 7, "minatar/seaquest": 10,
            "minatar/space_invaders": 6}
MINIMAL_ACTIONS = {"minatar/asterix": 5, "minatar/breakout": 3, "minatar/freeway": 3, "minatar/seaquest": 6,
                   "minatar/space_invaders": 4}
FULL_ACTIONS = 6  # every MinAtar game takes the same 6 actions: n, l, u, r, d, f
MAX_CHANNELS = max(CHANNELS.values())  # every game's observation is zero-padded to seaquest's 10 channels
OBS_SIZE = (10, 10)
FRAMES_PER_STEP = 1  # budgets in MinAtar's papers count agent steps as frames
FRAME_STACK = 1  # the state is Markov enough by design (trail channels give directions)

# The evaluation protocol as data, in the fields of envs/protocol.py's Protocol plus MinAtar's own
# `difficulty_ramping`. The package defaults (minatar.Environment): sticky actions 0.1, difficulty ramping
# on. No episode cap: neither the package, nor the paper's examples/dqn.py, nor Dopamine's MinAtar runner
# (max_steps_per_episode = 1e8) has one; Freeway's own 2,500-step clock ends its episodes as a termination.
# "minatar" plays the game's minimal action set (Gymnasium's MinAtar/*-v1, as our Atari protocols do);
# "minatar_full" plays all 6 actions, as the paper's results, the package README's curves and Dopamine's
# MinAtar configs did (the README: "the results included in this repo and the associated paper use the
# full action set of 6 actions").
PROTOCOLS = {
    "minatar": {"name": "minatar", "repeat_action_probability": 0.1, "noop_max": 0,
                "max_frames_per_episode": None, "full_action_space": False, "episodic_life": False,
                "life_loss_terminal": False, "life_loss_reset": False, "difficulty_ramping": True},
    "minatar_full": {"name": "minatar_full", "repeat_action_probability": 0.1, "noop_max": 0,
                     "max_frames_per_episode": None, "full_action_space": True, "episodic_life": False,
                     "life_loss_terminal": False, "life_loss_reset": False, "difficulty_ramping": True},
}
MINATAR_PROTOCOL = PROTOCOLS["minatar"]

INSTALL_HINT = "MinAtar is an optional extra (GPL-3.0): pip install 'mtdqn[minatar]' (minatar==1.0.15)"


def is_minatar(game: str) -> bool:
    return game.startswith(PREFIX)


def check_game(game: str) -> str:
    """Return `game` if it is a MinAtar id, else raise GameError naming the closest valid ids."""
    import difflib

    from mtdqn.envs.games import GameError

    if game in MINATAR:
        return game
    name = game.lower().replace("-", "_").replace(" ", "_").split("/")[-1]
    close = difflib.get_close_matches(name, NAMES, n=2, cutoff=0.6)
    hint = (f"did you mean {' or '.join(PREFIX + c for c in close)}?" if close
            else f"MinAtar games are {', '.join(MINATAR)}")
    raise GameError(f"unknown MinAtar game {game!r}: {hint}")


def package_name(game: str) -> str:
    """'minatar/space_invaders' -> 'space_invaders', the name minatar.Environment takes."""
    return check_game(game)[len(PREFIX):]


def slug(game: str) -> str:
    """A file-name-safe form of any game id: 'minatar/breakout' -> 'minatar-breakout'; ALE ids unchanged."""
    return game.replace("/", "-")


def _environment_class():
    try:
        from minatar import Environment
    except ImportError as e:  # the extra is not installed
        raise ImportError(INSTALL_HINT) from e
    return Environment


class MinAtarVectorEnv:
    """N MinAtar environments of one game, stepped in lockstep in this thread.

    Each env is the package's own `minatar.Environment` (its sticky actions and difficulty ramping), so a
    seeded env here plays exactly what the package plays from that seed. Seeding: `reset(seed=s)` seeds
    env i with `s + i` (an array gives one seed per env), as ale-py does; the package draws the game's
    randomness and the sticky-action coin (`rand() < p`, once per step, before the game moves) from one
    `RandomState(seed)` per env. An explicit `reset` also restarts each env's sticky memory at no-op, as
    a freshly built package env starts; an autoreset keeps it, as the package's `reset` does.

    Action k of the agent is the k-th action of the game's minimal action set (`minimal_action_set()`
    of the package), or action k of all 6 with `full_action_space`. `pad_channels=10` appends zero
    channels so that every game's observation has seaquest's 10, for one torso over several games.
    """

    def __init__(self, game: str, num_envs: int, repeat_action_probability: float = 0.1,
                 difficulty_ramping: bool = True, full_action_space: bool = False,
                 max_episode_steps: int | None = None, pad_channels: int | None = None):
        from gymnasium.spaces import Box, Discrete
        from gymnasium.vector.utils import batch_space

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        environment = _environment_class()
        self.game = check_game(game)
        self.num_envs = num_envs
        self.repeat_action_probability = repeat_action_probability
        self.max_episode_steps = max_episode_steps
        self.envs = [environment(package_name(game), sticky_action_prob=repeat_action_probability,
                                 difficulty_ramping=difficulty_ramping) for _ in range(num_envs)]
        first = self.envs[0]
        self.action_set = np.array(range(first.num_actions()) if full_action_space else first.minimal_action_set())
        self.channels = int(first.n_channels)  # the game's own; observations carry `obs_channels`
        if pad_channels is not None and pad_channels < self.channels:
            raise ValueError(f"pad_channels={pad_channels} is below {game}'s {self.channels} channels")
        self.obs_channels = pad_channels or self.channels
        self.single_observation_space = Box(0, 1, (self.obs_channels, *OBS_SIZE), np.uint8)
        self.single_action_space = Discrete(len(self.action_set))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._action_list = [int(a) for a in self.action_set]
        self._obs = np.zeros((num_envs, self.obs_channels, *OBS_SIZE), dtype=np.uint8)
        # per env, as Python lists (stepped one env at a time): the last step ended the episode (the next
        # one resets), steps into the episode, frames since construction
        self._final = [False] * num_envs
        self._episode_steps = [0] * num_envs
        self._frames = [0] * num_envs
        self._env_id = np.arange(num_envs, dtype=np.int32)
        self._lives = np.ones(num_envs, dtype=np.int32)  # MinAtar has no lives: a constant, never a lost one
        self._pending: list[int] | None = None
        self._started = False

    def _observe_all(self) -> None:
        states = np.stack([env.state() for env in self.envs])  # [N, 10, 10, C] bool
        self._obs[:, :self.channels] = states.transpose(0, 3, 1, 2)  # -> [N, C, 10, 10] uint8, padding stays 0

    def _info(self) -> dict[str, np.ndarray]:
        return {"env_id": self._env_id.copy(), "lives": self._lives.copy(),
                "frame_number": np.array(self._frames, dtype=np.int32),
                "episode_frame_number": np.array(self._episode_steps, dtype=np.int32)}

    def reset(self, *, seed: int | np.ndarray | None = None, options: dict | None = None):
        """Start every env's episode; returns (obs uint8 [N, C, 10, 10], info)."""
        if options:
            raise ValueError(f"MinAtarVectorEnv.reset takes no options, got {sorted(options)}")
        if seed is not None:
            seeds = np.arange(seed, seed + self.num_envs) if np.isscalar(seed) else np.asarray(seed)
            if seeds.shape != (self.num_envs,):
                raise ValueError(f"seed must be an int or one per env, shape {(self.num_envs,)}, got {seeds.shape}")
            if seeds.min() < 0 or seeds.max() >= 2**32:
                raise ValueError("MinAtar seeds must lie in [0, 2**32)")
        for i, env in enumerate(self.envs):
            if seed is not None:
                env.seed(int(seeds[i]))  # one RandomState for the game and the sticky coin
            env.last_action = 0
            env.reset()
        self._observe_all()
        self._final = [False] * self.num_envs
        self._episode_steps = [0] * self.num_envs
        self._pending = None
        self._started = True
        return self._obs.copy(), self._info()

    def send(self, actions) -> None:
        """Queue one action per env (indices into the action set); `recv` steps them."""
        if not self._started:
            raise RuntimeError("call reset() before stepping")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be integers of shape {(self.num_envs,)}, got {actions.dtype} "
                             f"{actions.shape}")
        n = len(self._action_list)
        queued = actions.tolist()
        if not all(0 <= a < n for a in queued):
            raise ValueError(f"actions must lie in [0, {n}), got {actions}")
        self._pending = [self._action_list[a] for a in queued]

    def recv(self):
        """Step the queued actions; returns (obs, reward int32, terminated, truncated, info).

        An env whose previous step ended its episode resets instead (its action ignored, reward 0, both
        flags False, episode_frame_number 0): NextStep autoreset, as ale-py's default."""
        if self._pending is None:
            raise RuntimeError("recv() without send()")
        actions, self._pending = self._pending, None
        n, cap = self.num_envs, self.max_episode_steps
        rewards, terminated, truncated = [0] * n, [False] * n, [False] * n
        steps, frames, final = self._episode_steps, self._frames, self._final
        for i, env in enumerate(self.envs):  # plain Python: at N <= 64 cheaper than a dozen small NumPy calls
            if final[i]:
                env.reset()
                steps[i] = 0
            else:
                rewards[i], terminated[i] = env.act(actions[i])
                steps[i] += 1
                frames[i] += FRAMES_PER_STEP
                truncated[i] = not terminated[i] and cap is not None and steps[i] >= cap
            final[i] = terminated[i] or truncated[i]
        self._observe_all()
        return (self._obs.copy(), np.array(rewards, dtype=np.int32), np.array(terminated, dtype=bool),
                np.array(truncated, dtype=bool), self._info())

    def step(self, actions):
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        self._started = False


def make_vector_env(game: str, num_envs: int, protocol: dict | None = None,
                    pad_channels: int | None = None) -> MinAtarVectorEnv:
    """The vector env of `game` under a protocol (a dict of PROTOCOLS, or an object with those attributes)."""
    p = MINATAR_PROTOCOL if protocol is None else protocol
    get = p.get if isinstance(p, dict) else (lambda k, d=None: getattr(p, k, d))
    return MinAtarVectorEnv(game, num_envs, repeat_action_probability=get("repeat_action_probability"),
                            difficulty_ramping=get("difficulty_ramping", True),
                            full_action_space=get("full_action_space", False),
                            max_episode_steps=get("max_frames_per_episode"), pad_channels=pad_channels)


def rgb_frames(obs: np.ndarray, scale: int = 16) -> np.ndarray:
    """uint8 RGB images [..., 10 * scale, 10 * scale, 3] of observations [..., C, 10, 10] (for videos):
    black background, channel c in the c-th colour of matplotlib's cubehelix map, the highest channel on
    top, as the package's display_state draws them (without its seaborn dependency)."""
    from matplotlib import colormaps

    obs = np.asarray(obs)
    channels = obs.shape[-3]
    palette = np.zeros((channels + 1, 3), dtype=np.uint8)
    palette[1:] = (colormaps["cubehelix"](np.linspace(0.15, 0.85, channels))[:, :3] * 255).astype(np.uint8)
    index = np.max(obs.astype(np.int64) * np.arange(1, channels + 1)[:, None, None], axis=-3)  # [..., 10, 10]
    return palette[index].repeat(scale, axis=-3).repeat(scale, axis=-2)


@lru_cache(maxsize=1)
def reference_scores() -> dict[str, tuple[float, float]]:
    """game -> (random, dqn) from `envs/data/minatar_scores.csv` (its header names the sources)."""
    text = resources.files("mtdqn.envs").joinpath("data/minatar_scores.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["game"]: (float(r["random"]), float(r["dqn"])) for r in rows}


def normalized_score(game: str, score):
    """(score - random) / (dqn - random): 0 for a uniform random policy, 1 for the paper's DQN; None for
    a game without a reference."""
    ref = reference_scores().get(game)
    if ref is None:
        return None
    random, dqn = ref
    return (np.asarray(score, dtype=np.float64) - random) / (dqn - random)


def random_returns(game: str, episodes_per_env: int, seed: int = 0, num_envs: int = 16,
                   protocol: dict | None = None):
    """Returns and lengths of the uniform random policy over the action set under `protocol`: each of
    `num_envs` envs (env i seeded `seed + i`) plays exactly `episodes_per_env` episodes, so long episodes
    are not left out by stopping at the first ones to finish; actions from `default_rng(seed)`. How
    minatar_scores.csv's random column was measured. Arrays [num_envs * episodes_per_env], env-major."""
    env = make_vector_env(game, num_envs, protocol)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    returns = [[] for _ in range(num_envs)]
    lengths = [[] for _ in range(num_envs)]
    running = np.zeros(num_envs)
    while min(len(r) for r in returns) < episodes_per_env:
        _, reward, terminated, truncated, info = env.step(rng.integers(env.single_action_space.n, size=num_envs))
        running += reward
        for i in np.flatnonzero(terminated | truncated):
            if len(returns[i]) < episodes_per_env:
                returns[i].append(running[i])
                lengths[i].append(int(info["episode_frame_number"][i]))
            running[i] = 0
    env.close()
    return np.array(returns).ravel(), np.array(lengths).ravel()
