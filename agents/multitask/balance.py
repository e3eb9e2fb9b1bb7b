"""How the games' losses become one update: each game's gradient as a one-game agent's (`combine`),
and the balancers that are more than a weighted sum of the losses.

`equal` and `weighted` weigh the per-game losses (in the learner). PCGrad projects
per-game gradients on the shared torso off each other where they conflict (Yu et al. 2020).
PopArt keeps per-game running statistics of the TD targets and learns normalized values, so games
with large rewards do not drown the others and rewards need not be clipped (Hessel et al. 2019).
"""

from __future__ import annotations

import numpy as np
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


def game_chunks(game: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
    """Each present game's rows of a batch: a slice where they are contiguous (a task-balanced batch
    lays its games end to end), else their indices."""
    chunks = []
    for g in np.unique(game):
        rows = np.flatnonzero(game == g)
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        chunks.append((int(g), slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else rows))
    return chunks


def combine(grads: dict[int, list[torch.Tensor | None]], shared: set[int], max_norm: float = 0.0,
            project: bool = False, weights: dict[int, float] | None = None
            ) -> tuple[list[torch.Tensor | None], dict[int, torch.Tensor]]:
    """One update from per-game gradients, each game treated as a one-game agent would treat it.

    grads: per game, its gradient of every parameter (None where its loss does not reach it), each with a
    leading axis of seeds: [S, *parameter shape], S = 1 for one agent, S seeds of a seed batch
    (core/seeds.py) each combined on its own.
    shared: the parameters several of these games' gradients may meet on (a torso more than one reads).
    weights: per-game multipliers (`--balance weighted`), applied after each game's clipping.

    1. Clipping per game: each game's gradient is clipped by its own norm over every parameter it
       reaches (`max_norm`, 0: none), so one game's spike never shrinks another's step.
    2. Parameters of one game (its head columns, value row, gate row, a torso only it reads) take
       that game's gradient: a G-game update moves them as G one-game agents would.
    3. A shared parameter takes the sum of its games' gradients (PCGrad's projected sum with
       `project`, one seed only), rescaled output channel by output channel (row by row) to the mean
       norm of the games that reach that channel: the size of one game's gradient, whatever the number
       of games, and a channel only one game reaches (learned sharing's own channels) takes that game's
       gradient whole. Adam's step is linear in the gradient where its eps outweighs sqrt(v) (most
       weights of a young agent), so a plain sum of G gradients moved the torso up to G times as far
       as one game would; the mean moved it 1/sqrt(G) as far when the games' gradients are unrelated
       (docs/multitask.md, "Many games, one step size").

    No branch depends on a value, so seeds never wait on each other. Returns the combined gradient per
    parameter and each game's norm before clipping, [S].
    """
    games = list(grads)
    combined: list[torch.Tensor | None] = [None] * len(grads[games[0]])
    row_sum: dict[int, torch.Tensor] = {}  # shared parameter -> sum over games of their row norms [S, rows]
    row_readers: dict[int, torch.Tensor] = {}  # shared parameter -> games reaching each row [S, rows]
    flat, totals = [], {}
    for g in games:
        present = [i for i, x in enumerate(grads[g]) if x is not None]
        totals[g] = torch.linalg.vector_norm(torch.stack([per_seed_norms(grads[g][i]) for i in present]), dim=0)
        coef = (max_norm / (totals[g] + 1e-6)).clamp(max=1.0) if max_norm else None
        if weights is not None:
            coef = weights[g] if coef is None else coef * weights[g]
        scaled = list(grads[g])
        if coef is not None:
            for i in present:
                scaled[i] = scaled[i] * (coef.view(-1, *[1] * (scaled[i].dim() - 1)) if torch.is_tensor(coef)
                                         else coef)
        for i in present:
            if i in shared:
                rows = row_norms(scaled[i])
                row_sum[i] = rows if i not in row_sum else row_sum[i] + rows
                row_readers[i] = (rows > 0).to(rows.dtype) + row_readers.get(i, 0.0)
            combined[i] = scaled[i] if combined[i] is None else combined[i] + scaled[i]
        if project:
            flat.append(scaled)
    if project and shared:
        if next(x for x in combined if x is not None).shape[0] != 1:
            raise ValueError("PCGrad projects one agent's gradients: the seed axis must be 1")
        order = sorted(i for i in shared if combined[i] is not None)
        stacked = torch.stack([torch.cat([(torch.zeros_like(combined[i]) if s[i] is None else s[i]).flatten()
                                          for i in order]) for s in flat])
        parts = torch.split(pcgrad(stacked), [combined[i].numel() for i in order])
        for i, part in zip(order, parts):
            combined[i] = part.view(combined[i].shape)
    for i in row_sum:
        many = row_readers[i] > 1
        scale = torch.where(many, row_sum[i] / row_readers[i].clamp(min=1) / row_norms(combined[i]).clamp(min=1e-30),
                            1.0)
        combined[i] = combined[i] * scale.view(*scale.shape, *([1] * (combined[i].dim() - 2)))
    return combined, totals


def per_seed_norms(x: torch.Tensor) -> torch.Tensor:
    """The norm of each seed's slice of x [S, ...]: [S]."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """Per seed, the norm of each output channel's weights (of each element, for a bias): x [S, rows, ...]
    -> [S, rows]."""
    return x.abs() if x.dim() == 2 else torch.linalg.vector_norm(x, dim=tuple(range(2, x.dim())))
