"""MinAtar as a game family (envs/minatar.py), on the real games of the optional `minatar` extra.

The env is checked against the package's own `minatar.Environment` fed the same seed and actions: the
same states, rewards and ends step for step, sticky actions included. Skipped without the extra.
"""

import numpy as np
import pytest

pytest.importorskip("minatar")

from minatar import Environment  # noqa: E402

from mtdqn.envs import GameError  # noqa: E402
from mtdqn.envs import minatar as m  # noqa: E402
from mtdqn.envs.games import all_games  # noqa: E402

CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
ACTIONS = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}
GAMES = [f"minatar/{n}" for n in CHANNELS]


def test_ids_are_namespaced_apart_from_the_ale_roms_and_survive_a_comma_list():
    assert m.MINATAR == tuple(GAMES) and m.SUITES == {"minatar": tuple(GAMES)}
    assert set(CHANNELS) <= set(all_games())  # every bare name is also an ALE ROM: hence the prefix
    assert set(m.MINATAR).isdisjoint(all_games())
    assert ",".join(m.MINATAR).split(",") == list(m.MINATAR)
    assert [m.slug(g) for g in m.MINATAR][1] == "minatar-breakout" and m.slug("ms_pacman") == "ms_pacman"
    assert all(m.is_minatar(g) for g in m.MINATAR) and not m.is_minatar("breakout")


@pytest.mark.parametrize("game, hint", [("minatar/brekout", "did you mean minatar/breakout?"),
                                        ("minatar/space-invaders", "did you mean minatar/space_invaders?"),
                                        ("minatar/pong", "MinAtar games are minatar/asterix,")])
def test_a_bad_id_names_the_value_and_a_fix(game, hint):
    with pytest.raises(GameError, match=f"unknown MinAtar game '{game}': {hint}"):
        m.MinAtarVectorEnv(game, 1)


def test_the_protocol_is_the_packages_default():
    p = m.MINATAR_PROTOCOL
    assert (p["repeat_action_probability"], p["difficulty_ramping"], p["full_action_space"]) == (0.1, True, False)
    assert p["max_frames_per_episode"] is None and p["noop_max"] == 0 and not p["life_loss_terminal"]
    assert m.PROTOCOLS["minatar_full"]["full_action_space"] and m.FRAMES_PER_STEP == 1 and m.FRAME_STACK == 1
    env = Environment("breakout")  # the package's own defaults
    assert env.sticky_action_prob == 0.1


@pytest.mark.parametrize("name", CHANNELS)
def test_shapes_dtypes_and_action_sets(name):
    game = f"minatar/{name}"
    env = m.MinAtarVectorEnv(game, 3)
    package = Environment(name)
    assert env.channels == m.CHANNELS[game] == CHANNELS[name] == package.state_shape()[2]
    assert env.single_observation_space.shape == (CHANNELS[name], 10, 10) and env.observation_space.shape[0] == 3
    assert env.single_action_space.n == m.MINIMAL_ACTIONS[game] == ACTIONS[name]
    assert env.action_set.tolist() == package.minimal_action_set()  # action k is the k-th minimal action
    assert m.MinAtarVectorEnv(game, 1, full_action_space=True).action_set.tolist() == list(range(6))
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, CHANNELS[name], 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
    assert set(info) == {"env_id", "lives", "frame_number", "episode_frame_number"}
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(np.arange(3) % env.single_action_space.n)
        assert obs.shape == (3, CHANNELS[name], 10, 10) and obs.dtype == np.uint8
        assert reward.dtype == np.int32 and terminated.dtype == truncated.dtype == bool
        assert info["env_id"].tolist() == [0, 1, 2] and info["lives"].tolist() == [1, 1, 1]
    env.close()


def play_package(name, seed, agent_actions, full=False):
    """The package's Environment from `seed` under agent actions, the way its own examples loop: reset
    after a terminal. Per step (state [C, 10, 10], reward, terminal); None marks where it resets."""
    env = Environment(name)
    env.seed(seed)
    env.reset()
    action_set = list(range(6)) if full else env.minimal_action_set()
    out, pending_reset = [], False
    for a in agent_actions:
        if pending_reset:
            env.reset()
            out.append((env.state().transpose(2, 0, 1), 0, None))
            pending_reset = False
            continue
        r, done = env.act(action_set[a])
        out.append((env.state().transpose(2, 0, 1), r, done))
        pending_reset = done
    return out


