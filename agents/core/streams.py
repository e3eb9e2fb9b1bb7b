"""A run's random streams: one seed, a separate generator for each thing that draws.

`Streams.spawn(seed)` gives child k of `numpy.random.SeedSequence(seed).spawn(len(NAMES))` to stream
NAMES[k] (statistically independent streams, unlike `default_rng(seed)` twice). The order is fixed:
a new stream is appended at the end, so the others keep their draws.

- emulator: the ale-py seeds of every env, drawn when an actor (re)starts its emulators: at the
  start, on a resume, and in the Ray backend for each actor generation (its generation seed).
- exploration: epsilon-greedy's draws.
- replay: which transitions a training batch holds.
- augment: the training batches' random shift and intensity noise (a torch.Generator).
- network: the seed of torch's global RNG: the initial weights, and what the learner draws inside
  the network or without a generator of its own (learned sharing's gate noise, head resets,
  PCGrad's order). Checkpoints save the global state as "torch".
- measure_replay, measure_augment: the conflict/affinity measurement's batches and their
  augmentation, so that measuring (or not) never moves a training stream.

Evaluation draws from none of these: each evaluation seeds its emulators and epsilon-greedy from the
run seed alone (core/evaluation.py, offset by EVAL_SEED_OFFSET), afresh every time, so every
evaluation of a run, and `mtdqn evaluate --seed` of its checkpoints, plays from the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NAMES = ("emulator", "exploration", "replay", "augment", "network", "measure_replay", "measure_augment")
NUMPY = ("emulator", "exploration", "replay", "measure_replay")  # numpy Generators
TORCH = ("augment", "measure_augment")  # torch.Generators (CPU: augmentation draws on the CPU)
LEGACY = {"exploration": "actor"}  # where checkpoints before the streams kept a stream's state


def _torch_generator(child: np.random.SeedSequence) -> torch.Generator:
    return torch.Generator().manual_seed(int(child.generate_state(1, np.uint64)[0]))


@dataclass
class Streams:
    seed: int
    emulator: np.random.Generator
    exploration: np.random.Generator
    replay: np.random.Generator
    augment: torch.Generator
    network: int  # torch.manual_seed before the network is built
    measure_replay: np.random.Generator
    measure_augment: torch.Generator

    @classmethod
    def spawn(cls, seed: int) -> "Streams":
        children = dict(zip(NAMES, np.random.SeedSequence(seed).spawn(len(NAMES))))
        made = {n: np.random.default_rng(children[n]) for n in NUMPY}
        made |= {n: _torch_generator(children[n]) for n in TORCH}
        return cls(seed=seed, network=int(children["network"].generate_state(1, np.uint64)[0]), **made)

    def state_dict(self) -> dict:
        """Every generator's state (numpy bit_generator dicts, torch ByteTensors): plain data for checkpoints."""
        return {n: getattr(self, n).bit_generator.state for n in NUMPY} | {
            n: getattr(self, n).get_state() for n in TORCH}

    def load_state_dict(self, state: dict) -> list[str]:
        """Restore the generators `state` has (in place: whoever holds one keeps it); returns the names
        it lacks (a checkpoint written before that stream existed), which keep their draws from the seed."""
        missing = []
        for name in (n for n in NAMES if n in NUMPY or n in TORCH):
            saved = state.get(name, state.get(LEGACY.get(name, "")))
            if saved is None:
                missing.append(name)
            elif name in NUMPY:
                getattr(self, name).bit_generator.state = saved
            else:
                getattr(self, name).set_state(saved)
        return missing


def emulator_seeds(rng: np.random.Generator, games: int, envs_per_game: int) -> list[np.ndarray]:
    """One ale-py seed per env of every game (ale-py takes seeds below 2**31)."""
    return [rng.integers(0, 2**31, size=envs_per_game) for _ in range(games)]
