"""The known-fact rules and the flip, against hand computations."""

import numpy as np
import pytest

from assocmem.errors import ConfigError
from assocmem.hijack.metrics import flipped, known


def test_top1_is_rank_one_and_p50_is_a_probability_above_half():
    rank = np.array([1, 2, 1, 5])
    logp = np.log([0.9, 0.6, 0.3, 0.01])
    assert known(rank, logp, "top1").tolist() == [True, False, True, False]
    assert known(rank, logp, "p50").tolist() == [True, True, False, False]


def test_a_flip_needs_a_known_fact_and_the_false_target_on_top():
    assert flipped([True, True, False], [1, 2, 1]).tolist() == [True, False, False]


def test_an_unknown_rule_is_a_one_line_error():
    with pytest.raises(ConfigError, match="rule"):
        known([1], [0.0], "top5")
