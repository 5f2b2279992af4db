import pytest

from edad_core.schedules import SCHEDULES, alpha

T = 1000
# name: (alpha at step 0, T/2, T), by hand from docs/design.md decision 1
HAND = {
    "linear": (1.0, 0.5, 0.0),
    "linear_reverse": (0.0, 0.5, 1.0),
    "cosine": (1.0, 0.5, 0.0),
    "cosine_reverse": (0.0, 0.5, 1.0),
    "same_ratio": (0.5, 0.5, 0.5),
    "only_da": (0.0, 0.0, 0.0),
    "only_dt": (1.0, 1.0, 1.0),
}


def test_names():
    assert set(SCHEDULES) == set(HAND)


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_values_and_clamping(name):
    start, middle, end = HAND[name]
    assert alpha(name, 0, T) == pytest.approx(start, abs=1e-12)
    assert alpha(name, T // 2, T) == pytest.approx(middle, abs=1e-12)
    assert alpha(name, T, T) == pytest.approx(end, abs=1e-12)
    assert alpha(name, -5, T) == alpha(name, 0, T)
    assert alpha(name, T + 10, T) == alpha(name, T, T)


def test_quarter_points():
    # cos(pi/4) = sqrt(2)/2: cosine is above linear early on, i.e. distillation dominates longer
    assert alpha("linear", 1, 3) == pytest.approx(2 / 3)
    assert alpha("cosine", T // 4, T) == pytest.approx(0.5 * (1 + 2**0.5 / 2))
    assert alpha("cosine_reverse", T // 4, T) == pytest.approx(1 - 0.5 * (1 + 2**0.5 / 2))
    assert alpha("linear_reverse", 3 * T // 4, T) == pytest.approx(0.75)


@pytest.mark.parametrize("name,direction", [("linear", -1), ("cosine", -1), ("linear_reverse", 1),
                                            ("cosine_reverse", 1)])
def test_monotonic(name, direction):
    values = [alpha(name, step, 97) for step in range(98)]
    steps = [b - a for a, b in zip(values, values[1:])]
    assert all(direction * d > 0 for d in steps)
    assert all(0.0 <= v <= 1.0 for v in values)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown alpha schedule 'linr'; valid: linear, linear_reverse"):
        alpha("linr", 0, T)
    for total in (0, -3):
        with pytest.raises(ValueError, match="total_steps must be > 0"):
            alpha("linear", 0, total)
