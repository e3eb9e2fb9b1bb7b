"""The Ray backend (Ape-X layout): CPU actors step the games in their own processes, this one learns.

Placement: with fewer actors than games, every actor steps `envs_per_game` envs of every game, so
the games stay balanced; otherwise actor i steps `envs_per_game` envs of game i mod games. Game
g's replay has one lane per env of every actor stepping it, in actor order, so frame stacks and
n-step windows never mix envs. One game's lanes advance in lockstep (core/replay.py): steps wait
here until every actor stepping the game has sent them.

Each actor has one request in flight: "step `chunk_steps` times with this epsilon (and these
weights)", answered by a chunk of steps. An actor that dies is restarted by Ray (`max_restarts`)
and loses only that chunk: its episodes are cut after its last received step as a time limit
would cut them (truncated, so they bootstrap from the frame that followed), and the restarted
actor starts new episodes from new seeds. Each actor generation's seed is drawn from the run's emulator
stream (core/streams.py, saved in checkpoints); the actor spawns its emulator seeds and exploration
stream from it, as a local run does from the run seed. Frames are counted when chunks arrive, so the
per-game counters are exactly what the replay received. Ray is imported lazily: it is an optional extra.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mtdqn.agents.core.actor import Actor
from mtdqn.agents.training.config import ConfigError, TrainConfig
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import GameReplay
from mtdqn.agents.training.build import auto_env_threads, network_spec
from mtdqn.agents.training.runner import Trainer
from mtdqn.envs import Protocol, num_actions
from mtdqn.envs.protocol import newest_frame

MAX_RESTARTS = 100  # per actor: Ray restarts a dead actor this often
RETRY_S = 0.5  # a failed request is sent again after this pause (the actor may be restarting)...
MAX_FAILURES = 120  # ...and after this many in a row (a minute), the actor is taken as gone: training stops
STEP_ARRAYS = GameReplay.ARRAYS  # what one replay slot holds, in `add`'s argument order


def placement(num_games: int, num_actors: int) -> list[list[int]]:
    """The games each actor steps (the rule in the module docstring)."""
    if num_actors < num_games:
        return [list(range(num_games)) for _ in range(num_actors)]
    return [[i % num_games] for i in range(num_actors)]


def connect(address: str | None, num_actors: int) -> None:
    """Join the Ray cluster at `address`, or start a local instance with one CPU per actor (at least
    the machine's count). ConfigError, one line, if the cluster cannot be reached or is too small."""
    import ray

    hint = "start one with `ray start --head` and pass the address it prints, or leave --ray-address out"
    if address and address != "auto":
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ConfigError(f"--ray-address {address!r}: no Ray head node reachable there "
                              f"({type(e).__name__}: {e}); {hint}") from None
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # "local": a new instance even if `ray start` runs on this machine
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, num_actors), include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not address:
            raise ConfigError(f"--backend ray could not start a local Ray instance ({why})") from None
        raise ConfigError(f"--ray-address {address!r}: could not join the Ray cluster ({why}); {hint} "
                          "(a cluster with token authentication also needs RAY_AUTH_MODE=token here)") from None
    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < num_actors:
        ray.shutdown()
        raise ConfigError(f"--num-actors {num_actors} needs {num_actors} CPUs (one per actor), "
                          f"but the Ray cluster at {address} has {cpus:g}")


class _Heads(torch.nn.Module):
    """The whole network seen from an actor's games: its game k is network head `heads[k]`."""

    def __init__(self, network: MultiHeadQNetwork, heads: list[int]):
        super().__init__()
        self.network = network
        self.register_buffer("heads", torch.tensor(heads))

    def forward(self, obs: torch.Tensor, game_ids: torch.Tensor) -> torch.Tensor:
        return self.network(obs, self.heads[game_ids])


