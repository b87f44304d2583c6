"""Variables: drawn from the seed, typed when a whole string, formatted inside text."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from helpers import EXAMPLE, example_data, scenario_from
from hypothesis import given, settings
from hypothesis import strategies as st

from trajgym.scenario import variables as tv
from trajgym.scenario.schema import VariableSpec
from trajgym.seeding import Draws, rng, stable_seed
from trajgym.world.loader import load


def test_fill_keeps_types_and_formats_in_text() -> None:
    values = {"amount": 42.5, "item": {"name": "lamp", "sku": "L1"}, "n": 3}
    assert tv.fill("${amount}", values) == 42.5
    assert tv.fill("refund ${amount:.2f} for ${item.name}", values) == "refund 42.50 for lamp"
    assert tv.fill({"k": ["${n}", "x${n}"]}, values) == {"k": [3, "x3"]}
    with pytest.raises(tv.TemplateError, match="never defined"):
        tv.fill("${nope}", values)
    with pytest.raises(tv.TemplateError, match="no field 'colour'"):
        tv.fill("${item.colour}", values)


def test_every_kind_draws_in_range() -> None:
    today = dt.date(2026, 3, 10)
    specs = {
        "c": VariableSpec(choice=["a", "b"]),
        "i": VariableSpec.model_validate({"int": [3, 5]}),
        "f": VariableSpec.model_validate({"float": [1.0, 2.0]}),
        "d": VariableSpec(date_ago=(1, 2)),
        "p": VariableSpec(pool="city"),
        "s": VariableSpec(pattern="AB-##?"),
        "v": VariableSpec(value={"x": 1}),
    }
    for seed in range(20):
        v = tv.draw(specs, today, rng(seed))
        assert v["c"] in ("a", "b") and 3 <= v["i"] <= 5 and 1.0 <= v["f"] <= 2.0
        assert v["d"] in ("2026-03-09", "2026-03-08") and v["p"] in tv.POOLS["city"]
        assert v["s"][:3] == "AB-" and v["s"][3:5].isdigit() and v["s"][5].isupper()
        assert v["v"] == {"x": 1} and v["today"] == "2026-03-10"


def test_variables_are_drawn_as_numpys_generator_draws_them() -> None:
    # episodes draw from trajgym.seeding.Draws (faster); a seed keeps the variation it had with numpy's
    today = dt.date(2026, 3, 10)
    specs = {"i": VariableSpec.model_validate({"int": [-5, 10**12]}), "c": VariableSpec(choice=[1, 2, 3]),
             "f": VariableSpec.model_validate({"float": [19.0, 180.0]}), "one": VariableSpec(choice=["x"]),
             "d": VariableSpec(date_ahead=(0, 400)), "s": VariableSpec(pattern="??-####"),
             "p": VariableSpec(pool="first_name")}
    for seed in range(200):
        assert tv.draw(specs, today, Draws(seed, "variables")) == tv.draw(specs, today, rng(seed, "variables"))


def test_one_file_many_episodes_and_a_seed_is_a_variation() -> None:
    template = load(EXAMPLE)
    draws = {tuple(sorted(template.instantiate(s).variables.items())) for s in range(30)}
    assert len(draws) == 30
    a, b = template.instantiate(7), template.instantiate(7)
    assert a.variables == b.variables and a.state == b.state
    price = a.variables["price"]
    assert a.state.orders["O1"].items[0].price == price
    assert a.spec.reference[-1].say is not None and f"{price:.2f}" in a.spec.reference[-1].say


def test_stable_seed_is_stable() -> None:
    # pinned: a change here silently changes every job's episodes
    assert stable_seed("job", 0, "x", 1) == 4298315952340831526
    assert stable_seed("a", 1) != stable_seed("a", 2) and 0 <= stable_seed("z") < 2**63


def test_a_variable_per_episode_changes_the_world() -> None:
    data = example_data()
    data["variables"]["price"] = {"choice": [10.0, 20.0]}
    template = scenario_from(data)
    prices = {template.instantiate(s).state.orders["O1"].items[0].price for s in range(20)}
    assert prices == {10.0, 20.0}


values_st = st.fixed_dictionaries({"n": st.integers(-5, 5), "s": st.text(max_size=4) | st.just("a\ud800"),
                                   "m": st.fixed_dictionaries({"f": st.floats(allow_nan=False)}),
                                   "d": st.dates() | st.tuples(st.integers()) | st.just([1, {"k": None}])})
templates_st = st.sampled_from(["${n}", "${s}", "x ${n:03d} y ${s}", "${m.f}", "${m}", "${nope}", "${n:q}",
                                "${m.g}", "plain", "$ {n}", "${d}", "on ${d}"])
leaves_st = st.one_of(templates_st, st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=3),
                      st.dates(), st.just(2**70), st.just("\ue0000\ue001"), st.tuples(st.integers()))
nested_st = st.recursive(leaves_st, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(templates_st, st.text(max_size=3), st.integers(0, 3)), inner, max_size=3)),
    max_leaves=12)


def _filled(f: Any, values: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", f(values)
    except tv.TemplateError as exc:
        return "error", str(exc)


@given(obj=nested_st, values=values_st)
@settings(max_examples=300, deadline=None)
def test_compiled_fill_is_fill(obj: Any, values: dict[str, Any]) -> None:
    compiled = tv.compile_fill(obj)
    expected = _filled(lambda v: tv.fill(obj, v), values)
    got = _filled(compiled, values)
    assert repr(got) == repr(expected)  # repr: types and NaN too
    if got[0] == "ok" and isinstance(obj, dict | list):
        assert got[1] is not compiled(values)  # every call builds a new structure


@pytest.mark.parametrize("obj", [
    ["${d}", 1],  # a tuple value: JSON would give a list
    {"a": dt.date(2026, 1, 2), "${k}": 1},  # a filled-in key that lands on a kept value's key
    {"${k}": 1, "a": dt.date(2026, 1, 2)},
    {"x": ["\ue0000\ue001", "${n}"]},  # the text of a slot mark itself
    {"x": 'q"\ue0000\ue001', "y": "${n}"},  # ... after an escaped quote
    [dt.date(2026, 1, 2), {"p": 2**70, "q": ["${n}", "${s}"]}],  # kept values beside slots
    {"t": "${s} and ${n}", "u": "${s}"},  # a lone surrogate
])
def test_json_fill_gives_back_what_the_walk_gives(obj: Any) -> None:
    values = {"d": (1,), "k": "a", "n": 3, "s": "x\ud800"}
    assert repr(tv.compile_fill(obj)(values)) == repr(tv.fill(obj, values))
    values["s"] = "fine"
    assert repr(tv.compile_fill(obj)(values)) == repr(tv.fill(obj, values))


def test_every_shipped_scenario_is_filled_in_as_json() -> None:
    # the fast path (one JSON text with slots, then one decode) covers whole scenarios, YAML dates
    # included, and gives what the walk gives
    from trajgym.scenario import builtin_scenarios

    for path in builtin_scenarios().values():
        template = load(path)
        data = {k: v for k, v in template.located.data.items() if k != "variables"}
        spliced = tv._compile_splice(data)
        assert spliced is not None, path
        for seed in range(3):
            values = tv.draw(template.spec.variables, template.spec.today, Draws(seed, "variables"))
            assert repr(spliced(values)) == repr(tv.fill(data, values))


def test_compiled_fill_shares_no_container_between_instances() -> None:
    template = load(EXAMPLE)
    one, two = template.instantiate(1), template.instantiate(1)
    assert one.spec.model_dump() == two.spec.model_dump()
    one.spec.world["customers"]["C1"]["address"]["city"] = "Elsewhere"
    one.spec.customer.facts[0].keywords.append("mail")  # type: ignore[union-attr]
    assert two.spec.world["customers"]["C1"]["address"]["city"] != "Elsewhere"
    assert template.instantiate(1).spec.model_dump() == two.spec.model_dump()
