"""Double-DQN learner with n-step targets and Huber loss, one gradient per game, combined into one update.

Each game's TD loss is a mean over that game's samples in the batch, so a game's weight does not
depend on how many of its samples the batch happens to hold. Each game's samples go through the
network as a chunk of their own and each game's loss gets its own backward pass (together the
FLOPs of one pass over the batch), so the learner holds every game's gradient and treats it as a
one-game agent would (multitask/balance.py `combine`): clipped by its own norm, taken whole by the
game's own parameters (head, value stream, gates, a torso or a gated channel of its own), and on a
shared torso summed and rescaled, channel by channel, to one game's gradient size. So a G-game
update moves every layer about as far as a one-game update, and with every game in every batch
`--sharing separate` is exactly G independent agents.

The balancer weighs or transforms the games' losses: `equal` (as they are), `weighted` (fixed
per-game weights), `popart` (losses on PopArt-normalized targets) or `pcgrad` (per-game torso
gradients projected off each other where they conflict, then summed). Soft sharing adds
`soft_coupling` times the torsos' distance from their mean; learned sharing adds `gate_sparsity`
and `gate_sharing` times the gates' costs, and steps the gate logits at `gate_lr` (they must cross
from open to closed within a run, which 1e-4 per step would not allow). These costs are added after
the games' gradients are combined, unclipped.

With target_update_period 1 (DER, DrQ(eps)) the target network is the online network itself, so
the bootstrap takes one forward pass instead of two and no copy is made after each update.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from mtdqn.agents.core.augment import augment
from mtdqn.agents.multitask.balance import BALANCES, combine, game_chunks, popart_statistics
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import Batch


GATE_ADAM_EPS = 1e-10


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


def n_step_targets(rewards, terminated, steps, next_q, gamma: float, reward_clip: bool) -> torch.Tensor:
    """sum_k gamma^k r_k + [not terminated] gamma^m next_q; rewards [..., n], the rest [...] (any leading
    axes: a batch, or seeds x batch)."""
    if reward_clip:
        rewards = rewards.clamp(-1.0, 1.0)
    discounts = gamma ** torch.arange(rewards.shape[-1], device=rewards.device, dtype=rewards.dtype)
    bootstrap = (~terminated).to(rewards.dtype) * gamma ** steps.to(rewards.dtype)
    return (rewards * discounts).sum(-1) + bootstrap * next_q


class DQNLearner:
    def __init__(self, network: MultiHeadQNetwork, *, learning_rate: float = 1e-4, adam_eps: float = 1.5e-4,
                 gamma: float = 0.99, target_update_period: int = 2000, max_grad_norm: float = 10.0,
                 reward_clip: bool = True, balance: str = "equal", task_weights=None, popart_beta: float = 3e-4,
                 soft_coupling: float = 0.0, random_shift: int = 0, intensity_noise: float = 0.0,
                 shift_per: str = "stack", reset_interval: int = 0, target_tau: float = 0.0,
                 gate_sparsity: float = 0.0, gate_sharing: float = 0.0, gate_lr: float = 1e-2,
                 device: str | torch.device = "cpu", precision: Precision = "fp32",
                 generator: torch.Generator | None = None):
        if balance not in BALANCES:
            raise ValueError(f"unknown balance {balance!r}: choose one of {', '.join(BALANCES)}")
        if (balance == "popart") != network.popart:
            raise ValueError("balance='popart' needs a network built with popart=True, and only then")
        self.device = torch.device(device)
        self.precision = precision
        self.online = network.to(self.device)
        # a target synced after every update is the online network: no second copy, no second forward
        self.target_is_online = target_update_period == 1 and not target_tau
        self.target = self.online if self.target_is_online else copy.deepcopy(self.online).requires_grad_(False)
        gates = self.online.gate_parameters()
        rest = [p for p in self.online.parameters() if all(p is not g for g in gates)]
        # the gates' own Adam: a gate logit's gradient is its penalties' (~coefficient / channels) plus the TD
        # loss's through one channel, 1e-7 to 1e-5 on a Nature torso, far below the weights' eps (1.5e-4),
        # which would cut its steps 10-1000 fold; GATE_ADAM_EPS lets gate_lr be the step it says
        groups = [{"params": rest}] + ([{"params": gates, "lr": gate_lr, "eps": GATE_ADAM_EPS}] if gates else [])
        self.optimizer = torch.optim.Adam(groups, lr=learning_rate, eps=adam_eps,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.gate_costs = (gate_sparsity, gate_sharing)
        self.gamma = gamma
        self.target_update_period = target_update_period
        self.target_tau = target_tau
        self.max_grad_norm = max_grad_norm
        self.reward_clip = reward_clip
        self.balance = balance
        weights = torch.ones(network.num_games) if task_weights is None else torch.as_tensor(task_weights).float()
        self.weights = weights.to(self.device)
        self.popart_beta = popart_beta
        self.popart_nu = torch.ones(network.num_games, device=self.device)  # second moment; mu lives in the network
        self.soft_coupling = soft_coupling
        self.random_shift = random_shift
        self.intensity_noise = intensity_noise
        self.shift_per = shift_per
        self.generator = generator  # the augmentation's stream (CPU); None: torch's global RNG
        self.reset_interval = reset_interval
        self._params = list(self.online.parameters())
        index = {id(p): i for i, p in enumerate(self._params)}
        self._torso_params = [{index[id(p)] for p in torso.parameters()} for torso in self.online.torsos]
        self.updates = 0

    def _tensors(self, batch: Batch):
        def t(x):
            return torch.from_numpy(x).to(self.device, non_blocking=True)

        return (t(batch.obs), t(batch.action), t(batch.rewards), t(batch.terminated), t(batch.steps),
                t(batch.next_obs), t(batch.game))

    def augment(self, frames, game, generator: torch.Generator | None = None):
        """uint8 stacks -> augmented float stacks; states and successors each draw their own offsets,
        from `generator` (a measurement's own) or else the learner's augmentation stream."""
        return augment(frames, self.random_shift, self.intensity_noise, game if self.shift_per == "game" else None,
                       generator=self.generator if generator is None else generator,
                       levels=self.online.torsos[0].levels)  # what the torso divides uint8 input by itself

    def td_targets(self, rewards, terminated, steps, next_obs, game,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """sum_k gamma^k r_k + [not terminated] gamma^m Q_target(s_m, argmax_a Q_online(s_m, a));
        the successors' augmentation draws from `generator` if given (see `augment`)."""
        with torch.no_grad(), autocast(self.device, self.precision):
            next_obs = self.augment(next_obs, game, generator)  # once, for both networks
            online_q = self.online(next_obs, game).float()
            if self.target_is_online:  # Double DQN with equal networks is max_a Q(s_m, a)
                next_q = online_q.max(1).values
            else:
                next_action = online_q.argmax(1, keepdim=True)
                next_q = self.target(next_obs, game).float().gather(1, next_action).squeeze(1)
        return n_step_targets(rewards, terminated, steps, next_q, self.gamma, self.reward_clip)

    def per_game_losses(self, obs, action, target, game, chunks=None):
        """Mean Huber TD loss per game [G] (0 where absent), sample counts [G], and Q(s, a) [B].

        Under PopArt the loss compares normalized values with normalized targets. Each game's loss is
        computed from a forward pass over its own samples (`chunks`, from the game ids if not given),
        so a gradient of one entry passes through that game's samples only.
        """
        if chunks is None:
            chunks = game_chunks(game.cpu().numpy())
        losses, q = self._chunk_losses(obs, action, target, game, chunks)
        zero = target.new_zeros(())
        per_game = torch.stack([losses.get(g, zero) for g in range(self.online.num_games)])
        count = torch.zeros(self.online.num_games, device=target.device).index_add_(0, game, torch.ones_like(target))
        return per_game, count, q

    def _chunk_losses(self, obs, action, target, game, chunks) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Each present game's mean Huber TD loss, from a forward pass over its own rows; Q(s, a) [B]."""
        net = self.online
        losses, q = {}, torch.empty_like(target)
        for g, rows in chunks:
            if not isinstance(rows, slice):
                rows = torch.as_tensor(rows, device=target.device)
            with autocast(self.device, self.precision):
                out = net.normalized(obs[rows], game[rows])
            out = out.float().gather(1, action[rows][:, None]).squeeze(1)
            if net.popart:
                mu, sigma = net.popart_mu[g], net.popart_sigma[g]
                losses[g] = F.smooth_l1_loss(out, (target[rows] - mu) / sigma)
                q[rows] = out.detach() * sigma + mu
            else:
                losses[g] = F.smooth_l1_loss(out, target[rows])
                q[rows] = out.detach()
        return losses, q

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step. Returns per-game mean TD loss [G] (nan where absent) and mean Q."""
        obs, action, rewards, terminated, steps, next_obs, game = self._tensors(batch)
        obs = self.augment(obs, game)
        target = self.td_targets(rewards, terminated, steps, next_obs, game)
        undo = self._popart_step(target, game) if self.online.popart else None
        chunks = game_chunks(batch.game)
        losses, q = self._chunk_losses(obs, action, target, game, chunks)
        count = torch.zeros(self.online.num_games, device=self.device).index_add_(0, game, torch.ones_like(target))
        present = count > 0
        per_game = torch.zeros_like(count)
        per_game[present] = torch.stack([losses[g] for g, _ in chunks]).detach()
        loss = (self.weights[present] * per_game[present]).sum()
        if not torch.isfinite(loss):  # before any state changes, so the batch can be skipped cleanly
            if undo:
                undo()
            bad = (present & ~torch.isfinite(per_game)).nonzero().flatten().tolist()
            raise NonFiniteError(self.updates + 1, bad, "TD loss (targets or Q-values)")
        penalty = self.online.soft_penalty() if self.soft_coupling else None
        extra = self.soft_coupling * penalty if penalty is not None else None
        if self.online.gated:
            sparsity, sharing = self.online.gate_penalties()
            extra = self.gate_costs[0] * sparsity + self.gate_costs[1] * sharing
        self.optimizer.zero_grad(set_to_none=True)
        norms = self._backward(losses, extra)
        per_game_norm = torch.full_like(count, float("nan"))
        per_game_norm[present] = torch.stack([norms[g] for g, _ in chunks])
        if not torch.isfinite(per_game_norm[present]).all():
            self.optimizer.zero_grad(set_to_none=True)
            if undo:
                undo()
            bad = (present & ~torch.isfinite(per_game_norm)).nonzero().flatten().tolist()
            raise NonFiniteError(self.updates + 1, bad or present.nonzero().flatten().tolist(), "gradient")
        self.optimizer.step()
        self.updates += 1
        self._update_target()
        if self.reset_interval and self.updates % self.reset_interval == 0:
            self.reset_heads()
        per_game = per_game.detach().masked_fill(~present, float("nan"))
        per_game_q = torch.zeros_like(count).index_add_(0, game, q) / count.clamp(min=1)
        metrics = {"loss": loss.detach(), "per_game_loss": per_game, "q": q.mean(),
                   "grad_norm": per_game_norm[present].mean(), "per_game_grad_norm": per_game_norm,
                   "per_game_q": per_game_q.masked_fill(~present, float("nan"))}
        if penalty is not None:
            metrics["soft_penalty"] = penalty.detach()
        if self.online.gated:
            metrics["gate_sparsity"], metrics["gate_sharing"] = sparsity.detach(), sharing.detach()
        return metrics

    def _update_target(self) -> None:
        """Hard sync every target_update_period updates, or with target_tau > 0 Polyak averaging
        theta' <- (1 - tau) theta' + tau theta of the parameters after every update (buffers need no
        averaging: PopArt's statistics move in both networks at once, the others are constants)."""
        if self.target_is_online:
            return
        if not self.target_tau:
            if self.updates % self.target_update_period == 0:
                self.target.load_state_dict(self.online.state_dict())
            return
        with torch.no_grad():
            for target, online in zip(self.target.parameters(), self.online.parameters()):
                target.lerp_(online, self.target_tau)

    def freeze_gates(self) -> None:
        """Learned sharing's gates fixed at their hard 0/1 values; their Adam group's rate drops to 0 so that
        no momentum moves a logit across 0 afterwards (a frozen gate gets no gradient, but Adam's momentum
        would still step it). A separate target takes the online gates, so both compute the same channels and Polyak averaging (the lerp of
        equal values) never moves them again."""
        if not self.target_is_online:
            with torch.no_grad():
                for target, online in zip(self.target.gate_logits, self.online.gate_logits):
                    target.copy_(online)
        for network in self._networks():
            network.freeze_gates()
        for group in self.optimizer.param_groups[1:]:
            group["lr"] = 0.0

    def reset_heads(self) -> None:
        """Fresh weights and Adam moments for the online Q-heads (and value streams); the torso and the
        target network are kept, so targets stay those of the learned values until the next sync (a target
        that is the online network, at target_update_period 1, is reset with it)."""
        layers = [self.online.heads] + ([self.online.values] if self.online.dueling else [])
        self.online.init_heads()
        for layer in layers:
            for p in (layer.weight, layer.bias):
                self.optimizer.state.pop(p, None)

    def _backward(self, losses: dict[int, torch.Tensor], extra: torch.Tensor | None) -> dict[int, torch.Tensor]:
        """Set .grad: every game's gradient from its own backward pass, combined as `combine` says, plus
        the structure costs' gradient; returns each game's gradient norm before clipping."""
        grads = {g: [x if x is None else x[None] for x in torch.autograd.grad(loss, self._params, allow_unused=True)]
                 for g, loss in losses.items()}  # combine's seed axis: one seed
        torso_of = self.online.torso_of
        readers = np.bincount([torso_of[g] for g in losses], minlength=len(self._torso_params))
        shared = set().union(*(params for params, n in zip(self._torso_params, readers) if n > 1))
        weights = {g: float(self.weights[g]) for g in losses} if self.balance == "weighted" else None
        combined, norms = combine(grads, shared, self.max_grad_norm, project=self.balance == "pcgrad",
                                  weights=weights)
        combined, norms = [x if x is None else x[0] for x in combined], {g: n[0] for g, n in norms.items()}
        if extra is not None and extra.requires_grad:
            costs = torch.autograd.grad(extra, self._params, allow_unused=True)
            if not all(torch.isfinite(x).all() for x in costs if x is not None):
                norms = {g: n * float("nan") for g, n in norms.items()}  # refused below, as a gradient fault
            for i, x in enumerate(costs):
                if x is not None:
                    combined[i] = x if combined[i] is None else combined[i] + x
        for p, x in zip(self._params, combined):
            # fused Adam reads a gradient in its parameter's memory layout (channels-last convolutions):
            # a gradient laid out otherwise (a view of PCGrad's flat sum, a pruned layer's index backward)
            # would be read element for element in the wrong order
            p.grad = x if x is None or x.stride() == p.stride() else torch.empty_like(p).copy_(x)
        return norms

    def _popart_step(self, target: torch.Tensor, game: torch.Tensor):
        """Move the per-game target statistics and rescale both networks' heads to preserve outputs.

        Returns an undo function, so a batch refused for non-finite values leaves no trace.
        """
        net = self.online
        saved = [t.detach().clone() for t in self._popart_state()]
        if not torch.isfinite(target).all():
            return lambda: None
        mu, nu, sigma = popart_statistics(net.popart_mu, self.popart_nu, target, game, self.popart_beta)
        for network in self._networks():
            network.rescale_heads(mu, sigma)
        self.popart_nu = nu

        def undo():
            with torch.no_grad():
                for t, old in zip(self._popart_state(), saved):
                    t.copy_(old)
        return undo

    def _popart_state(self) -> list[torch.Tensor]:
        tensors = [self.popart_nu]
        for network in self._networks():
            tensors += [network.heads.weight, network.heads.bias, network.popart_mu, network.popart_sigma]
            if network.dueling:
                tensors += [network.values.weight, network.values.bias]
        return tensors

    def _networks(self) -> list[MultiHeadQNetwork]:
        """Online and target network, once each (one object when the target is the online network)."""
        return [self.online] if self.target_is_online else [self.online, self.target]

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates, "popart_nu": self.popart_nu}

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        # torch keeps the given moment tensors (no copy): a deep copy keeps `state` reusable
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.updates = int(state["updates"])
        if "popart_nu" in state:
            self.popart_nu = state["popart_nu"].to(self.device).clone()


def greedy_actions(network: MultiHeadQNetwork, obs: np.ndarray, game_ids: torch.Tensor, device) -> np.ndarray:
    """argmax_a Q(obs, a) for a numpy batch of stacked frames."""
    with torch.no_grad():
        q = network(torch.from_numpy(obs).to(device), game_ids)
    return q.argmax(1).cpu().numpy()


def explore(greedy: np.ndarray, num_actions: np.ndarray, epsilon, rng: np.random.Generator) -> np.ndarray:
    """Each greedy action replaced by a uniform one of its game's with probability epsilon (scalar or per sample)."""
    replace = rng.random(len(greedy)) < epsilon
    return np.where(replace, rng.integers(0, num_actions), greedy).astype(np.int64)


def epsilon_greedy(network, obs: np.ndarray, game_ids: torch.Tensor, num_actions: np.ndarray, epsilon,
                   rng: np.random.Generator, device) -> np.ndarray:
    """Greedy actions of `network`, explored as `explore` says."""
    return explore(greedy_actions(network, obs, game_ids, device), num_actions, epsilon, rng)
