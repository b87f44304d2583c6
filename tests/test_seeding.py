"""Stable seeds: the same parts give the same seed in any process."""

from __future__ import annotations

import subprocess
import sys

from trajgym.seeding import seeds_after, stable_seed


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
