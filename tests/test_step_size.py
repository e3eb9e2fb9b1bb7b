"""The shared torso's step does not grow with the number of games: on the synthetic problem, every
layer a game reads moves per update as far as it does in a one-game agent, within [0.8, 1.25], for
G = 1, 4 and 16 games and every balancer and precision (sharing modes: test_step_size_sharing.py). Two
seeds are averaged. The bench's table (`python -m mtdqn.agents.bench.step_size`) adds G = 2 and 8; the
test leaves them out for time (a third of its updates), since a step that grew with G would show at 16.
With the games' losses summed into one backward pass and one global clip, the torso moved 1.6-2.1 times
as far at G = 16 (docs/multitask.md)."""

import pytest
import torch

from mtdqn.agents.bench.step_size import LAYERS, VARIANTS, relative_steps

BAND = (0.8, 1.25)
COUNTS = (1, 4, 16)


def assert_scale_invariant(variant: str) -> None:
    torch.set_num_threads(1)
    table = relative_steps(COUNTS, **VARIANTS[variant])
    assert list(table) == list(COUNTS)
    assert table[1] == pytest.approx(dict.fromkeys(LAYERS, 1.0))
    outside = {(g, layer): round(v, 2) for g, row in table.items() for layer, v in row.items()
               if not BAND[0] <= v <= BAND[1]}
    assert outside == {}, f"{variant}: steps relative to one game outside {BAND}"


@pytest.mark.parametrize("variant", ["equal", "weighted", "popart", "pcgrad", "bf16"])
def test_every_layer_moves_as_far_with_16_games_as_with_one(variant):
    assert_scale_invariant(variant)
