"""Double-DQN learner with n-step targets, Huber loss and equal-weight per-game losses.

The batch's per-game TD losses are each a mean over that game's samples, and the training loss is
their plain mean over the games in the batch (linear scalarization): a game's weight does not
depend on how many of its samples happen to be in the batch.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from agents.network import MultiHeadQNetwork
from agents.replay import Batch


class NonFiniteError(ArithmeticError):
    """A NaN or Inf in the loss or gradients; names the games and the update."""

    def __init__(self, update: int, games: list[int], what: str):
        self.update, self.games, self.what = update, games, what
        super().__init__(f"non-finite {what} at update {update} (game ids {games})")


Precision = Literal["fp32", "bf16"]


def autocast(device: torch.device, precision: Precision):
    """bf16 autocast for network forward passes (their backward follows); a no-op for fp32.

    Only forwards go inside: weights, optimizer state, targets and the loss stay fp32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class DQNLearner:
    def __init__(self, network: MultiHeadQNetwork, *, learning_rate: float = 1e-4, adam_eps: float = 1.5e-4,
                 gamma: float = 0.99, target_update_period: int = 2000, max_grad_norm: float = 10.0,
                 reward_clip: bool = True, device: str | torch.device = "cpu", precision: Precision = "fp32"):
        self.device = torch.device(device)
        self.precision = precision
        self.online = network.to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=learning_rate, eps=adam_eps,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.gamma = gamma
        self.target_update_period = target_update_period
        self.max_grad_norm = max_grad_norm
        self.reward_clip = reward_clip
        self.updates = 0

    def _tensors(self, batch: Batch):
        def t(x):
            return torch.from_numpy(x).to(self.device, non_blocking=True)

        return (t(batch.obs), t(batch.action), t(batch.rewards), t(batch.terminated), t(batch.steps),
                t(batch.next_obs), t(batch.game))

    def td_targets(self, rewards, terminated, steps, next_obs, game) -> torch.Tensor:
        """sum_k gamma^k r_k + [not terminated] gamma^m Q_target(s_m, argmax_a Q_online(s_m, a))."""
        if self.reward_clip:
            rewards = rewards.clamp(-1.0, 1.0)
        n = rewards.shape[1]
        discounts = self.gamma ** torch.arange(n, device=rewards.device, dtype=rewards.dtype)
        returns = (rewards * discounts).sum(1)
        with torch.no_grad(), autocast(self.device, self.precision):
            next_obs = next_obs.float() / 255.0  # once, for both networks
            next_action = self.online(next_obs, game).argmax(1, keepdim=True)
            next_q = self.target(next_obs, game).gather(1, next_action).squeeze(1).float()
        bootstrap = (~terminated).to(rewards.dtype) * self.gamma ** steps.to(rewards.dtype)
        return returns + bootstrap * next_q

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step. Returns per-game mean TD loss [G] (nan where absent) and mean Q."""
        obs, action, rewards, terminated, steps, next_obs, game = self._tensors(batch)
        target = self.td_targets(rewards, terminated, steps, next_obs, game)
        with autocast(self.device, self.precision):
            q = self.online(obs, game)
        q = q.float().gather(1, action[:, None]).squeeze(1)
        td = F.smooth_l1_loss(q, target, reduction="none")
        num_games = self.online.num_games
        count = torch.zeros(num_games, device=td.device).index_add_(0, game, torch.ones_like(td))
        per_game = torch.zeros(num_games, device=td.device).index_add_(0, game, td) / count.clamp(min=1)
        present = count > 0
        loss = per_game[present].mean()
        if not torch.isfinite(loss):  # before any state changes, so the batch can be skipped cleanly
            bad = (present & ~torch.isfinite(per_game)).nonzero().flatten().tolist()
            raise NonFiniteError(self.updates + 1, bad, "TD loss (targets or Q-values)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.max_grad_norm)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteError(self.updates + 1, present.nonzero().flatten().tolist(), "gradient")
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.target_update_period == 0:
            self.target.load_state_dict(self.online.state_dict())
        per_game = per_game.detach().masked_fill(~present, float("nan"))
        return {"loss": loss.detach(), "per_game_loss": per_game, "q": q.detach().mean(),
                "grad_norm": grad_norm.detach()}

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        # torch keeps the given moment tensors (no copy): a deep copy keeps `state` reusable
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.updates = int(state["updates"])


def greedy_actions(network: MultiHeadQNetwork, obs: np.ndarray, game_ids: torch.Tensor, device) -> np.ndarray:
    """argmax_a Q(obs, a) for a numpy batch of stacked frames."""
    with torch.no_grad():
        q = network(torch.from_numpy(obs).to(device), game_ids)
    return q.argmax(1).cpu().numpy()


def epsilon_greedy(network, obs: np.ndarray, game_ids: torch.Tensor, num_actions: np.ndarray, epsilon,
                   rng: np.random.Generator, device) -> np.ndarray:
    """Greedy actions, each replaced by a uniform one of its game's with probability epsilon (scalar or per sample)."""
    actions = greedy_actions(network, obs, game_ids, device)
    explore = rng.random(len(actions)) < epsilon
    return np.where(explore, rng.integers(0, num_actions), actions).astype(np.int64)