class ActorWorker:
    """One Ray actor: the local `Actor` over its games' envs and a CPU copy of the policy."""

    def __init__(self, games: list[str], heads: list[int], envs_per_game: int, protocol: dict,
                 network_spec: dict, env_threads: int, precision: str = "fp32"):
        torch.set_num_threads(1)  # one intra-op thread per process, beside the emulator threads
        self.games, self.heads, self.envs_per_game = games, heads, envs_per_game
        self.protocol = Protocol(**protocol)
        self.env_threads = env_threads or auto_env_threads(len(games), envs_per_game)
        self.network = MultiHeadQNetwork(**network_spec).requires_grad_(False)
        self.precision = precision
        self.policy = _Heads(self.network, heads)
        self.actor: Actor | None = None
        self.generation = -1
        self.version = -1

    def collect(self, steps: int, epsilon: np.ndarray, generation: int, seed: int, weights: dict | None,
                version: int) -> dict:
        """`steps` vector steps of every env of this actor's games: [steps, envs] arrays (game-major
        envs), the frame and `first` flag after the last step, and per-game frames and episodes."""
        if weights is not None:  # numpy from the object store is read-only: copy into the network
            self.network.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
            self.version = version
        fresh = generation != self.generation  # first request, a restart, or the learner gave up on a chunk
        if fresh:
            if self.actor is not None:
                self.actor.close()
            self.actor = Actor(self.games, self.envs_per_game, self.protocol, seed, self.env_threads)
            self.generation = generation
        epsilon = np.asarray(epsilon)[self.heads]
        recorded = {k: [] for k in STEP_ARRAYS}
        frames = np.zeros(self.network.num_games, dtype=np.int64)
        episodes = []
        for _ in range(steps):
            self.actor.act(self.policy, epsilon, self.precision)
            step = self.actor.recv()
            for k, v in zip(STEP_ARRAYS, (step.frame, step.action, step.reward, step.terminated, step.truncated,
                                          step.first)):
                recorded[k].append(v)
            frames[self.heads] += step.frames
            episodes += [(self.heads[g], ret, length) for g, ret, length in step.episodes]
        return {**{k: np.stack(v) for k, v in recorded.items()}, "next_frame": newest_frame(self.actor.obs, self.actor.stack).copy(),
                "next_first": self.actor.first.copy(), "game_frames": frames, "episodes": episodes,
                "version": self.version, "fresh": fresh, "pid": os.getpid()}


class _Lane:
    """Steps one actor sent for one game that are not in the replay yet: [steps, envs] arrays.

    The newest step always stays here until more arrive, so that if the actor is lost, its
    episodes can still be cut at that step."""

    def __init__(self):
        self.parts: list[dict[str, np.ndarray]] = []
        self.count = 0
        self.after: tuple[np.ndarray, np.ndarray] | None = None  # frame and `first` after the newest step
        self.open = False  # steps arrived since the last cut

    def push(self, part: dict[str, np.ndarray], frame: np.ndarray, first: np.ndarray) -> None:
        self.parts.append(part)
        self.count += len(part["frames"])
        self.after, self.open = (frame, first), True

    def take(self, n: int) -> dict[str, np.ndarray]:
        """The oldest `n` steps, removed."""
        merged = self.parts[0] if len(self.parts) == 1 else {
            k: np.concatenate([p[k] for p in self.parts]) for k in STEP_ARRAYS}
        self.parts = [{k: v[n:] for k, v in merged.items()}]
        self.count -= n
        return {k: v[:n] for k, v in merged.items()}

    def cut(self) -> None:
        """The actor was lost: its running episodes end at the newest step, truncated, followed by the
        frame that came after it (the slot layout of any episode end, core/replay.py)."""
        if not self.open:
            return
        last = self.parts[-1]
        last["truncated"] = last["truncated"].copy()
        last["truncated"][-1] |= ~last["terminated"][-1]
        frame, first = self.after
        zeros = np.zeros((1, len(first)))
        self.push({"frames": frame[None], "action": zeros.astype(np.int64), "reward": zeros.astype(np.float32),
                   "terminated": zeros.astype(bool), "truncated": zeros.astype(bool), "first": first[None]},
                  frame, first)
        self.open = False


def flush(lanes: list[_Lane], replay, game: int) -> None:
    """Move the steps that all of a game's lanes have into its replay, side by side (lockstep);
    every lane keeps its newest step."""
    n = min(lane.count for lane in lanes) - 1
    if n > 0:
        parts = [lane.take(n) for lane in lanes]
        block = {k: np.concatenate([p[k] for p in parts], axis=1) for k in STEP_ARRAYS}
        for t in range(n):
            replay.add(game, *(block[k][t] for k in STEP_ARRAYS))


