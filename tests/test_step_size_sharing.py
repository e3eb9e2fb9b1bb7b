"""The step-size check of test_step_size.py for every sharing mode (a file of its own, so the two halves
run on different test workers)."""

import pytest

from test_step_size import assert_scale_invariant


@pytest.mark.parametrize("variant", ["grouped", "learned", "soft", "separate"])
def test_every_layer_moves_as_far_with_16_games_as_with_one_whatever_the_sharing(variant):
    assert_scale_invariant(variant)
