"""Seeds as a batch axis: S seeds of one configuration learn in one process, through one set of kernels.

A MinAtar update is mostly per-kernel overhead (docs/minatar.md, "Where an update's time goes"), so S
separate processes pay it S times. Here the S learners' parameters are stacked [S, ...]
(`torch.func.stack_module_state`) and every kernel of an update runs once for all seeds: TD targets
and each game's loss and gradient through `vmap` over the seed axis, the games' gradients combined per
seed by `balance.combine`, and Adam on the stacked tensors.

Seed s learns what it learns alone (tests/test_seeds.py): its batches come from its own replay and
augmentation streams (the runner, training/seed_runner.py), an update is applied to it only when it
owes one (a MinAtar seed whose episode just reset owes none that step: reset steps count no frame, so
seeds drift apart by a few updates), Adam's bias correction counts its own steps, and its target
network syncs after its own updates. What differs is float rounding: a batched kernel sums in
another order. The DQNLearners given stay the seeds' own record: `unstack` writes the stacked
weights and Adam moments back into them before a checkpoint or an evaluation.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.optim.adam import adam

from mtdqn.agents.core.learner import DQNLearner, NonFiniteError, n_step_targets
from mtdqn.agents.core.replay import Batch
from mtdqn.agents.multitask.balance import combine, game_chunks


def unsupported(learner: DQNLearner) -> list[str]:
    """What a seed batch cannot run of this learner's configuration (an update must take the same branches
    for every seed): an empty list when it can."""
    net = learner.online
    return [name for name, bad in (
        ("--sharing other than hard", len(net.torsos) > 1 or net.gated), ("--balance popart", net.popart),
        ("--balance pcgrad", learner.balance == "pcgrad"), ("--precision bf16", learner.precision != "fp32"),
        ("--reset-interval", bool(learner.reset_interval))) if bad]


class SeedBatch:
    """The stacked learner of S seeds; `learners` are the seeds' own DQNLearners (built as each would be alone)."""

    def __init__(self, learners: list[DQNLearner]):
        problems = sorted(set(p for learner in learners for p in unsupported(learner)))
        if problems:
            raise ValueError(f"seeds cannot share a process with {', '.join(problems)}: train them one by one")
        self.learners = learners
        first = learners[0]
        self.device = first.device
        self.base = copy.deepcopy(first.online).to("meta")  # the architecture; weights come stacked
        self.names = [name for name, _ in first.online.named_parameters()]
        group = first.optimizer.param_groups[0]
        self.lr, (self.beta1, self.beta2), self.eps = group["lr"], group["betas"], group["eps"]
        self.torso = {i for i, name in enumerate(self.names) if name.startswith("torsos.")}  # games meet here
        self._q = vmap(self._q_values)
        self._grad = vmap(grad(self._loss, has_aux=True))
        self.stack()

    @property
    def size(self) -> int:
        return len(self.learners)

    # -- stacking ---------------------------------------------------------------------------------
    def stack(self) -> None:
        """The seeds' weights, targets and Adam moments, stacked (after building or loading checkpoints)."""
        learners = self.learners
        params, self.buffers = stack_module_state([l.online for l in learners])
        self.params = {k: v.detach().contiguous() for k, v in params.items()}
        self.target = None if learners[0].target_is_online else {
            k: torch.stack([l.target.get_parameter(k).detach() for l in learners]).contiguous() for k in self.names}
        moments = [self._moments(l) for l in learners]
        self.exp_avg = {k: torch.stack([m[k][0] for m in moments]).contiguous() for k in self.names}
        self.exp_avg_sq = {k: torch.stack([m[k][1] for m in moments]).contiguous() for k in self.names}
        # Adam's step count, one tensor per parameter and seed as torch keeps it (each is incremented in place)
        self.steps = {k: [torch.tensor(m["step"], dtype=torch.float32, device=self.device) for m in moments]
                      for k in self.names}  # on the parameters' device, where fused Adam keeps them
        self.updates = np.array([l.updates for l in learners], dtype=np.int64)

    @staticmethod
    def _moments(learner: DQNLearner) -> dict:
        out, step = {}, 0.0
        for name, p in learner.online.named_parameters():
            state = learner.optimizer.state.get(p, {})
            out[name] = (state["exp_avg"].contiguous(), state["exp_avg_sq"].contiguous()) if state else (
                torch.zeros_like(p).contiguous(), torch.zeros_like(p).contiguous())
            step = float(state["step"]) if state else step
        return out | {"step": step}

    @torch.no_grad()
    def unstack(self) -> None:
        """Each seed's slice written back into its DQNLearner (weights, target, Adam state, update count),
        so that its checkpoint, evaluation and acting alone are exactly the batch's."""
        for s, learner in enumerate(self.learners):
            for name, p in learner.online.named_parameters():
                p.copy_(self.params[name][s])
                if self.target is not None:
                    learner.target.get_parameter(name).copy_(self.target[name][s])
                if self.steps[name][s] > 0:  # in the parameter's memory layout, as fused Adam reads moments
                    state = learner.optimizer.state[p]
                    state["step"] = self.steps[name][s].clone()
                    state["exp_avg"] = torch.empty_like(p).copy_(self.exp_avg[name][s])
                    state["exp_avg_sq"] = torch.empty_like(p).copy_(self.exp_avg_sq[name][s])
            learner.updates = int(self.updates[s])

    # -- acting -----------------------------------------------------------------------------------
    def _q_values(self, params, buffers, obs, game):
        return functional_call(self.base, (params, buffers), (obs, game))

    @torch.no_grad()
    def greedy(self, obs: np.ndarray, game: np.ndarray) -> np.ndarray:
        """argmax_a Q_s(obs_s, a) for every seed's observations [S, N, ...] -> [S, N]."""
        obs_t = channels_last(torch.from_numpy(obs).to(self.device))
        game_t = torch.from_numpy(np.broadcast_to(game, obs.shape[:2]).copy()).to(self.device)
        return self._q(self.params, self.buffers, obs_t, game_t).argmax(-1).cpu().numpy()

    # -- learning ---------------------------------------------------------------------------------
    def _loss(self, params, buffers, obs, action, target, game):
        q = self._q_values(params, buffers, obs, game).gather(1, action[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q, target)
        return loss, (loss.detach(), q.detach())

    def update(self, batches: list[Batch | None]) -> list[dict | None]:
        """One gradient step of every seed with a batch; None: that seed owes no update now and is left as it
        is (its slot computes on another seed's batch, and nothing of it is kept). Returns per seed what
        DQNLearner.update returns, or None. A non-finite loss or gradient of a stepping seed raises
        NonFiniteError with `seed` set, before any seed changes."""
        stepping = np.array([b is not None for b in batches])
        fill = next(b for b in batches if b is not None)
        batches = [b if b is not None else fill for b in batches]
        chunks = game_chunks(fill.game)
        if any(not np.array_equal(b.game, fill.game) for b in batches):
            raise ValueError("the seeds' batches hold their games in different rows: a seed batch needs every "
                             "seed's replay ready for the same games")
        dev = self.device

        def stacked(name):
            return torch.stack([torch.from_numpy(getattr(b, name)).to(dev) for b in batches])

        game = stacked("game")
        # each stepping seed augments from its own stream, states before successors, as DQNLearner.update does;
        # a resting seed draws nothing (its slot takes the first stepping seed's frames)
        first = int(np.flatnonzero(stepping)[0])
        augmented = {s: (self.learners[s].augment(torch.from_numpy(batches[s].obs).to(dev), game[s]),
                         self.learners[s].augment(torch.from_numpy(batches[s].next_obs).to(dev), game[s]))
                     for s in np.flatnonzero(stepping).tolist()}
        obs = channels_last([augmented.get(s, augmented[first])[0] for s in range(self.size)])
        next_obs = channels_last([augmented.get(s, augmented[first])[1] for s in range(self.size)])
        target = self._targets(stacked("rewards"), stacked("terminated"), stacked("steps"), next_obs, game)
        action = stacked("action")
        learner = self.learners[0]
        grads, losses, q = {}, {}, torch.empty_like(target)
        for g, rows in chunks:  # each game's gradient from its own pass, as DQNLearner's
            rows = rows if isinstance(rows, slice) else torch.as_tensor(rows, device=dev)
            gradient, (losses[g], q[:, rows]) = self._grad(self.params, self.buffers, obs[:, rows], action[:, rows],
                                                           target[:, rows], game[:, rows])
            grads[g] = [gradient[name] for name in self.names]
        weights = {g: float(learner.weights[g]) for g in grads} if learner.balance == "weighted" else None
        shared = self.torso if len(grads) > 1 else set()
        combined, norms = combine(grads, shared, learner.max_grad_norm, weights=weights)
        self._check_finite(stepping, losses, norms)
        self._adam(dict(zip(self.names, combined)), stepping)
        self.updates += stepping
        for s in np.flatnonzero(stepping):
            self.learners[s].updates = int(self.updates[s])  # read by logs between two unstacks
        self._sync_targets(stepping)
        return [self._metrics(s, losses, norms, q, game) if stepping[s] else None for s in range(self.size)]

    @torch.no_grad()
    def _targets(self, rewards, terminated, steps, next_obs, game) -> torch.Tensor:
        """Double DQN n-step targets [S, B], as DQNLearner.td_targets computes them per seed."""
        learner = self.learners[0]
        online_q = self._q(self.params, self.buffers, next_obs, game)
        if self.target is None:
            next_q = online_q.max(-1).values
        else:
            next_q = self._q(self.target, self.buffers, next_obs, game).gather(
                -1, online_q.argmax(-1, keepdim=True)).squeeze(-1)
        return n_step_targets(rewards, terminated, steps, next_q, learner.gamma, learner.reward_clip)

    def _check_finite(self, stepping, losses, norms) -> None:
        for s in np.flatnonzero(stepping):
            for what, values in (("TD loss (targets or Q-values)", losses), ("gradient", norms)):
                bad = [g for g, v in values.items() if not torch.isfinite(v[s])]
                if bad:
                    error = NonFiniteError(int(self.updates[s]) + 1, bad, what)
                    error.seed = int(s)
                    raise error

    @torch.no_grad()
    def _adam(self, grads: dict[str, torch.Tensor], stepping: np.ndarray) -> None:
        """torch's fused Adam, the kernel DQNLearner's optimizer runs, on each stepping seed's slices of the
        stacked tensors (views: updated in place), each slice with its own step count."""
        seeds = np.flatnonzero(stepping).tolist()
        params, moments1, moments2, counts, gradients = [], [], [], [], []
        for name, g in grads.items():
            for s in seeds:
                params.append(self.params[name][s])
                moments1.append(self.exp_avg[name][s])
                moments2.append(self.exp_avg_sq[name][s])
                counts.append(self.steps[name][s])
                gradients.append(g[s].contiguous())
        adam(params, gradients, moments1, moments2, [], counts, fused=self.device.type in ("cpu", "cuda"),
             amsgrad=False, beta1=self.beta1, beta2=self.beta2, lr=self.lr, weight_decay=0.0, eps=self.eps,
             maximize=False)

    @torch.no_grad()
    def _sync_targets(self, stepping: np.ndarray) -> None:
        """Each stepping seed's target after its own update count: a hard copy every period, or Polyak."""
        if self.target is None:
            return
        learner = self.learners[0]
        if learner.target_tau:
            sync = stepping
        else:
            sync = stepping & (self.updates % learner.target_update_period == 0)
        if not sync.any():
            return
        for s in np.flatnonzero(sync):
            for name in self.names:
                if learner.target_tau:
                    self.target[name][s].lerp_(self.params[name][s], learner.target_tau)
                else:
                    self.target[name][s].copy_(self.params[name][s])

    def _metrics(self, s: int, losses, norms, q, game) -> dict:
        """Seed s's metrics, as DQNLearner.update reports them."""
        G = self.learners[0].online.num_games
        per_game = torch.full((G,), float("nan"), device=self.device)
        per_norm = per_game.clone()
        for g in losses:
            per_game[g], per_norm[g] = losses[g][s], norms[g][s]
        present = ~torch.isnan(per_game)
        count = torch.zeros(G, device=self.device).index_add_(0, game[s], torch.ones_like(q[s]))
        per_game_q = torch.zeros(G, device=self.device).index_add_(0, game[s], q[s]) / count.clamp(min=1)
        weights = self.learners[0].weights
        return {"loss": (weights[present] * per_game[present]).sum(), "per_game_loss": per_game, "q": q[s].mean(),
                "grad_norm": per_norm[present].mean(), "per_game_grad_norm": per_norm,
                "per_game_q": per_game_q.masked_fill(~present, float("nan"))}


def channels_last(frames: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Seeds' image batches stacked [S, B, C, H, W], laid out in memory as [B, H, W, S, C]: vmap runs a
    convolution over seeds as one grouped convolution of input [B, S * C, H, W], and this layout makes that
    input channels-last, the layout the convolutions run fastest in on CPU (about 2x here)."""
    x = torch.stack(frames) if isinstance(frames, list) else frames
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)
