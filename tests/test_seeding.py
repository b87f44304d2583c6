"""Stable seeds: the same parts give the same seed in any process."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from trajgym.seeding import Draws, rng, seeds_after, stable_seed

# (low, high) of integers: one value (numpy draws nothing), small spans, spans that reject often
# (3 * 2**30 rejects a quarter of the 32-bit words; 3 * 2**62 a quarter of the 64-bit ones), the
# exact 32- and 64-bit spans, the 64-bit path just above 2**32, and negative bounds
SPANS = [(5, 6), (0, 2), (0, 10), (0, 26), (3, 1004), (0, 3 * 2**30), (-7, 2**32 - 7), (0, 2**32 + 1),
         (-(2**40), 2**40 + 7), (-(2**62), 2**62 + 2**61), (-(2**63), 2**63), (-(2**63), 2**63 - 1)]
UNIFORM = [(0.0, 1.0), (19.0, 180.0), (-3.5, 2.25), (4.0, 4.0), (-1e300, 1e300)]


def test_seeds_after_hashes_the_same_text_as_stable_seed() -> None:
    parts = ("sampling", None, 2**62 + 5, 0, "support")
    seed = seeds_after(*parts)
    for last in (0, 1, 17, "turn", None, 3.5, (1, 2)):
        assert seed(last) == stable_seed(*parts, last)
    assert seeds_after("x")(1) == stable_seed("x", 1) != stable_seed("x1")


def test_stable_seeds_do_not_depend_on_the_process() -> None:
    code = "from trajgym.seeding import stable_seed; print(stable_seed('scenario', 3, None, 'a'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123"}).stdout
    assert int(out) == stable_seed("scenario", 3, None, "a")


def test_draws_are_numpys_values_for_the_same_parts() -> None:
    for seed in range(300):
        ours, numpys = Draws(seed, "variables"), rng(seed, "variables")
        for k in range(40):  # interleaved, so the kept 32-bit half crosses other kinds of draw
            if k % 5 == 4:
                low_f, high_f = UNIFORM[(seed + k) % len(UNIFORM)]
                a, b = ours.uniform(low_f, high_f), float(numpys.uniform(low_f, high_f))
            else:
                low, high = SPANS[(seed * 7 + k) % len(SPANS)]
                a, b = ours.integers(low, high), int(numpys.integers(low, high))
            assert a == b and type(a) is type(b), (seed, k)
        assert ours.integers(10) == numpys.integers(10)  # the one-argument form


@pytest.mark.parametrize("args", [(0,), (-3,), (5, 5), (6, 5), (-(2**63) - 1, 0), (0, 2**63 + 1)])
def test_draws_refuse_what_numpy_refuses(args: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as theirs:
        rng(1).integers(*args)
    with pytest.raises(ValueError, match=str(theirs.value)):
        Draws(1).integers(*args)


def test_uniform_refuses_what_numpy_refuses() -> None:
    for low, high, error in [(0.0, math.inf, OverflowError), (-1e308, 1e308, OverflowError), (2.0, 1.0, ValueError)]:
        with pytest.raises(error):
            rng(1).uniform(low, high)
        with pytest.raises(error):
            Draws(1).uniform(low, high)