@pytest.mark.parametrize("name", CHANNELS)
def test_each_env_plays_exactly_what_the_package_plays_from_its_seed(name):
    """Sticky actions (p = 0.1), difficulty ramping and the game's randomness all come from the package's
    RandomState(seed): env i of reset(seed=s) is the package's env seeded s + i, step for step."""
    n, steps, seed = 3, 400, 11
    env = m.MinAtarVectorEnv(f"minatar/{name}", n)
    actions = np.random.default_rng(0).integers(env.single_action_space.n, size=(steps, n))
    env.reset(seed=seed)
    ours = [env.step(a) for a in actions]
    for i in range(n):
        for t, (state, r, done) in enumerate(play_package(name, seed + i, actions[:, i])):
            obs, reward, terminated, truncated, _ = ours[t]
            assert np.array_equal(obs[i], state), (name, i, t)
            assert reward[i] == r and not truncated[i]
            assert terminated[i] == bool(done)  # a reset step (None) reports no end


def test_sticky_actions_follow_the_seeded_coin_exactly():
    """Breakout draws nothing while it plays, only ball_start = randint(2) at each reset; so from
    RandomState(seed) the sticky coin of every step is known in advance: rand() < 0.1 repeats the
    previously applied action (no-op at first, and kept across an autoreset, as the package keeps it).
    The paddle then moves by the applied action, not the sent one."""
    seed, steps = 5, 600
    env = m.MinAtarVectorEnv("minatar/breakout", 1)
    rng = np.random.RandomState(seed)
    env.reset(seed=seed)
    rng.randint(2)
    sent = np.random.default_rng(1).integers(3, size=steps)  # n, l, r
    move = {0: 0, 1: -1, 2: +1}
    applied, pos, final, repeats = 0, 4, False, 0
    for a in sent:
        obs, _, terminated, _, _ = env.step(np.array([a]))
        if final:  # reset step: no coin, one randint(2); the sticky memory stays
            rng.randint(2)
            pos = 4
        else:
            if rng.rand() < 0.1:
                repeats += applied != a
            else:
                applied = a
            pos = min(9, max(0, pos + move[applied]))
        assert obs[0, 0, 9].tolist() == [int(x == pos) for x in range(10)]  # channel 0: the paddle, row 9
        final = bool(terminated[0])
    assert repeats >= 20  # the coin did override sent actions, seen in the paddle


def test_no_sticky_actions_when_the_probability_is_zero():
    env = m.MinAtarVectorEnv("minatar/breakout", 1, repeat_action_probability=0.0)
    env.reset(seed=0)
    pos = 4
    for a in [1, 1, 2, 1, 2, 2, 2, 2]:  # every sent action moves the paddle, to the episode's end
        obs, _, terminated, _, _ = env.step(np.array([a]))
        pos = min(9, max(0, pos + {1: -1, 2: 1}[a]))
        assert np.flatnonzero(obs[0, 0, 9]).tolist() == [pos]
        if terminated[0]:
            break


@pytest.mark.parametrize("name", ["asterix", "seaquest"])
def test_the_same_seed_gives_the_same_trajectory(name):
    def play(seed, env=None):
        env = env or m.MinAtarVectorEnv(f"minatar/{name}", 4)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in np.random.default_rng(3).integers(env.single_action_space.n, size=(300, 4)):
            out += list(env.step(a)[:4])
        return out, env

    first, env = play(7)
    again, _ = play(7, env)  # the same env object, reset with the same seed (sticky memory restarted too)
    fresh, _ = play(7)
    other, _ = play(8)
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(first, again, fresh))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))
    seeds = np.array([7, 8, 9, 10])  # one seed per env: the same as an int seed 7
    assert np.array_equal(m.MinAtarVectorEnv(f"minatar/{name}", 4).reset(seed=seeds)[0], first[0])


def test_next_step_autoreset():
    """The step after a done resets that env: the action is ignored, reward 0, no flags, episode frames 0,
    frames unchanged; the next step plays the new episode from there."""
    env = m.MinAtarVectorEnv("minatar/breakout", 2)
    env.reset(seed=3)
    done_at = None
    for t in range(200):
        obs, reward, terminated, truncated, info = env.step(np.array([0, 0]))
        if terminated[0]:
            done_at, frames, length = t, info["frame_number"][0], info["episode_frame_number"][0]
            break
    assert done_at is not None and length == done_at + 1 == frames
    obs, reward, terminated, truncated, info = env.step(np.array([2, 0]))
    assert reward[0] == 0 and not terminated[0] and not truncated[0]
    assert info["episode_frame_number"][0] == 0 and info["frame_number"][0] == frames
    assert obs[0, 0, 9].tolist() == [int(x == 4) for x in range(10)]  # the paddle back at the start
    obs, *_, info = env.step(np.array([0, 0]))
    assert info["episode_frame_number"][0] == 1 and info["frame_number"][0] == frames + 1


def test_an_episode_cap_truncates_and_the_next_step_resets():
    env = m.MinAtarVectorEnv("minatar/freeway", 2, max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.array([0, 0]))[2:4] for _ in range(6)]
    assert [bool(tr[0]) for _, tr in flags] == [False] * 4 + [True, False]
    assert not any(te.any() for te, _ in flags)


def test_freeway_ends_on_its_own_clock_as_a_termination():
    env = m.MinAtarVectorEnv("minatar/freeway", 1)
    env.reset(seed=0)
    for t in range(1, 3000):
        _, _, terminated, truncated, _ = env.step(np.array([1]))
        if terminated[0]:
            break
    assert t == 2501 and not truncated[0]


def test_bad_actions_and_order_are_refused():
    env = m.MinAtarVectorEnv("minatar/breakout", 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 0]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        env.step(np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0]))
    with pytest.raises(RuntimeError, match="recv"):
        env.recv()


def test_the_score_table_names_its_sources_and_every_game():
    from importlib import resources

    text = resources.files("mtdqn.envs").joinpath("data/minatar_scores.csv").read_text()
    assert "# Source:" in text and "arXiv:1903.03176" in text
    refs = m.reference_scores()
    assert set(refs) == set(m.MINATAR)
    assert all(0 <= random < dqn for random, dqn in refs.values())


@pytest.mark.parametrize("game, score, expected", [
    # (score - random) / (dqn - random), by hand from minatar_scores.csv
    ("minatar/breakout", 0.372, 0.0),  # random
    ("minatar/breakout", 10.0, 1.0),  # DQN
    ("minatar/breakout", 5.186, (5.186 - 0.372) / (10.0 - 0.372)),  # = 0.5
    ("minatar/space_invaders", 100.0, (100.0 - 4.256) / (43.7 - 4.256)),  # = 2.427...
    ("minatar/freeway", 0.0, (0.0 - 0.358) / (50.2 - 0.358)),  # below random: negative
])
def test_normalized_score_by_hand(game, score, expected):
    assert m.normalized_score(game, score) == pytest.approx(expected)


def test_normalized_score_of_an_unknown_game_is_none():
    assert m.normalized_score("breakout", 1.0) is None


def test_padding_to_ten_channels_appends_zero_channels():
    plain = m.MinAtarVectorEnv("minatar/breakout", 2)
    padded = m.make_vector_env("minatar/breakout", 2, m.MINATAR_PROTOCOL, pad_channels=10)
    assert padded.single_observation_space.shape == (10, 10, 10) and padded.channels == 4
    a, _ = plain.reset(seed=4)
    b, _ = padded.reset(seed=4)
    for _ in range(30):
        assert np.array_equal(b[:, :4], a) and not b[:, 4:].any()
        a, b = plain.step(np.array([1, 2]))[0], padded.step(np.array([1, 2]))[0]
    with pytest.raises(ValueError, match="below"):
        m.MinAtarVectorEnv("minatar/seaquest", 1, pad_channels=7)


def test_rgb_frames_draw_each_channel_in_its_colour():
    obs, _ = m.MinAtarVectorEnv("minatar/breakout", 2).reset(seed=0)
    rgb = m.rgb_frames(obs, scale=4)
    assert rgb.shape == (2, 40, 40, 3) and rgb.dtype == np.uint8
    paddle = rgb[0, 9 * 4, obs[0, 0, 9].argmax() * 4]
    assert paddle.any() and not rgb[0, 0, 0].any()  # the paddle is coloured, an empty cell black
