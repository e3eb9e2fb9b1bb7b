"""What a TrainConfig builds: the network for its sharing mode, the learner for its balancer, and the
env threads for the machine. The training loop (runner.py), the Ray backend and the benchmarks build
from here, so a run, a distributed run and a measurement get the same agent for the same flags."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.multitask.sharing import torso_of
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.validate import task_weights
from mtdqn.envs.protocol import family_of


def library_versions() -> dict[str, str]:
    import ale_py
    import gymnasium

    return {"torch": str(torch.__version__), "ale_py": ale_py.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


def network_spec(cfg: TrainConfig, games: list[str], action_counts: list[int]) -> dict:
    """MultiHeadQNetwork's arguments for the config's sharing mode and balancer."""
    return {"action_counts": action_counts, "dueling": cfg.dueling, "torso_of": torso_of(cfg.sharing, games, cfg.groups),
            "tied_init": cfg.sharing == "soft", "popart": cfg.balance == "popart", "norm": cfg.norm,
            "padding": cfg.padding, "init": cfg.init, "gated": cfg.sharing == "learned", "width": cfg.torso_width,
            **({"torso": "minatar", "adapter": cfg.input_layer == "per-game"} if family_of(games) == "minatar" else {})}


def build_learner(cfg: TrainConfig, games: list[str], action_counts: list[int],
                  generator: torch.Generator | None = None) -> DQNLearner:
    """The network and learner the config asks for: sharing mode, balancer, their options; `generator`
    is the augmentation's stream (None: torch's global RNG). The weights draw from torch's global RNG."""
    network = MultiHeadQNetwork(**network_spec(cfg, games, action_counts))
    return DQNLearner(
        network, learning_rate=cfg.learning_rate, adam_eps=cfg.adam_eps, gamma=cfg.gamma,
        target_update_period=cfg.target_update_period, max_grad_norm=cfg.max_grad_norm,
        reward_clip=cfg.reward_clip, balance=cfg.balance, popart_beta=cfg.popart_beta,
        task_weights=task_weights(cfg.task_weights, games) if cfg.balance == "weighted" else None,
        soft_coupling=cfg.soft_coupling if cfg.sharing == "soft" else 0.0, random_shift=cfg.random_shift,
        intensity_noise=cfg.intensity_noise, shift_per=cfg.shift_per, reset_interval=cfg.reset_interval,
        target_tau=cfg.target_tau,
        gate_sparsity=cfg.gate_sparsity, gate_sharing=cfg.gate_sharing, gate_lr=cfg.gate_lr,
        device=cfg.device, precision=cfg.precision, generator=generator)


def auto_env_threads(num_games: int, envs_per_game: int) -> int:
    """Threads per game env so that all games together use about the machine's cores."""
    cores = os.cpu_count() or 1
    return max(1, min(envs_per_game, math.ceil(cores / num_games)))
