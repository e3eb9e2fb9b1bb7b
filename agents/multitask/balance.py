"""How the games' losses become one update: the pieces that are more than a weighted sum.

`equal` and `weighted` are a (weighted) sum of per-game losses (in the learner). PCGrad projects
per-game gradients on the shared torso off each other where they conflict (Yu et al. 2020).
PopArt keeps per-game running statistics of the TD targets and learns normalized values, so games
with large rewards do not drown the others and rewards need not be clipped (Hessel et al. 2019).
"""

from __future__ import annotations

import torch

BALANCES = ("equal", "weighted", "popart", "pcgrad")


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sum of the games' gradients after PCGrad's projections (the paper's). grads: [games, params].

    Each game's gradient g_i is, for every other game j in a random order, projected onto the
    normal plane of g_j when they conflict (g_i . g_j < 0): g_i -= (g_i . g_j / |g_j|^2) g_j.
    Projections use the other games' original gradients, as in the paper. The sum is the step
    `equal` balancing (a sum of the games' losses) would take when nothing conflicts.
    """
    projected = grads.clone()
    norms = (grads * grads).sum(1)
    for i in range(len(grads)):
        order = torch.randperm(len(grads), generator=generator)
        for j in order.tolist():
            if j == i or norms[j] == 0:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / norms[j] * grads[j]
    return projected.sum(0)


def popart_statistics(mu: torch.Tensor, nu: torch.Tensor, targets: torch.Tensor, game: torch.Tensor,
                      beta: float, sigma_bounds: tuple[float, float] = (1e-4, 1e6)):
    """Per-game exponential moving first and second moments of the TD targets in a batch.

    Games absent from the batch keep their statistics. Returns (mu, nu, sigma).
    """
    count = torch.zeros_like(mu).index_add_(0, game, torch.ones_like(targets))
    present = count > 0
    mean = torch.zeros_like(mu).index_add_(0, game, targets) / count.clamp(min=1)
    mean_sq = torch.zeros_like(mu).index_add_(0, game, targets * targets) / count.clamp(min=1)
    mu = torch.where(present, (1 - beta) * mu + beta * mean, mu)
    nu = torch.where(present, (1 - beta) * nu + beta * mean_sq, nu)
    sigma = (nu - mu * mu).clamp(min=sigma_bounds[0] ** 2).sqrt().clamp(max=sigma_bounds[1])
    return mu, nu, sigma
