"""N-BaIoT's window majority vote, checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from fediot.detect.window import window_vote


def test_window_of_one_returns_the_flags() -> None:
    # Prepare
    flags = np.array([1, 0, 0, 1, 1], dtype=np.int8)

    # Execute
    out = window_vote(flags, 1)

    # Assert
    assert out.dtype == np.bool_
    assert out.tolist() == [True, False, False, True, True]


def test_window_of_three_by_hand() -> None:
    # Prepare: row i votes over rows max(0, i-2)..i.
    #   i=0: [1]     -> 1/1 alert     i=1: [1,0]   -> 1/2 tie, no alert
    #   i=2: [1,0,1] -> 2/3 alert     i=3: [0,1,1] -> 2/3 alert
    #   i=4: [1,1,0] -> 2/3 alert     i=5: [1,0,0] -> 1/3 no alert
    flags = [1, 0, 1, 1, 0, 0]

    # Execute
    out = window_vote(flags, 3)

    # Assert
    assert out.astype(int).tolist() == [1, 0, 1, 1, 1, 0]


def test_ties_are_not_alerts_and_strict_majority_is() -> None:
    # Prepare
    flags = [1, 1, 0, 0, 1, 1, 1, 0]

    # Execute
    out = window_vote(flags, 4)

    # Assert
    #   i=0: 1/1 -> 1; i=1: 2/2 -> 1; i=2: 2/3 -> 1; i=3: [1,1,0,0] 2/4 tie -> 0
    #   i=4: [1,0,0,1] 2/4 -> 0; i=5: [0,0,1,1] 2/4 -> 0; i=6: [0,1,1,1] 3/4 -> 1; i=7: [1,1,1,0] 3/4 -> 1
    assert out.astype(int).tolist() == [1, 1, 1, 0, 0, 0, 1, 1]


def test_window_longer_than_input_votes_over_all_rows_seen() -> None:
    # Prepare
    flags = [0, 1, 1]

    # Execute
    out = window_vote(flags, 10)

    # Assert: 0/1, 1/2 (tie), 2/3
    assert out.astype(int).tolist() == [0, 0, 1]


def test_window_vote_agrees_with_a_plain_loop() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    flags = rng.random(500) < 0.4
    ws = 7

    # Execute
    out = window_vote(flags, ws)

    # Assert
    expected = [2 * flags[max(0, i - ws + 1) : i + 1].sum() > min(i + 1, ws) for i in range(flags.size)]
    assert out.tolist() == expected


def test_empty_input_and_invalid_window() -> None:
    # Prepare / Execute
    out = window_vote(np.zeros(0, dtype=bool), 5)

    # Assert
    assert out.shape == (0,)
    with pytest.raises(ValueError, match="ws must be >= 1"):
        window_vote([1, 0], 0)
