"""Choosing groups: the known optimum on hand-made affinities, exact vs heuristic, groups strings and files."""

import numpy as np
import pytest

from mtdqn.agents.multitask import grouping
from mtdqn.agents.multitask.grouping import best_partition, partition_score, read_affinity
from mtdqn.agents.multitask.sharing import GroupsError, groups_string, parse_groups

# a and b help each other, c and d help each other, across the pairs they hurt
PAIRS = np.array([
    [0.0, 0.4, -0.2, -0.1],
    [0.3, 0.0, -0.3, -0.2],
    [-0.2, -0.1, 0.0, 0.5],
    [-0.1, -0.4, 0.2, 0.0],
])


def test_two_networks_split_the_helpful_pairs():
    labels, score, method = best_partition(PAIRS, max_groups=2)
    assert labels == [0, 0, 1, 1] and method.startswith("exact")
    assert score == pytest.approx((0.4 + 0.3) + (0.5 + 0.2))  # each game's mean affinity from its one groupmate


def test_one_network_puts_everyone_together():
    labels, score, _ = best_partition(PAIRS, max_groups=1)
    assert labels == [0, 0, 0, 0]
    off = PAIRS[~np.eye(4, dtype=bool)]
    assert score == pytest.approx(off.sum() / 3)  # 4 games, each the mean of its 3 groupmates' affinities


def test_more_networks_than_useful_keeps_helpful_pairs_together():
    assert best_partition(PAIRS, max_groups=4)[0] == [0, 0, 1, 1]
    hostile = -np.abs(PAIRS)
    assert best_partition(hostile, max_groups=4)[0] == [0, 1, 2, 3]


def test_partition_count_is_the_bell_number():
    assert sum(1 for _ in grouping._partitions(6, 6)) == 203
    assert sum(1 for _ in grouping._partitions(5, 2)) == 16  # Stirling S(5,1) + S(5,2) = 1 + 15


@pytest.mark.parametrize("seed", range(4))
def test_heuristic_matches_exact_search_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    affinity = rng.normal(size=(7, 7))
    exact_labels, exact, _ = best_partition(affinity, max_groups=3)
    heuristic_labels, heuristic = grouping._local_search(affinity, 3, seed=0)
    assert heuristic == pytest.approx(exact)
    assert partition_score(affinity, heuristic_labels) == pytest.approx(partition_score(affinity, exact_labels))


def test_heuristic_recovers_planted_groups_beyond_exact_search():
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1, 2], 4)
    affinity = np.where(truth[:, None] == truth[None, :], 1.0, -1.0) + 0.1 * rng.normal(size=(12, 12))
    labels, _, method = best_partition(affinity, max_groups=3)
    assert method.startswith("heuristic") and labels == truth.tolist()


def test_groups_strings_and_files(tmp_path):
    games = ["pong", "breakout", "qbert", "frostbite"]
    assert parse_groups("pong,breakout;qbert,frostbite", games) == [0, 0, 1, 1]
    assert parse_groups("qbert ; pong, breakout,frostbite", games) == [1, 1, 0, 1]
    file = tmp_path / "groups.txt"
    file.write_text("# written by mtdqn group\npong,qbert;breakout,frostbite\n")
    assert parse_groups(str(file), games) == [0, 1, 0, 1]
    assert groups_string([["pong", "qbert"], ["breakout"]]) == "pong,qbert;breakout"
    for spec, message in (("pong,breakout;qbert", "leaves out frostbite"), ("pong;pong,breakout;qbert,frostbite",
                          "two groups"), ("pong,alien;breakout,qbert,frostbite", "'alien', which is not in")):
        with pytest.raises(GroupsError, match=message):
            parse_groups(spec, games)


def test_affinity_files_are_checked(tmp_path):
    good = tmp_path / "a.csv"
    good.write_text("source\\target,pong,qbert\npong,0.1,0.2\nqbert,-0.3,0.05\n")
    games, matrix = read_affinity(str(good))
    assert games == ["pong", "qbert"] and matrix[1, 0] == -0.3
    cases = {"swapped.csv": ("x,pong,qbert\nqbert,0,1\npong,1,0\n", "same order"),
             "text.csv": ("x,pong,qbert\npong,0,high\nqbert,1,0\n", "non-number"),
             "short.csv": ("x,pong\npong,0\n", "at least 2 games"),
             "nan.csv": ("x,pong,qbert\npong,0,nan\nqbert,1,0\n", "missing or infinite")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(GroupsError, match=message):
            read_affinity(str(tmp_path / name))
    with pytest.raises(GroupsError, match="does not exist"):
        read_affinity(str(tmp_path / "missing.csv"))


# ms per update of a torso serving n games: a torso's fixed cost plus each game's batch
COST = {n: 10.0 + 5.0 * n for n in range(1, 5)}


def test_a_budget_keeps_only_groupings_whose_torsos_fit_it():
    labels, _, method = best_partition(PAIRS, max_groups=4, cost=COST, budget=40.0)
    assert labels == [0, 0, 1, 1] and grouping.partition_cost(labels, COST) == 40.0 and "within 40 ms" in method
    # 35 ms buys one torso only (30 ms); two torsos cost at least 40
    assert best_partition(PAIRS, max_groups=4, cost=COST, budget=35.0)[0] == [0, 0, 0, 0]
    with pytest.raises(GroupsError, match="the cheapest costs 30.0 ms"):
        best_partition(PAIRS, max_groups=4, cost=COST, budget=20.0)


def test_group_command_measures_torso_costs_and_chooses_within_the_budget(tmp_path, monkeypatch, capsys):
    from mtdqn.scripts import group
    measured = []
    monkeypatch.setattr(group, "update_ms", lambda n, batch, family: measured.append((n, batch, family)) or COST[n])
    path = tmp_path / "affinity.csv"
    games = ["a", "b", "c", "d"]
    path.write_text("source\\target," + ",".join(games) + "\n" +
                    "".join(f"{g}," + ",".join(map(str, row)) + "\n" for g, row in zip(games, PAIRS)))
    group.main(["--affinity", str(path), "--networks", "4", "--budget-ms", "35", "--batch-size", "8",
                        "--out", str(tmp_path / "groups.txt")])
    out = capsys.readouterr().out
    assert measured == [(n, 8, "ale") for n in range(1, 5)]  # once per torso size
    assert "| 1 | a, b, c, d | -0.06667 | 30.0 |" in out and "summed update time 30.0 ms (budget 35 ms)" in out
    assert parse_groups(str(tmp_path / "groups.txt"), games) == [0, 0, 0, 0]


def test_update_cost_is_measured_for_real():
    from mtdqn.agents.bench.update_cost import torso_update_ms

    assert torso_update_ms(1, batch_size=2, repeats=1) > 0
    assert torso_update_ms(3, batch_size=2, family="minatar", repeats=1) > 0  # MinAtar grids, per-game input layers


def write_matrix(path, games, matrix) -> None:
    path.write_text("source\\target," + ",".join(games) + "\n" +
                    "".join(f"{g}," + ",".join(map(str, row)) + "\n" for g, row in zip(games, matrix)))


def test_minatar_games_are_priced_with_the_minatar_torso(tmp_path, monkeypatch, capsys):
    from mtdqn.scripts import group
    measured = []
    monkeypatch.setattr(group, "update_ms", lambda n, batch, family: measured.append(family) or COST[n])
    games = ["minatar/asterix", "minatar/breakout", "minatar/freeway", "minatar/seaquest"]
    write_matrix(tmp_path / "realized.csv", games, PAIRS)
    group.main(["--affinity", str(tmp_path / "realized.csv"), "--networks", "2", "--budget-ms", "100"])
    assert measured == ["minatar"] * 4


def test_a_random_partition_is_uniform_over_partitions_into_exactly_k_groups():
    # 4 games into exactly 2 groups: S(4, 2) = 7 partitions; 1,400 seeded draws, 200 expected for each
    draws = [tuple(grouping.random_partition(4, 2, seed)[0]) for seed in range(1400)]
    counts = {p: draws.count(p) for p in set(draws)}
    assert grouping.random_partition(4, 2, 0)[1] == 7 and len(counts) == 7
    assert all(150 <= c <= 250 for c in counts.values()), counts  # 3.5 standard deviations each side
    assert grouping.random_partition(4, 2, 5) == grouping.random_partition(4, 2, 5)  # the seed fixes the draw
    assert grouping.random_partition(3, 5, 0) == ([0, 1, 2], 1)  # more networks than games: each game alone
    labels, count = grouping.random_partition(12, 3, 0)  # above the exact size: redrawn until 3 groups
    assert count is None and sorted(set(labels)) == [0, 1, 2] and labels[0] == 0


def test_group_random_writes_its_draw_beside_the_matrix(tmp_path, capsys):
    from mtdqn.scripts import group
    games = ["a", "b", "c", "d"]
    write_matrix(tmp_path / "realized.csv", games, PAIRS)
    group.main(["--affinity", str(tmp_path / "realized.csv"), "--networks", "2", "--random", "--seed", "3"])
    out, err = capsys.readouterr()
    written = tmp_path / "groups-realized-k2-random3.txt"
    assert f"wrote {written}" in err and "drawn at random (--seed 3) from the 7 partitions into exactly 2 groups" in out
    assert "the best partition into <= 2 scores +1.4" in out  # (0.4 + 0.3) + (0.5 + 0.2)
    labels = parse_groups(str(written), games)
    assert len(set(labels)) == 2 and labels == grouping.random_partition(4, 2, 3)[0]
    assert written.read_text().startswith(f"# mtdqn group --affinity {tmp_path}/realized.csv --networks 2 --random "
                                          f"--seed 3: score {partition_score(PAIRS, labels):+.4g}\n")
    from mtdqn.scripts.cli import UsageError  # the command line prints it as one line and exits 2
    with pytest.raises(UsageError, match="--random draws a partition without choosing: drop --budget-ms"):
        group.main(["--affinity", str(tmp_path / "realized.csv"), "--random", "--budget-ms", "50"])


def test_groups_files_are_named_by_their_matrix_and_k(tmp_path, capsys):
    """Grouping cosine.csv beside affinity.csv must not overwrite affinity's groups: each file is named by its
    source and K, and the command says what it wrote."""
    from mtdqn.scripts import group

    games = ["a", "b", "c", "d"]
    for name, matrix in (("affinity", PAIRS), ("cosine", -np.array(PAIRS))):
        (tmp_path / f"{name}.csv").write_text("source\\target," + ",".join(games) + "\n" + "".join(
            f"{g}," + ",".join(map(str, row)) + "\n" for g, row in zip(games, matrix)))
        group.main(["--affinity", str(tmp_path / f"{name}.csv"), "--networks", "2"])
        err = capsys.readouterr().err
        assert err == (f"wrote {tmp_path}/groups-{name}-k2.txt: train with --sharing grouped --groups "
                       f"{tmp_path}/groups-{name}-k2.txt\n")
    assert sorted(p.name for p in tmp_path.glob("groups*")) == ["groups-affinity-k2.txt", "groups-cosine-k2.txt"]
    assert (tmp_path / "groups-affinity-k2.txt").read_text().startswith(f"# mtdqn group --affinity {tmp_path}/affinity.csv")
    assert (tmp_path / "groups-cosine-k2.txt").read_text().startswith(f"# mtdqn group --affinity {tmp_path}/cosine.csv")
    assert parse_groups(str(tmp_path / "groups-affinity-k2.txt"), games) == [0, 0, 1, 1]
