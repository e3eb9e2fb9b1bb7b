"""Evaluation protocols and the one place that builds vector envs (ale-py's, or MinAtar's: envs/minatar.py).

Every run, checkpoint and evaluation records its protocol, because scores under sticky actions
(Machado et al. 2018) and under no-op starts (Mnih et al. 2015) are not comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ale_py.vector_env import AtariVectorEnv

from mtdqn.envs import minatar

FRAMESKIP = 4  # emulator frames per agent step on ALE; budgets count emulator frames (a protocol's `frameskip`)


@dataclass(frozen=True)
class Protocol:
    name: str
    repeat_action_probability: float
    noop_max: int
    max_frames_per_episode: int = 108_000
    full_action_space: bool = False
    episodic_life: bool = False
    life_loss_terminal: bool = False  # the learner's TD target stops at a lost life; the game goes on
    life_loss_reset: bool = False  # the frame stack restarts at a lost life (acting, learning, evaluation)
    family: str = "ale"  # the games it applies to: "ale" or "minatar"
    frameskip: int = FRAMESKIP  # emulator frames per agent step (MinAtar: 1, its budgets count steps)
    difficulty_ramping: bool = False  # MinAtar's: the games speed up as the agent scores

    def to_dict(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    # Machado et al. 2018: sticky actions, no life-loss terminals, 30-minute cap, minimal actions.
    "machado": Protocol("machado", repeat_action_probability=0.25, noop_max=0),
    # DQN Nature: deterministic emulator, up to 30 no-op actions at the start of each episode.
    "classic": Protocol("classic", repeat_action_probability=0.0, noop_max=30),
    # Atari 100k as Dopamine's atari_100k runs it (DER, DrQ(eps), SPR, BBF): deterministic emulator, up
    # to 30 no-op starts (its MaxEpisodeEvalRunner, training and evaluation alike), a lost life is
    # terminal for the learner while the game goes on, 27,000-step cap; evaluation plays to game over.
    "atari100k": Protocol("atari100k", repeat_action_probability=0.0, noop_max=30, life_loss_terminal=True),
    # MinAtar (Young & Tian 2019), the package's defaults: sticky actions 0.1, difficulty ramping, one frame
    # per step; "minatar" plays each game's minimal action set, "minatar_full" all 6 as the paper did.
    # The paper has no episode cap; the run's --max-episode-frames (108,000 steps) keeps evaluation finite.
    **{name: Protocol(**{**p, "max_frames_per_episode": 108_000}, family="minatar", frameskip=minatar.FRAMES_PER_STEP)
       for name, p in minatar.PROTOCOLS.items()},
}


def episode_cap(protocol: dict) -> dict:
    """How an evaluation's episodes were capped, from its recorded protocol (a `Protocol.to_dict()`): its cap in
    frames, the protocol's own (108,000: 30 minutes of play), and whether the first lies below the second (an
    --max-episode-frames override), which makes its scores those of cut-short episodes: pong's -21 of a whole
    game is about -2 at 400 frames."""
    named = PROTOCOLS.get(protocol.get("name"))
    own = named.max_frames_per_episode if named else Protocol.__dataclass_fields__["max_frames_per_episode"].default
    cap = int(protocol.get("max_frames_per_episode", own))  # a record without it: the protocol's own
    return {"frames": cap, "protocol_frames": own, "below_protocol": cap < own}


def family_of(games: list[str]) -> str:
    """'minatar' if the games are MinAtar's, 'ale' otherwise (resolve_games refuses a mix)."""
    return "minatar" if games and minatar.is_minatar(games[0]) else "ale"


def frame_layout(games: list[str]) -> tuple[tuple[int, ...], int]:
    """(the shape of one stored frame, frames per observation) of the games' observations: ALE's 84x84 grey
    frames in stacks of 4, or MinAtar's whole [channels, 10, 10] grid, one per observation. The actor keeps
    an observation's newest frame, the replay rebuilds observations from them."""
    if family_of(games) == "minatar":
        return (minatar.MAX_CHANNELS, *minatar.OBS_SIZE), minatar.FRAME_STACK
    return (84, 84), 4


