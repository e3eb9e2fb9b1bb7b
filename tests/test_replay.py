"""Replay: single-frame storage, stacks at sample time, n-step transitions, task balance."""

from dataclasses import replace

import numpy as np
import pytest

from mtdqn.agents.core.actor import Actor
from mtdqn.agents.core.network import MultiHeadQNetwork
from mtdqn.agents.core.replay import STACK, GameReplay, TaskBalancedReplay
from mtdqn.envs import PROTOCOLS


def play(game: str, steps: int, lanes: int, capacity: int, episode_frames: int):
    """Random play in a real game; returns the replay and the observation acted on at each step."""
    protocol = replace(PROTOCOLS["machado"], max_frames_per_episode=episode_frames)
    actor = Actor([game], lanes, protocol, seed=3)
    network = MultiHeadQNetwork(actor.action_counts)
    replay = GameReplay(capacity, lanes, n_step=3)
    seen, firsts = [], []
    for _ in range(steps):
        seen.append(actor.obs.copy())
        actor.act(network, epsilon=np.ones(1))
        s = actor.recv()
        replay.add(s.frame, s.action, s.reward, s.terminated, s.truncated, s.first)
        firsts.append(s.first.copy())
    actor.close()
    return replay, np.stack(seen), np.stack(firsts)


@pytest.mark.parametrize("game", ["breakout", "ms_pacman"])
def test_stacks_rebuilt_at_sample_time_equal_the_envs_own_stacks(game):
    # 30-step episodes: each lane crosses several episode starts in 100 steps
    replay, seen, firsts = play(game, steps=100, lanes=2, capacity=2 * 200, episode_frames=120)
    assert firsts.sum() >= 2 * 3
    for t in range(100):
        for e in range(2):
            np.testing.assert_array_equal(replay.stack(np.array([t]), np.array([e]))[0], seen[t, e])


def test_no_stack_crosses_an_episode_start():
    replay, seen, firsts = play("breakout", steps=100, lanes=2, capacity=2 * 200, episode_frames=120)
    t, e = np.nonzero(firsts)
    stacks = replay.stack(t, e)
    assert (stacks[:, :3] == 0).all()  # only the episode's own first frame is non-zero
    assert (stacks[:, 3].reshape(len(t), -1).max(1) > 0).all()


