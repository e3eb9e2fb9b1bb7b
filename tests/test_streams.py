"""Random streams (core/streams.py): one seed, a separate generator per consumer. Measuring conflict and
affinity leaves the trained weights bit for bit as they were; a checkpoint holds every stream and a
resume continues each where the uninterrupted run was; old checkpoints without them still resume."""

import copy

import numpy as np
import torch

from mtdqn.agents.core import checkpoint
from mtdqn.agents.core.streams import NAMES, NUMPY, TORCH, Streams, emulator_seeds
from mtdqn.agents.training.config import TrainConfig
from mtdqn.agents.training.runner import Trainer

GAMES = "pong,breakout"


def config(out, **kw) -> TrainConfig:
    # one update of 2 x 8 transitions per vector step once 200 frames per game are in: 164 updates at 860
    # (the first waits a step); a quarter-width torso keeps them cheap; augmentation on, so that it draws
    base = dict(suite=GAMES, protocol="machado", frames_per_game=860, learning_starts=200, envs_per_game=1,
                batch_size=8, train_frequency=1, target_update_period=20, torso_width=0.25, replay_size=2000,
                random_shift=4, intensity_noise=0.05, conflict_batch_size=16, conflict_interval=0, eval_interval=0,
                eval_episodes=1, max_episode_frames=400, log_interval=400, checkpoint_interval=400,
                keep_checkpoints=0, out=str(out))
    out.mkdir(parents=True, exist_ok=True)
    return TrainConfig(**base | kw)


def draws(streams_like: dict) -> dict:
    """The next few draws of each generator (of copies: the generators themselves do not move)."""
    out = {}
    for name, g in streams_like.items():
        g = copy.deepcopy(g) if isinstance(g, np.random.Generator) else torch.Generator().set_state(g.get_state())
        out[name] = g.integers(0, 2**62, 8).tolist() if isinstance(g, np.random.Generator) else \
            torch.randint(0, 2**62, (8,), generator=g).tolist()
    return out


def generators(streams: Streams) -> dict:
    return {n: getattr(streams, n) for n in (*NUMPY, *TORCH)}


def test_measuring_conflict_and_affinity_does_not_change_the_trained_weights(tmp_path):
    runs = {}
    for interval in (0, 40):
        t = Trainer(config(tmp_path / f"every{interval}", conflict_interval=interval), tmp_path / f"every{interval}")
        t.run()
        runs[interval] = t
    plain, measured = runs[0], runs[40]
    assert plain.learner.updates == measured.learner.updates == 164  # measured at updates 40, 80, 120, 160
    rows = (tmp_path / "every40" / "conflict.csv").read_text().splitlines()[1:]
    assert len({r.split(",")[1] for r in rows}) >= 4 and not (tmp_path / "every0" / "conflict.csv").exists()
    for (name, p), q in zip(plain.learner.online.named_parameters(), measured.learner.online.parameters()):
        assert torch.equal(p, q), name
    for name, g in generators(plain.streams).items():  # the training streams ended where they did unmeasured
        if not name.startswith("measure"):
            assert draws({name: g}) == draws({name: getattr(measured.streams, name)}), name
    for x, y in zip(plain.replay.games, measured.replay.games):  # the same actions, so the same episodes
        np.testing.assert_array_equal(x.action, y.action)

    # one more measurement moves its own streams only: training streams, torch's global RNG, weights stay
    before = draws({n: g for n, g in generators(measured.streams).items() if not n.startswith("measure")})
    global_rng, weights = torch.get_rng_state(), copy.deepcopy(measured.learner.online.state_dict())
    measured.measure_transfer([0, 1])
    assert draws({n: g for n, g in generators(measured.streams).items() if not n.startswith("measure")}) == before
    assert torch.equal(torch.get_rng_state(), global_rng)
    for k, v in measured.learner.online.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_a_checkpoint_holds_every_stream_and_a_resume_continues_them(tmp_path, monkeypatch):
    """The uninterrupted run's streams at its 400-frame checkpoint (copied as it saves) are where the
    resumed run's streams stand: each one's next draws are the same; the emulators of the resumed run
    take the emulator stream's next seeds (the episode in progress restarts)."""
    at_save = {}
    save = Trainer.save

    def recording_save(self):
        at_save[int(self.frames.min())] = (copy.deepcopy(generators(self.streams)), torch.get_rng_state())
        return save(self)

    monkeypatch.setattr(Trainer, "save", recording_save)
    run = tmp_path / "a"
    Trainer(config(run, save_replay=True, frames_per_game=400), run).run()
    (mid,) = checkpoint.all_checkpoints(run)
    state = checkpoint.load(mid)
    assert set(state["rng"]) == set(NUMPY) | set(TORCH) | {"torch"} and len(set(NUMPY) | set(TORCH)) == len(NAMES) - 1
    saved, global_rng = at_save[min(state["frames"])]

    resumed = Trainer(config(run, save_replay=True, frames_per_game=480), run, state=state)
    assert torch.equal(torch.get_rng_state(), global_rng)  # the network stream (torch's global RNG)
    emulator = copy.deepcopy(saved["emulator"])
    expected_seeds = emulator_seeds(emulator, 2, 1)
    assert [s.tolist() for s in resumed.actor.env_seeds] == [s.tolist() for s in expected_seeds]
    assert draws({"emulator": resumed.streams.emulator}) == draws({"emulator": emulator})
    others = {n: g for n, g in saved.items() if n != "emulator"}
    assert draws({n: getattr(resumed.streams, n) for n in others}) == draws(others)
    assert resumed.actor.rng is resumed.streams.exploration and resumed.replay.rng is resumed.streams.replay
    assert resumed.learner.generator is resumed.streams.augment
    assert resumed.learning_starts == 200  # the replay came back: learning goes on at once
    resumed.run()
    assert min(checkpoint.load(checkpoint.latest(run))["frames"]) >= 480