def newest_frame(obs: np.ndarray, stack: int) -> np.ndarray:
    """The newest frame of each observation: the last of an ALE stack [N, 4, 84, 84], or the whole
    observation when it is one (multi-channel) frame."""
    return obs[:, -1] if stack > 1 else obs


def default_protocol(games: list[str]) -> str:
    """The protocol a run of `games` gets unless one is named: machado on ALE, minatar on MinAtar."""
    return "minatar" if family_of(games) == "minatar" else "machado"


class Lives:
    """Each env's lives, to see a lost one, and the frame stacks restarted there.

    Dopamine's runner begins a new agent episode at a lost life (`begin_episode` zeroes the agent's
    frame stack, in training and evaluation alike) while ale-py's stack runs on across it; with the
    protocol's `life_loss_reset` the frames from before the loss are zeroed, as at an episode start.
    """

    FAR = 1 << 30  # no lost life in sight: nothing to zero

    def __init__(self, lives: np.ndarray):
        self.lives = np.array(lives)
        self.age = np.full(len(self.lives), self.FAR)  # observations since the last lost life, capped

    def step(self, lives: np.ndarray, obs: np.ndarray | None = None) -> np.ndarray:
        """Which envs lost a life with this step (a new game's full lives is no loss). With `obs`
        [N, stack, ...], the step's observations: zero there, in place, the frames from before each
        env's last lost life."""
        lives = np.asarray(lives)
        lost = lives < self.lives
        # a new game's stack comes zero-padded from ale-py, so zeroing on past it changes nothing; a
        # bonus life must not end the restart, as the replay's stacks run on to the lost life
        self.age = np.where(lost, 1, np.minimum(self.age + 1, self.FAR))
        self.lives = lives.copy()
        if obs is not None:
            stack = obs.shape[1]
            obs[np.arange(stack)[None, :] < stack - self.age[:, None]] = 0
        return lost


def make_env(game: str, num_envs: int, protocol: Protocol, num_threads: int = 1,
             rgb: bool = False, autoreset_mode: str = "NextStep") -> AtariVectorEnv:
    """ale-py's C++ vector env for one game: frameskip 4, max-pool, 84x84 gray, 4-stack.

    Rewards come back raw (`reward_clipping=False`) so episode returns are game scores; the learner
    clips. With `rgb=True` it returns full-size colour frames (for videos) of the same emulation.
    `autoreset_mode="SameStep"` (for SB3, see envs/sb3.py) resets a finished env within the step
    and puts its final observation in `info["final_obs"]`; our actor uses the default NextStep.
    A MinAtar game gets envs/minatar.py's vector env, its channels zero-padded to MAX_CHANNELS so one
    torso reads every game (`num_threads` does not apply; it steps in the caller's thread).
    """
    if minatar.is_minatar(game):
        if rgb or autoreset_mode != "NextStep":
            raise ValueError(f"{game}: MinAtar envs have no colour frames and autoreset only NextStep")
        return minatar.make_vector_env(game, num_envs, protocol, pad_channels=minatar.MAX_CHANNELS)
    env = AtariVectorEnv(
        game, num_envs, num_threads=num_threads, frameskip=FRAMESKIP,
        repeat_action_probability=protocol.repeat_action_probability,
        noop_max=protocol.noop_max, max_num_frames_per_episode=protocol.max_frames_per_episode,
        full_action_space=protocol.full_action_space, episodic_life=protocol.episodic_life,
        reward_clipping=False, use_fire_reset=False, autoreset_mode=autoreset_mode,
        **({"grayscale": False, "img_height": 210, "img_width": 160, "stack_num": 1} if rgb else {}),
    )
    return env


def num_actions(game: str, protocol: Protocol) -> int:
    """Size of the game's action set under `protocol` (minimal unless full_action_space)."""
    if minatar.is_minatar(game):
        return minatar.FULL_ACTIONS if protocol.full_action_space else minatar.MINIMAL_ACTIONS[game]
    env = make_env(game, 1, protocol)
    n = int(env.single_action_space.n)
    env.close()
    return n

