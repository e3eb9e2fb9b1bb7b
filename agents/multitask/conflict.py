"""Where games help or hurt each other: gradient conflict and inter-task affinity on the shared torso.

Both are measured on one task-balanced batch with the TD targets held fixed:
- cosine[i, j]: cosine similarity of games i's and j's loss gradients on the torso parameters
  (negative: a step that helps one game hurts the other; Yu et al. 2020).
- affinity[i, j]: TAG's lookahead affinity of i onto j (Fifty et al. 2021),
  1 - L_j(theta + step_i) / L_j(theta): the relative drop of game j's loss after a step on game
  i's loss alone. Positive: training i helps j. step="adam" (the default) takes the step the
  learner's Adam would take on grad L_i at the run's learning rate, -lr g / (sqrt(v_hat) + eps) with
  v_hat its second moments updated by g, but without the momentum of earlier updates (common to
  every game, it would read as transfer); step="sgd" is TAG's plain -lr g, which is scale-dependent
  and overshoots where gradients are large.
Games that share no torso (separate networks) have cosine 0 and affinity 0 by construction.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CSV_COLUMNS = ["frames_per_game", "update", "metric", "source", "target", "value"]


@dataclass
class Transfer:
    cosine: np.ndarray  # [G, G], nan where a game was absent
    affinity: np.ndarray  # [G, G], row i acts on column j


STEPS = ("adam", "sgd")


def lookahead(learner, params, grad: torch.Tensor, sgd_lr: float, step: str) -> list[torch.Tensor]:
    """The change of each parameter in `params` that a lookahead step on the flat gradient `grad` makes."""
    if step not in STEPS:
        raise ValueError(f"unknown lookahead step {step!r}: choose one of {', '.join(STEPS)}")
    grads = torch.split(grad, [p.numel() for p in params])
    if step == "sgd":
        return [-sgd_lr * g.view(p.shape) for p, g in zip(params, grads)]
    group = learner.optimizer.param_groups[0]
    beta2, out = group["betas"][1], []
    for p, g in zip(params, grads):
        g = g.view(p.shape)
        state = learner.optimizer.state.get(p, {})
        t = int(state["step"]) if "step" in state else 0
        v = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g if t else (1 - beta2) * g * g
        v_hat = v / (1 - beta2 ** (t + 1))
        out.append(-group["lr"] * g / (v_hat.sqrt() + group["eps"]))
    return out


def measure(learner, batch, lookahead_lr: float, step: str = "adam",
            generator: torch.Generator | None = None) -> Transfer:
    """Cosine and affinity on one batch. Evaluation mode, so learned sharing's gates are the hard ones
    throughout: every loss compared is of the same structure, not of a fresh gate sample.

    A measurement leaves training as it found it: the targets' augmentation draws from `generator` (the
    run's measurement stream, core/streams.py; if None, one seeded from torch's global RNG), torch's global
    RNG is saved and restored around it, and the weights it steps are put back bit for bit, so a run
    measured and one not train the same agent."""
    training = learner.online.training
    learner.online.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            if generator is None:  # never the learner's augmentation stream
                generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
            return _measure(learner, batch, lookahead_lr, step, generator)
    finally:
        learner.online.train(training)


def _measure(learner, batch, lookahead_lr: float, step: str, generator: torch.Generator | None) -> Transfer:
    obs, action, rewards, terminated, steps, next_obs, game = learner._tensors(batch)
    target = learner.td_targets(rewards, terminated, steps, next_obs, game, generator)
    per_game, count, _ = learner.per_game_losses(obs, action, target, game)
    present = (count > 0).nonzero().flatten().tolist()
    shared = learner.online.shared_parameters()
    grads = []
    for k, g in enumerate(present):
        gr = torch.autograd.grad(per_game[g], shared, retain_graph=k < len(present) - 1, allow_unused=True)
        grads.append(torch.cat([(torch.zeros_like(p) if x is None else x).flatten() for p, x in zip(shared, gr)]))
    grads = torch.stack(grads)
    num_games = learner.online.num_games
    cosine = np.full((num_games, num_games), np.nan)
    affinity = np.full((num_games, num_games), np.nan)
    norms = grads.norm(dim=1).clamp(min=1e-12)
    idx = np.array(present)
    cosine[np.ix_(idx, idx)] = ((grads @ grads.T) / (norms[:, None] * norms[None, :])).clamp(-1, 1).cpu().double().numpy()
    base = per_game.detach()[present]
    with torch.no_grad():
        saved = [p.detach().clone() for p in shared]
        for k, i in enumerate(present):
            for p, delta in zip(shared, lookahead(learner, shared, grads[k], lookahead_lr, step)):
                p.add_(delta)
            after = learner.per_game_losses(obs, action, target, game)[0][present]
            affinity[i, idx] = (1 - after / base.clamp(min=1e-12)).cpu().double().numpy()
            for p, old in zip(shared, saved):
                p.copy_(old)
    return Transfer(cosine, affinity)


def summary_metrics(transfer: Transfer, games: list[str], pairs: bool) -> dict[str, float]:
    """Scalars for the run log: off-diagonal means, share of conflicting pairs, and (if `pairs`) each pair."""
    off = ~np.eye(len(games), dtype=bool)
    cos, aff = transfer.cosine[off], transfer.affinity[off]
    out = {"conflict/cosine_mean": float(np.nanmean(cos)), "conflict/affinity_mean": float(np.nanmean(aff)),
           "conflict/conflicting_pairs": float(np.nanmean(cos < 0))}
    if pairs:
        for i, a in enumerate(games):
            for j, b in enumerate(games):
                if i < j:
                    out[f"conflict/cosine/{a}~{b}"] = float(transfer.cosine[i, j])
                if i != j:
                    out[f"conflict/affinity/{a}->{b}"] = float(transfer.affinity[i, j])
    return out


def append_csv(path: Path, transfer: Transfer, games: list[str], frames_per_game: int, update: int) -> None:
    """One row per (metric, source, target): a long-format time series any tool can pivot."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_COLUMNS)
        for metric, matrix in (("cosine", transfer.cosine), ("affinity", transfer.affinity)):
            for i, a in enumerate(games):
                for j, b in enumerate(games):
                    if not np.isnan(matrix[i, j]):
                        writer.writerow([frames_per_game, update, metric, a, b, f"{matrix[i, j]:.6g}"])