def test_wrapped_buffer_samples_only_intact_stacks_and_transitions():
    steps, slots = 100, 40
    replay, seen, _ = play("ms_pacman", steps=steps, lanes=2, capacity=2 * slots, episode_frames=120)
    assert replay.added == steps and replay.cursor == steps % slots
    t, e = replay.sample_indices(2000, np.random.default_rng(0))
    # absolute step of a slot: the newest step written there
    step_of = lambda slot: slot + slots * ((steps - 1 - slot) // slots)  # noqa: E731
    absolute = np.array([step_of(s) for s in t])
    assert absolute.min() >= steps - slots + 3  # never the 3 oldest slots (their history is overwritten)
    assert absolute.max() <= steps - 1 - 3  # n = 3 newer slots must exist
    batch = replay.transitions(t, e, game_id=0)
    for i in range(0, 2000, 37):
        np.testing.assert_array_equal(batch.obs[i], seen[absolute[i], e[i]])
        np.testing.assert_array_equal(batch.next_obs[i], seen[absolute[i] + batch.steps[i], e[i]])


def hand_buffer() -> GameReplay:
    """One lane, frames valued slot+1; episodes A (terminates), B (truncated), C (runs on)."""
    replay = GameReplay(capacity=20, lanes=1, n_step=3)
    rows = [  # (reward, terminated, truncated, first)
        (1, False, False, True), (2, False, False, False), (3, True, False, False),  # A
        (0, False, False, False),  # final frame of A
        (5, False, False, True), (6, False, True, False),  # B, truncated
        (0, False, False, False),  # final frame of B
        (7, False, False, True), (8, False, False, False), (9, False, False, False),
        (10, False, False, False), (11, False, False, False), (12, False, False, False),
    ]
    for slot, (r, term, trunc, first) in enumerate(rows):
        frame = np.full((1, 84, 84), slot + 1, dtype=np.uint8)
        replay.add(frame, np.array([slot % 4]), np.array([r]), np.array([term]), np.array([trunc]), np.array([first]))
    return replay


@pytest.mark.parametrize("t, rewards, steps, terminated, next_stack", [
    (0, [1, 2, 3], 3, True, [1, 2, 3, 4]),  # termination inside the window: no bootstrap
    (1, [2, 3, 0], 2, True, [1, 2, 3, 4]),
    (2, [3, 0, 0], 1, True, [1, 2, 3, 4]),
    (4, [5, 6, 0], 2, False, [0, 5, 6, 7]),  # truncation: bootstrap from B's final frame
    (5, [6, 0, 0], 1, False, [0, 5, 6, 7]),
    (7, [7, 8, 9], 3, False, [8, 9, 10, 11]),  # full n steps
    (8, [8, 9, 10], 3, False, [9, 10, 11, 12]),
])
def test_n_step_transitions_by_hand(t, rewards, steps, terminated, next_stack):
    b = hand_buffer().transitions(np.array([t]), np.array([0]), game_id=2)
    assert b.rewards[0].tolist() == rewards
    assert b.steps[0] == steps and b.terminated[0] == terminated
    assert b.next_obs[0, :, 0, 0].tolist() == next_stack
    assert b.action[0] == t % 4 and b.game[0] == 2


def test_stack_at_episode_start_is_zero_padded_by_hand():
    replay = hand_buffer()
    assert replay.stack(np.array([4, 5, 8]), np.zeros(3, int))[:, :, 0, 0].tolist() == [
        [0, 0, 0, 5], [0, 0, 5, 6], [0, 0, 8, 9]]


def test_final_frames_are_never_transition_starts():
    replay = hand_buffer()
    t, _ = replay.sample_indices(5000, np.random.default_rng(0))
    # 13 slots written, n = 3: starts 0..9 minus the final frames 3 and 6
    assert set(t.tolist()) == {0, 1, 2, 4, 5, 7, 8, 9}


def test_bytes_per_transition_is_one_frame_plus_a_few_bytes():
    replay = GameReplay(capacity=1000, lanes=4, n_step=3)
    assert replay.bytes_per_transition == 84 * 84 + 1 + 4 + 3 == 7064
    assert replay.bytes_per_transition <= 7.5 * 1024


def filled(num_games: int, slots: list[int], balance: str) -> TaskBalancedReplay:
    replay = TaskBalancedReplay(num_games, capacity_per_game=2 * 100, lanes=2, n_step=3, balance=balance, seed=0)
    for g, n in enumerate(slots):
        for i in range(n):
            replay.add(g, np.zeros((2, 84, 84), np.uint8), np.zeros(2, int), np.zeros(2), np.zeros(2, bool),
                       np.zeros(2, bool), np.full(2, i == 0))
    return replay


def test_balanced_batches_have_equal_counts_per_game():
    replay = filled(3, [80, 20, 50], "equal")
    ready = replay.ready_games(1)
    assert ready == [0, 1, 2]
    for _ in range(20):
        assert np.bincount(replay.sample(30, ready).game, minlength=3).tolist() == [10, 10, 10]
    counts = np.bincount(replay.sample(32, ready).game, minlength=3)
    assert counts.sum() == 32 and set(counts.tolist()) == {10, 11}


def test_games_without_enough_data_are_left_out_until_ready():
    replay = filled(3, [80, 3, 50], "equal")  # 3 slots with n = 3: nothing valid yet
    assert replay.ready_games(1) == [0, 2]
    assert np.bincount(replay.sample(32, [0, 2]).game, minlength=3).tolist() == [16, 0, 16]


def test_proportional_balance_follows_buffer_sizes():
    replay = filled(2, [83, 23], "proportional")  # 80 and 20 valid slots per lane
    games = np.concatenate([replay.sample(32, [0, 1]).game for _ in range(300)])
    assert np.mean(games == 0) == pytest.approx(0.8, abs=0.02)


def test_a_lost_life_ends_the_td_target_but_not_the_game():
    """--life-loss-terminal on real Breakout (5 lives): same emulator trajectory, episodes and returns;
    `terminated` also marks each of the 4 lost lives, the replay's n-step targets stop there, and the
    frame stack after a lost life still holds the frames before it (the game went on)."""
    runs = {}
    for life_loss in (False, True):
        actor = Actor(["breakout"], 1, replace(PROTOCOLS["machado"], life_loss_terminal=life_loss), seed=5)
        network = MultiHeadQNetwork(actor.action_counts)
        replay = GameReplay(2000, 1, n_step=3)
        seen, terminated, first, episodes = [], [], [], []
        for _ in range(1500):
            seen.append(actor.obs.copy())
            actor.act(network, epsilon=np.ones(1))
            s = actor.recv()
            replay.add(s.frame, s.action, s.reward, s.terminated, s.truncated, s.first)
            terminated.append(s.terminated[0]), first.append(s.first[0])
            episodes += s.episodes
        actor.close()
        runs[life_loss] = replay, np.stack(seen), np.array(terminated), np.array(first), episodes
    (_, seen, plain, first, episodes), (replay, seen_ll, marked, first_ll, episodes_ll) = runs[False], runs[True]
    np.testing.assert_array_equal(seen, seen_ll)
    np.testing.assert_array_equal(first, first_ll)
    assert episodes == episodes_ll and len(episodes) >= 3
    starts = np.flatnonzero(first)
    for a, b in zip(starts[:-1], starts[1:]):  # each whole game: 1 real terminal, 5 marks with lost lives
        assert plain[a:b].sum() == 1 and marked[a:b].sum() == 5
    lost = np.flatnonzero(marked & ~plain)
    t = lost[0]
    batch = replay.transitions(np.array([t - 1]), np.array([0]), game_id=0)
    assert batch.steps[0] == 2 and batch.terminated[0] and batch.rewards[0, 2] == 0
    np.testing.assert_array_equal(replay.stack(np.array([t + 1]), np.array([0]))[0], seen[t + 1, 0])
    assert seen[t + 1, 0, :3].any()  # frames from before the lost life are in the stack


def test_life_loss_reset_without_life_loss_terminals_is_refused():
    """The replay restarts a stack only after a terminated slot, so an actor that restarted its own
    stacks at a lost life it does not report would act on stacks the learner never sees."""
    with pytest.raises(ValueError, match="life_loss_reset needs life_loss_terminal=True"):
        Actor(["breakout"], 1, replace(PROTOCOLS["machado"], life_loss_reset=True), seed=5)


def test_life_loss_reset_restarts_the_stack_the_actor_and_the_learner_see():
    """--life-loss-reset on real Breakout: the same game as without it; after each lost life that does
    not end the game the actor acts on [0, 0, 0, f], then [0, 0, f, f'], then [0, f, f', f''], and the
    replay's stack of every slot is exactly the one the actor acted on. The step into the lost life
    stays a transition start, terminated after one step."""
    runs = {}
    for reset in (False, True):
        actor = Actor(["breakout"], 1, replace(PROTOCOLS["machado"], life_loss_terminal=True, life_loss_reset=reset),
                      seed=5)
        network = MultiHeadQNetwork(actor.action_counts)
        replay = GameReplay(2000, 1, n_step=3, terminal_ends_stack=reset)
        seen, terminated, first = [], [], []
        for _ in range(1500):
            seen.append(actor.obs[0].copy())
            actor.act(network, epsilon=np.ones(1))
            s = actor.recv()
            replay.add(s.frame, s.action, s.reward, s.terminated, s.truncated, s.first)
            terminated.append(s.terminated[0]), first.append(s.first[0])
        actor.close()
        runs[reset] = np.stack(seen), np.array(terminated), np.array(first), replay
    (plain, terminated, first, _), (seen, terminated_r, first_r, replay) = runs[False], runs[True]
    np.testing.assert_array_equal(seen[:, -1], plain[:, -1])  # the same game, frame for frame
    np.testing.assert_array_equal(terminated, terminated_r)
    np.testing.assert_array_equal(first, first_r)
    assert (seen[seen != plain] == 0).all()  # the reset only zeroes
    lost = [t for t in np.flatnonzero(terminated) if t + 4 < len(first) and not first[t + 2]]
    assert len(lost) >= 4
    for t in lost:
        assert not seen[t + 1, :3].any() and seen[t + 1, 3].any() and plain[t + 1, :3].any()
        assert not seen[t + 2, :2].any()
        np.testing.assert_array_equal(seen[t + 2, 2], seen[t + 1, 3])
        assert not seen[t + 3, 0].any()
        np.testing.assert_array_equal(seen[t + 4], plain[t + 4])
    slots = np.arange(len(seen))
    np.testing.assert_array_equal(replay.stack(slots, np.zeros_like(slots)), seen)
    batch = replay.transitions(np.array(lost), np.zeros(len(lost), int), game_id=0)
    assert batch.terminated.all() and (batch.steps == 1).all() and not first[np.array(lost) + 1].any()


def test_life_loss_reset_stacks_match_with_several_games_and_envs_after_the_buffer_wraps():
    """As the runner stores them: two games x two envs under atari100k with the restart (no-op starts,
    lost lives in both games), each game's replay a ring of 150 slots written 400 times. Every stack
    the replay can still build is the one the actor acted on, lane by lane, across the wrap."""
    games, envs, steps = ["breakout", "ms_pacman"], 2, 400
    actor = Actor(games, envs, replace(PROTOCOLS["atari100k"], life_loss_reset=True), seed=3)
    network = MultiHeadQNetwork(actor.action_counts)
    replays = [GameReplay(150 * envs, envs, n_step=10, terminal_ends_stack=True) for _ in games]
    seen, lost = [], 0
    for _ in range(steps):
        seen.append(actor.obs.copy())
        actor.act(network, epsilon=np.ones(len(games) * envs))
        s = actor.recv()
        lost += int((s.terminated & ~s.first).sum())
        for g, replay in enumerate(replays):
            k = slice(g * envs, (g + 1) * envs)
            replay.add(s.frame[k], s.action[k], s.reward[k], s.terminated[k], s.truncated[k], s.first[k])
    actor.close()
    seen = np.stack(seen)  # [steps, games * envs, 4, 84, 84]
    assert lost >= 4 and replays[0].added == steps > replays[0].slots
    for g, replay in enumerate(replays):
        for lane in range(envs):
            steps_kept = np.arange(steps - replay.slots + STACK, steps)
            got = replay.stack(steps_kept % replay.slots, np.full(len(steps_kept), lane))
            np.testing.assert_array_equal(got, seen[steps_kept, g * envs + lane])


def test_a_window_stops_where_a_resumed_run_started_fresh_episodes():
    """A run saved mid-episode and resumed: the last slot written before the save has no done flag and
    the next slot is a fresh episode's `first`. That slot's outcome was never stored, so a window
    bootstraps from its state and never takes the next episode's rewards."""
    replay = GameReplay(capacity=20, lanes=1, n_step=3)
    rows = [(1, True), (2, False), (3, False), (4, False), (5, False),  # saved after slot 4 (reward 5)
            (10, True), (20, False), (30, False), (40, False)]  # resumed: a fresh episode
    for slot, (r, first) in enumerate(rows):
        replay.add(np.full((1, 84, 84), slot + 1, np.uint8), np.array([0]), np.array([r]), np.array([False]),
                   np.array([False]), np.array([first]))
    b = replay.transitions(np.array([2, 3, 5]), np.zeros(3, int), game_id=0)
    assert b.rewards.tolist() == [[3, 4, 0], [4, 0, 0], [10, 20, 30]]
    assert b.steps.tolist() == [2, 1, 3] and not b.terminated.any()
    assert b.next_obs[:, -1, 0, 0].tolist() == [5, 5, 9]  # slot 4's own frame, then the new episode's
    t, _ = replay.sample_indices(2000, np.random.default_rng(0))
    assert 4 not in set(t.tolist())  # its outcome is unknown: never a transition start
