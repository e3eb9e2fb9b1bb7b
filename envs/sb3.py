"""Our Atari envs as Stable-Baselines3 sees them, so an SB3 agent is a like-for-like baseline.

`make_sb3_env` gives SB3 the ale-py `AtariVectorEnv` that `make_env` builds for our agent: the same
frameskip, max-pool, 84x84 gray 4-stack, protocol (sticky actions / no-ops / episode cap) and
minimal action set, and rewards clipped to [-1, 1] as our learner clips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor

from mtdqn.envs.protocol import Protocol, make_env


class AtariVecEnv(VecEnv):
    """SB3 `VecEnv` over one game's ale-py `AtariVectorEnv` (one C++ vectorizer backs all envs).

    SB3 wants a finished env reset within the same step, its last observation in
    `infos[i]["terminal_observation"]`, and a time-limit end marked `infos[i]["TimeLimit.truncated"]`
    so its replay buffer bootstraps it. ale-py's `autoreset_mode="SameStep"` does the first two
    natively (the last observation comes in `info["final_obs"]`), so a step is one `send` + `recv`
    with no extra emulation. Rewards are raw game rewards, as our env returns them.
    """

    def __init__(self, game: str, num_envs: int, protocol: Protocol, num_threads: int = 1):
        self.game = game
        self.protocol = protocol
        self.env = make_env(game, num_envs, protocol, num_threads=num_threads, autoreset_mode="SameStep")
        super().__init__(num_envs, self.env.single_observation_space, self.env.single_action_space)

    def reset(self) -> np.ndarray:
        seeds = None if any(s is None for s in self._seeds) else np.asarray(self._seeds, dtype=np.int64)
        obs, _ = self.env.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.env.send(np.asarray(actions, dtype=np.int64).reshape(self.num_envs))

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.env.recv()
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    # One vectorizer holds every env, so per-env attribute access maps onto it for each index.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("AtariVecEnv has no RGB frames; record videos with agents.evaluation")


class VecClipReward(VecEnvWrapper):
    """Rewards clipped to [-1, 1] for SB3's learner, as our learner clamps them (SB3 otherwise clips
    only inside its single-env `AtariWrapper`, which would also change the preprocessing)."""

    def reset(self) -> np.ndarray:
        return self.venv.reset()

    def step_wait(self):
        obs, reward, dones, infos = self.venv.step_wait()
        return obs, np.clip(reward, -1.0, 1.0), dones, infos


def make_sb3_env(game: str, num_envs: int, protocol: Protocol, num_threads: int = 1, seed: int | None = None,
                 clip_rewards: bool = True) -> VecEnv:
    """The env an SB3 agent trains on: `AtariVecEnv`, raw episode returns (game scores) recorded by
    `VecMonitor` in `infos[i]["episode"]`, then rewards clipped for learning unless `clip_rewards=False`."""
    env: VecEnv = VecMonitor(AtariVecEnv(game, num_envs, protocol, num_threads))
    if seed is not None:
        env.seed(seed)
    return VecClipReward(env) if clip_rewards else env
