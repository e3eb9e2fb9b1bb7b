"""What learned sharing learned: the channels each game keeps per layer, and how much games overlap.

The hard gates (logit > 0, and each game's top channel per layer) are the structure: evaluation and acting use exactly these. Overlap is
Jaccard |A & B| / |A | B| between two games' kept channels, per layer and over all layers' channels
pooled ("all"). Games whose overall overlap is at least a threshold are linked, and the connected
groups become a `--groups` file, so a learned structure can be retrained as a fixed one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mtdqn.agents.core.torso import LAYERS, MinAtarTorso
from mtdqn.agents.multitask.gates import hard_gate


def hard_gates(network) -> dict[str, np.ndarray]:
    """{layer: [G, channels] bool} of a gated network."""
    names = network.torsos[0].layer_names
    return {name: g.detach().cpu().numpy() > 0 for name, g in zip(names, network.hard_gates())}


def gates_of_state(state: dict) -> dict[str, np.ndarray]:
    """The same from a checkpoint's online state dict (no network needed)."""
    online = state["learner"]["online"]
    if "gate_logits.0" not in online:
        raise ValueError("the checkpoint's network has no gates: train with --sharing learned")
    names = LAYERS if "gate_logits.2" in online else MinAtarTorso.layer_names  # Nature's 4 gated layers or MinAtar's 2
    return {name: hard_gate(online[f"gate_logits.{k}"]).cpu().numpy() > 0 for k, name in enumerate(names)}


def jaccard(gates: np.ndarray) -> np.ndarray:
    """[G, G] overlap of the channel sets of [G, channels] 0/1 gates; 1 where both sets are empty."""
    g = gates.astype(np.float64)
    inter = g @ g.T
    union = g.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def overlaps(gates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Jaccard per layer, and "all": over every layer's channels pooled."""
    out = {name: jaccard(g) for name, g in gates.items()}
    out["all"] = jaccard(np.concatenate(list(gates.values()), axis=1))
    return out


def density(gates: dict[str, np.ndarray]) -> np.ndarray:
    """[G] fraction of all gated channels each game keeps."""
    return np.concatenate(list(gates.values()), axis=1).mean(1)


def groups_above(overlap: np.ndarray, games: list[str], threshold: float) -> list[list[str]]:
    """Games linked when their overlap is >= threshold, grouped by connected component (in game order)."""
    label = list(range(len(games)))

    def root(i):
        while label[i] != i:
            i = label[i]
        return i

    for i in range(len(games)):
        for j in range(i + 1, len(games)):
            if overlap[i, j] >= threshold:
                label[root(j)] = root(i)
    groups: dict[int, list[str]] = {}
    for i, g in enumerate(games):
        groups.setdefault(root(i), []).append(g)
    return list(groups.values())


def channel_ranges(kept: np.ndarray) -> str:
    """'0-5,9,12-13' for the indices where kept is true ('-' for none)."""
    idx = np.flatnonzero(kept)
    if not len(idx):
        return "-"
    parts, start = [], idx[0]
    for a, b in zip(idx, list(idx[1:]) + [None]):
        if b is None or b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(parts)


def metrics(gates: dict[str, np.ndarray], games: list[str]) -> dict[str, float]:
    """Scalars for the run log: each game's gate density (overall and per layer) and the mean overlap."""
    out = {}
    for g, name in enumerate(games):
        out[f"train/{name}/gate_density"] = float(density(gates)[g])
        for layer, kept in gates.items():
            out[f"train/{name}/gate_density_{layer}"] = float(kept[g].mean())
    if len(games) > 1:
        overall = overlaps(gates)["all"]
        out["train/gate_overlap_mean"] = float(overall[~np.eye(len(games), dtype=bool)].mean())
    return out


def write_csvs(folder: Path, gates: dict[str, np.ndarray], games: list[str]) -> dict[str, Path]:
    """gates.csv (game, layer, channel, kept) and overlap.csv (layer, source, target, jaccard), long format."""
    paths = {"gates": folder / "gates.csv", "overlap": folder / "overlap.csv"}
    with paths["gates"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["game", "layer", "channel", "kept"])
        for layer, kept in gates.items():
            for g, name in enumerate(games):
                w.writerows([name, layer, c, int(k)] for c, k in enumerate(kept[g]))
    with paths["overlap"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "source", "target", "jaccard"])
        for layer, matrix in overlaps(gates).items():
            for i, a in enumerate(games):
                w.writerows([layer, a, b, f"{matrix[i, j]:.6g}"] for j, b in enumerate(games))
    return paths


def heatmap(overlap: np.ndarray, games: list[str], title: str):
    """The overlap matrix as a labelled heatmap, 0 (nothing shared) to 1 (the same channels), every cell's
    text in the colour its cell needs (`mtdqn sharing` draws the same figure)."""
    from mtdqn.agents.multitask.conflict import heatmap as labelled

    return labelled(overlap, games, title, cmap="viridis", limits=(0.0, 1.0), diagonal=True, fmt="{:.2f}", axes=None)