@dataclass
class Received:
    """What one `RayTrainer.step` got from the actors (what the loop reads from an `ActorStep`)."""

    frames: np.ndarray  # [games] emulator frames
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (game, return, frames)
    steps: int = 0  # agent steps (replay slots), reset steps included as in the local loop
    versions: list[int] = field(default_factory=list)  # weights version each chunk was collected with

    def add(self, other: "Received") -> None:
        self.frames += other.frames
        self.episodes += other.episodes
        self.steps += other.steps
        self.versions += other.versions


class RayActors:
    """The learner's side of the Ray actors: placement, requests in flight, weights, lanes into the replay."""

    def __init__(self, cfg: TrainConfig, games: list[str], protocol: Protocol, emulator: np.random.Generator):
        import ray

        connect(cfg.ray_address, cfg.num_actors)
        self.cfg, self.protocol = cfg, protocol
        self.action_counts = [num_actions(g, protocol) for g in games]
        self.placement = placement(len(games), cfg.num_actors)
        owners = [[i for i, own in enumerate(self.placement) if g in own] for g in range(len(games))]
        self.lanes = [len(o) * cfg.envs_per_game for o in owners]  # replay lanes per game
        self.queues = {(i, g): _Lane() for i, own in enumerate(self.placement) for g in own}
        self.by_game = [[self.queues[i, g] for i in owners[g]] for g in range(len(games))]
        self.rng = emulator  # the run's emulator stream: seeds each actor generation; saved in checkpoints
        worker = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)(ActorWorker)
        spec = network_spec(cfg, games, self.action_counts)
        self.handles = [worker.remote([games[g] for g in own], own, cfg.envs_per_game, protocol.to_dict(),
                                      spec, cfg.env_threads, cfg.precision)
                        for own in self.placement]
        n = len(self.handles)
        self.inflight: dict = {}  # ObjectRef -> actor index
        self.generation, self.seeds, self.sent = [0] * n, [None] * n, [-1] * n
        self.failed = [0] * n  # requests that failed, per actor (only the first of a row can lose steps)
        self.failing, self.retry_at = [0] * n, [0.0] * n  # failures in a row, and when to ask again
        self.restarts, self.pids = [0] * n, [None] * n  # process restarts seen, per actor
        self.weights, self.version, self.published_at = None, -1, 0

    def publish(self, network: torch.nn.Module, updates: int) -> None:
        """One `ray.put` of the weights; each actor gets them with its next request."""
        import ray

        self.weights = ray.put({k: np.ascontiguousarray(v.detach().cpu().numpy())
                                for k, v in network.state_dict().items()})
        self.version += 1
        self.published_at = updates

    def receive(self, epsilon: np.ndarray | None, frames: np.ndarray | None, replay, wait: bool,
                room: float = math.inf) -> Received:
        """Store the chunks that are back (waiting for one if `wait`) and ask the idle actors for the
        next, given the per-game epsilon and frames so far, while the learner has `room` for more
        frames (the chunks that came back take theirs first)."""
        import ray

        if room > 0:
            self._request(epsilon, frames)
        got = Received(np.zeros(len(self.action_counts), dtype=np.int64))
        retry = self._next_retry() if room > 0 else None  # a wait ends when an actor may be asked again
        if not self.inflight:
            if wait and retry is not None:
                time.sleep(retry)
            return got
        ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=retry if wait else 0)
        if ready:
            ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        for ref in ready:
            i = self.inflight.pop(ref)
            try:
                chunk = ray.get(ref)
            except ray.exceptions.RayActorError:
                self._fail(i)
                continue
            self.failing[i] = 0
            self._store(i, chunk, replay)
            got.add(Received(chunk["game_frames"], chunk["episodes"], chunk["action"].size, [chunk["version"]]))
        if room - got.frames.sum() > 0:
            self._request(epsilon, frames + got.frames)
        return got

    def drain(self, replay) -> Received:
        """Ask for nothing more and store every chunk still in flight."""
        total = Received(np.zeros(len(self.action_counts), dtype=np.int64))
        while self.inflight:
            total.add(self.receive(None, None, replay, wait=True, room=0))
        return total

    def close(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle)
        self.inflight.clear()

    def _request(self, epsilon, frames) -> None:
        """A request to every idle actor, except one whose games are a chunk ahead of the slowest
        game (only possible with as many actors as games): games advance together, as locally."""
        busy = set(self.inflight.values())
        ahead = self.cfg.chunk_steps * self.cfg.envs_per_game * self.protocol.frameskip
        for i, handle in enumerate(self.handles):
            if (i in busy or time.monotonic() < self.retry_at[i]
                    or frames[self.placement[i]].min() >= frames.min() + ahead):
                continue
            if self.seeds[i] is None:
                self.seeds[i] = int(self.rng.integers(2**31))
            weights = self.weights if self.sent[i] < self.version else None
            ref = handle.collect.remote(self.cfg.chunk_steps, epsilon, self.generation[i], self.seeds[i], weights,
                                        self.version)
            self.sent[i] = self.version
            self.inflight[ref] = i

    def _next_retry(self) -> float | None:
        """Seconds until an idle actor that failed may be asked again; None if no actor waits so."""
        now, busy = time.monotonic(), set(self.inflight.values())
        waits = [self.retry_at[i] - now for i in range(len(self.handles)) if i not in busy and self.retry_at[i] > now]
        return min(waits) if waits else None

    def _fail(self, i: int) -> None:
        """Actor i died (or was unreachable) with a request in flight: cut its episodes; it is asked
        again after RETRY_S, to start new ones."""
        self.failed[i] += 1
        self.failing[i] += 1
        if self.failing[i] > MAX_FAILURES:
            raise RuntimeError(f"Ray actor {i} (games {self.placement[i]}) failed {self.failing[i]} requests in a "
                               f"row: it is gone (restarted {self.restarts[i]} times); stopping")
        self.retry_at[i] = time.monotonic() + RETRY_S
        self.generation[i] += 1
        self.seeds[i], self.sent[i] = None, -1
        for g in self.placement[i]:
            self.queues[i, g].cut()

    def _store(self, i: int, chunk: dict, replay) -> None:
        E = self.cfg.envs_per_game
        self.restarts[i] += self.pids[i] not in (None, chunk["pid"])
        self.pids[i] = chunk["pid"]
        for j, g in enumerate(self.placement[i]):
            cols = slice(j * E, (j + 1) * E)
            if chunk["fresh"]:  # also catches a restart whose chunk in flight had already come back
                self.queues[i, g].cut()
            self.queues[i, g].push({k: chunk[k][:, cols] for k in STEP_ARRAYS}, chunk["next_frame"][cols],
                                   chunk["next_first"][cols])
            flush(self.by_game[g], replay, g)