def read_csv(path: Path, since_frames: int = 0) -> tuple[list[str], dict[str, np.ndarray], int]:
    """Average each metric's matrix over the measurements at or after `since_frames`.

    Returns (games in first-seen order, {metric: [G, G] mean matrix}, number of measurements).
    """
    rows = [r for r in csv.DictReader(path.open()) if int(r["frames_per_game"]) >= since_frames]
    games = list(dict.fromkeys(r["source"] for r in rows))
    index = {g: i for i, g in enumerate(games)}
    sums = {m: np.zeros((len(games), len(games))) for m in ("cosine", "affinity")}
    counts = {m: np.zeros((len(games), len(games))) for m in ("cosine", "affinity")}
    for r in rows:
        i, j = index[r["source"]], index[r["target"]]
        sums[r["metric"]][i, j] += float(r["value"])
        counts[r["metric"]][i, j] += 1
    means = {m: np.where(counts[m] > 0, sums[m] / np.maximum(counts[m], 1), np.nan) for m in sums}
    return games, means, len({r["update"] for r in rows})


def truncate_csv(path: Path, frames_per_game: int) -> None:
    """Drop rows logged after a checkpoint a run resumes from."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [l for l in lines[1:] if l.split(",")[0].isdigit() and int(l.split(",")[0]) <= frames_per_game]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def write_matrix(path: Path, matrix: np.ndarray, games: list[str]) -> None:
    """A square CSV with the games as header row and first column: `mtdqn group --affinity` reads it."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source\\target", *games])
        for g, row in zip(games, matrix):
            writer.writerow([g, *(f"{x:.6g}" for x in row)])


def heatmap(matrix: np.ndarray, games: list[str], title: str):
    """A labelled matplotlib heatmap (diverging colours centred on 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.5 * len(games) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    bound = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    im = ax.imshow(matrix, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(games)), games, rotation=60, ha="right")
    ax.set_yticks(range(len(games)), games)
    ax.set_xlabel("target game")
    ax.set_ylabel("source game")
    if len(games) <= 12:
        for i in range(len(games)):
            for j in range(len(games)):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2g}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig
