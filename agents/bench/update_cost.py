"""What one gradient update costs, variant by variant, measured side by side (`mtdqn bench`).

On a CPU the update is the whole cost of a data-efficient run (one update per agent step), so
each way of making it cheaper is timed here against the others in alternating blocks, next to
the update's FLOP count (torch's FlopCounterMode: convolutions and matmuls, forward and backward).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mtdqn.agents.core.learner import DQNLearner
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.multitask.gates import GATE_INIT
from mtdqn.agents.core.replay import Batch


@dataclass(frozen=True)
class Variant:
    padding: str = "valid"  # valid: Nature torso (3,136 features); same: Dopamine's (7,744)
    separate_target: bool = True  # a target network with its own forward (False: period 1, target = online)
    games: int = 1  # batch_size (32) transitions of each game per update
    compile: bool = False  # torch.compile of the network's forward (and so its backward)
    gates: str = "none"  # learned sharing: "training" (sampled gates, penalties) or "half" (frozen, every
    # game keeping the same half of each layer's channels, so that half is pruned)


HARD, LEARNED, PRUNED = ("4 games, hard sharing (Nature torso, target network)",
                         "4 games, learned sharing, gates training",
                         "4 games, learned sharing, frozen, half of each layer pruned")
VARIANTS = {
    "Nature torso, target network": Variant(),
    "Nature torso, target = online": Variant(separate_target=False),
    "Dopamine torso, target network": Variant(padding="same"),
    "drq-eps (Dopamine torso, target = online)": Variant(padding="same", separate_target=False),
    "drq-eps, torch.compile": Variant(padding="same", separate_target=False, compile=True),
    "drq-eps, 4 games (4 x 32)": Variant(padding="same", separate_target=False, games=4),
    HARD: Variant(games=4),
    LEARNED: Variant(games=4, gates="training"),
    PRUNED: Variant(games=4, gates="half"),
}


def random_batch(games: int, per_game: int = 32, n_step: int = 10, seed: int = 0, family: str = "ale") -> Batch:
    """Random transitions of ALE's 84x84 frame stacks, or of MinAtar's 10-channel 0/1 grids."""
    rng = np.random.default_rng(seed)
    size = games * per_game
    shape, high = ((size, 10, 10, 10), 2) if family == "minatar" else ((size, 4, 84, 84), 256)
    return Batch(obs=rng.integers(0, high, shape, dtype=np.uint8), action=rng.integers(0, 18, size),
                 rewards=rng.random((size, n_step), dtype=np.float32), terminated=rng.random(size) < 0.05,
                 steps=np.full(size, n_step), next_obs=rng.integers(0, high, shape, dtype=np.uint8),
                 game=np.repeat(np.arange(games), per_game))


def torso_update_ms(num_games: int, batch_size: int, family: str = "ale", repeats: int = 5) -> float:
    """Median ms of one learner update of one torso serving num_games games (1 torch thread), what `mtdqn group
    --budget-ms` prices a group at: the Nature torso on stacks of 84x84 frames for ALE games; for MinAtar the
    paper's torso on 10-channel grids, with the per-game input layer a multi-game MinAtar agent has by default."""
    torch.set_num_threads(1)
    batch = random_batch(num_games, batch_size, n_step=3, family=family)
    network = MultiHeadQNetwork([18] * num_games, **({"torso": "minatar", "adapter": num_games > 1}
                                                     if family == "minatar" else {}))
    learner = DQNLearner(network)
    times = []
    for _ in range(repeats + 1):  # the first update warms up allocations
        start = time.perf_counter()
        learner.update(batch)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[1:]))


def build(v: Variant, precision: str = "fp32") -> DQNLearner:
    """The drq-eps learner (dueling, random shift 4, intensity 0.05, no clipping) in variant `v`."""
    network = MultiHeadQNetwork([18] * v.games, dueling=True, padding=v.padding,
                                init="xavier" if v.padding == "same" else "torch", gated=v.gates != "none")
    if v.gates == "half":  # before the learner copies its target network
        with torch.no_grad():
            for logits in network.gate_logits:
                logits[:, logits.shape[1] // 2:] = -GATE_INIT
    if v.compile:
        network.forward = torch.compile(network.forward)
    learner = DQNLearner(network, target_update_period=2000 if v.separate_target else 1, random_shift=4,
                         intensity_noise=0.05, max_grad_norm=0.0, precision=precision,
                         gate_sparsity=1e-3 if v.gates == "training" else 0.0,
                         gate_sharing=1e-3 if v.gates == "training" else 0.0)
    if v.gates == "half":
        learner.freeze_gates()
    return learner


def flops(learner: DQNLearner, batch: Batch) -> int:
    with FlopCounterMode(display=False) as counter:
        learner.update(batch)
    return counter.get_total_flops()


def update_costs(names: list[str], updates: int, blocks: int = 5, progress=lambda message: None) -> list[dict]:
    """ms per update of each variant (median over blocks, alternating) and GFLOPs per update."""
    learners = {name: build(VARIANTS[name]) for name in names}
    batches = {name: random_batch(VARIANTS[name].games) for name in names}
    rows = {name: {"variant": name, "games": VARIANTS[name].games} for name in names}
    for name in names:
        start = time.perf_counter()
        learners[name].update(batches[name])  # first call: allocations (and compilation)
        rows[name]["first_update_s"] = time.perf_counter() - start
        eager = learners[name] if not VARIANTS[name].compile else build(replace(VARIANTS[name], compile=False))
        rows[name]["gflops"] = flops(eager, batches[name]) / 1e9
        progress(f"update cost: {name} ready")
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(blocks):
        for name in names:
            start = time.perf_counter()
            for _ in range(updates):
                learners[name].update(batches[name])
            times[name].append(1000 * (time.perf_counter() - start) / updates)
    base = float(np.median(times[names[0]]))
    for name in names:
        ms = float(np.median(times[name]))
        rows[name] |= {"ms_per_update": ms, "vs_first": ms / base,
                       "ms_per_game_update": ms / VARIANTS[name].games}
    return [rows[name] for name in names]


def learned_vs_hard(rows: list[dict]) -> dict:
    """Learned sharing's update against hard sharing's at the same width, before the freeze (gates
    sampled, penalties on) and after it (half of each layer pruned); empty if a row was not measured."""
    by_name = {r["variant"]: r for r in rows}
    if HARD not in by_name:
        return {}
    hard = by_name[HARD]
    return {key: {"ms_ratio": by_name[name]["ms_per_update"] / hard["ms_per_update"],
                  "gflops_ratio": by_name[name]["gflops"] / hard["gflops"]}
            for key, name in (("training", LEARNED), ("pruned", PRUNED)) if name in by_name}