def test_a_checkpoint_without_streams_resumes_with_one_warning(tmp_path, capsys):
    """Checkpoints written before the streams kept the actor's, the replay's and torch's RNG: those come
    back (the actor's as exploration), the rest start from the seed, said in one line (the other line: this
    short resume ends before its refilled replay lets it learn)."""
    run = tmp_path / "old"
    Trainer(config(run, frames_per_game=400), run).run()
    state = checkpoint.load(checkpoint.latest(run))
    state["rng"] = {"actor": state["rng"]["exploration"], "replay": state["rng"]["replay"],
                    "torch": state["rng"]["torch"]}
    capsys.readouterr()
    t = Trainer(config(run, frames_per_game=480), run, state=state)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["mtdqn: warning: the checkpoint has no state for the random stream(s) emulator, augment, "
                        "measure_replay, measure_augment (written before they existed): they start afresh from seed 0",
                        "mtdqn: warning: resumed at 400 frames per game without a saved replay, learning waits until "
                        "the replay refills --learning-starts 200 frames, at 600, and --frames-per-game 480 stops "
                        "before: no gradient update will happen; raise --frames-per-game above 600"]
    assert t.actor.rng.bit_generator.state == state["rng"]["actor"]
    assert t.replay.rng.bit_generator.state == state["rng"]["replay"]
    t.run()
    assert min(checkpoint.load(checkpoint.latest(run))["frames"]) >= 480


def test_the_streams_differ_from_each_other(tmp_path):
    streams = Streams.spawn(0)
    numpy_draws = [tuple(getattr(streams, n).integers(0, 2**62, 4)) for n in NUMPY]
    torch_draws = [tuple(torch.randint(0, 2**62, (4,), generator=getattr(streams, n)).tolist()) for n in TORCH]
    assert len(set(numpy_draws)) == len(NUMPY) and len(set(torch_draws)) == len(TORCH)
    assert torch_draws[0] != tuple(torch.randint(0, 2**62, (4,), generator=torch.Generator().manual_seed(0)).tolist())
    again = Streams.spawn(0)
    assert tuple(again.replay.integers(0, 2**62, 4)) == numpy_draws[NUMPY.index("replay")]  # reproducible
    assert tuple(Streams.spawn(1).replay.integers(0, 2**62, 4)) != numpy_draws[NUMPY.index("replay")]

    t = Trainer(config(tmp_path / "run"), tmp_path / "run")
    try:
        actor, replay, augment = t.actor.rng, t.replay.rng, t.learner.generator
        assert actor is not replay and augment is t.streams.augment
        assert actor.bit_generator.state != replay.bit_generator.state
        assert actor.integers(0, 2**62, 4).tolist() != replay.integers(0, 2**62, 4).tolist()
        assert torch.randint(0, 2**62, (4,), generator=augment).tolist() != \
            torch.randint(0, 2**62, (4,), generator=t.streams.measure_augment).tolist()
        assert len({int(s) for seeds in t.actor.env_seeds for s in seeds}) == 2
    finally:
        t.actor.close()


def test_stream_k_is_child_k_of_the_seed_sequence():
    """A stream's draws depend on its place in NAMES only, so a stream appended later changes none."""
    children = np.random.SeedSequence(7).spawn(len(NAMES))
    streams = Streams.spawn(7)
    for name in NUMPY:
        expected = np.random.default_rng(children[NAMES.index(name)]).integers(0, 2**62, 4)
        assert getattr(streams, name).integers(0, 2**62, 4).tolist() == expected.tolist(), name
    assert streams.network == int(children[NAMES.index("network")].generate_state(1, np.uint64)[0])