class RayTrainer(Trainer):
    """`Trainer` fed by Ray actors: the same replay, learner, evaluation, checkpoints and logs."""

    def make_actor(self, env_threads: int) -> RayActors:
        return RayActors(self.cfg, self.games, self.protocol, self.streams.emulator)

    def step(self, epsilon: np.ndarray, phases: dict[str, float] | None = None) -> tuple[Received, list[dict]]:
        """One owed update if there is one, then the chunks that are back (waiting for one if
        nothing was learned), so the replay ratio is the local backend's."""
        if self.actor.version < 0 or self.learner.updates >= self.actor.published_at + self.cfg.weight_publish_period:
            self.actor.publish(self.learner.online, self.learner.updates)
        t0 = time.perf_counter()
        learning = self.frames.min() >= self.learning_starts
        updates = self.learn(limit=1) if learning else []
        t1 = time.perf_counter()
        # actors are asked for more only while the learner owes less than one round of chunks
        cfg, room = self.cfg, math.inf
        if updates:
            steps_per_update = cfg.train_frequency * len(self.games)  # agent steps, summed over games
            room = (cfg.chunk_steps * sum(self.actor.lanes) / steps_per_update - self.update_credit) * (
                steps_per_update * self.protocol.frameskip)
        got = self.actor.receive(epsilon, self.frames, self.replay, wait=not updates, room=room)
        self.count(got.frames, learning)
        if phases is not None:
            for name, a, b in (("learn", t0, t1), ("receive", t1, time.perf_counter())):
                phases[name] = phases.get(name, 0.0) + b - a
        return got, updates
