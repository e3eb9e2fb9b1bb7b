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


DIAGONAL_GREY = (0.85, 0.85, 0.85, 1.0)  # a game with itself: off the colour scale, drawn grey and labelled


def off_diagonal_bound(matrix: np.ndarray) -> float:
    """Half-width of a symmetric colour scale centred on 0: the largest |value| off the diagonal.

    The diagonal is a game with itself (cosine exactly 1, a self-affinity often ten times any pair's):
    on the scale it would wash every pair out to near white, and the pairs are what the figure is for.
    1.0 when no off-diagonal value is finite and non-zero (nothing to scale to)."""
    off = np.abs(np.asarray(matrix, float)[~np.eye(len(matrix), dtype=bool)])
    off = off[np.isfinite(off)]
    return float(off.max()) if off.size and off.max() > 0 else 1.0


def relative_luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour (components 0 to 1; alpha ignored)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def text_color(rgb) -> str:
    """'black' or 'white', whichever contrasts more with a cell of colour `rgb`: black wins above luminance
    0.179, where (L + 0.05) / 0.05 = 1.05 / (L + 0.05). One fixed text colour is unreadable on part of any
    colour map (white on viridis's yellow, black on RdBu's dark ends)."""
    return "black" if relative_luminance(rgb) > 0.179 else "white"


def heatmap(matrix: np.ndarray, games: list[str], title: str, *, cmap: str = "RdBu",
            limits: tuple[float, float] | None = None, diagonal: bool = False, fmt: str = "{:.2g}",
            axes: tuple[str, str] | None = ("target game", "source game")):
    """A labelled matplotlib heatmap, every cell's value written in the text colour its cell needs.

    By default (cosine, affinity) the scale is diverging, centred on 0 and symmetric, from the off-diagonal
    cells only (`off_diagonal_bound`); the diagonal is drawn grey, its value labelled 'self'. `limits`
    fixes the scale instead and `diagonal=True` keeps the diagonal on it (gate overlap: 0 to 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(games)
    matrix = np.asarray(matrix, float)
    self_cell = np.eye(n, dtype=bool) & (not diagonal)
    vmin, vmax = limits or (-off_diagonal_bound(matrix), off_diagonal_bound(matrix))
    colours = plt.get_cmap(cmap).with_extremes(bad=DIAGONAL_GREY)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(np.ma.masked_where(self_cell | ~np.isfinite(matrix), matrix), cmap=colours, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(n), games, rotation=60, ha="right")
    ax.set_yticks(range(n), games)
    if axes:  # a directed matrix (affinity: row source -> column target); a symmetric one needs none
        ax.set_xlabel(axes[0])
        ax.set_ylabel(axes[1])
    if n <= 12:
        for i, j in zip(*np.nonzero(np.isfinite(matrix))):
            cell = DIAGONAL_GREY if self_cell[i, j] else colours(im.norm(matrix[i, j]))
            ax.text(j, i, fmt.format(matrix[i, j]) + ("\n(self)" if self_cell[i, j] else ""), ha="center",
                    va="center", fontsize=8, color=text_color(cell))
    ax.set_title(title)
    bar = fig.colorbar(im, ax=ax)
    if self_cell.any():
        bar.set_label("scale of the pairs; grey diagonal: a game with itself", fontsize=8)
    fig.tight_layout()
    return fig
