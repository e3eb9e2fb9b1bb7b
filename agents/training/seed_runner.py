"""Several seeds of one configuration in one process: S Trainers in lockstep around one SeedBatch learner.

Each seed is the Trainer it would be alone: its run folder, its config (with its seed), streams, actor,
replay, tracker, logs, checkpoints and evaluations. What they share is the computation: every seed's
greedy actions come from one forward over all seeds, and the updates they owe from one batched update
(core/seeds.py). One iteration: each unfinished seed's actions, explored and sent by its own actor; the
updates each owes, batched (a seed owing fewer sits the rest out); each seed receives and stores its
step and records its logs, evaluations and checkpoints. A seed that reaches its budget finishes
(final checkpoint and evaluation) while the others go on; its slot in the batch idles.
"""

from __future__ import annotations

import numpy as np

from mtdqn.agents.core.learner import NonFiniteError
from mtdqn.agents.core.seeds import SeedBatch
from mtdqn.agents.training.loop import Loop, catch_signals
from mtdqn.agents.training.progress import FrameBar
from mtdqn.agents.training.runner import Trainer


class SeedBatchTrainer:
    """Trains `trainers` (one per seed, built as each would be alone) to their budgets; `run()` returns each
    one's Trainer.run() result, in order."""

    def __init__(self, trainers: list[Trainer]):
        self.trainers = trainers
        self.batch = SeedBatch([t.learner for t in trainers])
        for t in trainers:
            t.sync_learner = self.batch.unstack
        self.game_ids = trainers[0].actor.game_ids

    def run(self) -> list[dict]:
        trainers = self.trainers
        loops = [t.start_loop(signals=False, bar=False) for t in trainers]
        restore = catch_signals(lambda name: [t.stop(name) for t in trainers])
        frames = lambda: np.concatenate([t.frames for t in trainers])  # noqa: E731  the slowest seed's slowest game
        bar = FrameBar(frames(), trainers[0].cfg.frames_per_game, desc=f"frames per game ({len(trainers)} seeds)")
        results: list[dict | None] = [None] * len(trainers)
        try:
            while any(r is None for r in results):
                active = [i for i, t in enumerate(trainers) if results[i] is None and not t.done()]
                if active:
                    self.step(active, loops)
                    bar.advance_to(frames())
                for i, t in enumerate(trainers):
                    if results[i] is None and t.done():
                        loops[i].close()
                        results[i] = t.finish(loops[i])
        finally:
            restore()
            bar.close()
            for loop in loops:
                loop.close()
        return results

    def step(self, active: list[int], loops: list[Loop]) -> None:
        """One vector step of every active seed: act, learn what each owes while the emulators step, store, record."""
        trainers = self.trainers
        epsilon = {i: trainers[i].epsilon() for i in active}
        # every slot's observations: a finished seed's last ones stand in, and its actions are not sent
        greedy = self.batch.greedy(np.stack([t.actor.obs for t in trainers]), self.game_ids)
        for i in active:
            trainers[i].actor.send(greedy[i], epsilon[i])
        learning = {i: trainers[i].frames.min() >= trainers[i].learning_starts for i in active}
        updates = self.learn([i for i in active if learning[i]])
        for i in active:
            t = trainers[i]
            step = t.actor.recv()
            t.store(step)
            t.count(step.frames, learning[i])
            t.record(loops[i], step, updates.get(i, []), epsilon[i])

    def learn(self, learning: list[int]) -> dict[int, list[dict]]:
        """The updates each learning seed owes, batched: the k-th update of every seed owing at least k (seeds
        whose replays are ready for different games, which lockstep makes rare, update in separate batches)."""
        trainers = self.trainers
        plans = {i: trainers[i].owed() for i in learning}
        updates: dict[int, list[dict]] = {i: [] for i in learning}
        for k in range(max((owed for _, owed in plans.values()), default=0)):
            layouts: dict[tuple, list[int]] = {}
            for i, (ready, owed) in plans.items():
                if owed > k:
                    layouts.setdefault(tuple(ready), []).append(i)
            for ready, stepping in layouts.items():
                batches = [trainers[i].sample(list(ready)) if i in stepping else None for i in range(len(trainers))]
                try:
                    metrics = self.batch.update(batches)
                except NonFiniteError as e:  # --on-nonfinite skip is refused for seed batches: training stops
                    for j, t in enumerate(trainers):  # the other seeds keep their work
                        if j != e.seed and not t.done():
                            t.save()
                    trainers[e.seed].nonfinite(e)
                    raise
                for i in stepping:
                    updates[i].append(metrics[i])
                    trainers[i].update_credit -= 1
                    trainers[i].after_update(list(ready))
        return updates
