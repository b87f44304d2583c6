"""The loop section of the report: ``trajgym report RUN_DIR`` on a ``trajgym loop`` run folder adds
per-generation curves (held-out success, reward, diversity, time) and a table of the generations with
their collapse warnings, above the report of every episode the policy played in the loop."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trajgym.errors import ReportError
from trajgym.report.markup import NA, Html, el, join
from trajgym.report.page import figure, table
from trajgym.report.plots import Plot, _figure, _style, _svg_uri
from trajgym.trainers.loop import GENERATION_FILE, LOOP_FILE, loop_row

CURVES = (
    ("held-out success", (("heldout_seeds_success", "held-out seeds"), ("heldout_scenarios_success", "held-out scenarios"),
                          ("reward", "mean reward of its own episodes"))),
    ("diversity", (("distinct_chain_share", "distinct decision chains (share)"),
                   ("embedding_spread", "embedding spread"), ("phrase_repetition", "phrase repetition"),
                   ("rare_scenario_success", "success on the rarest scenarios"))),
    ("seconds", (("seconds", "seconds per generation"),)),
)


def is_loop_run(path: str | Path) -> bool:
    return (Path(path) / LOOP_FILE).is_file()


def read_loop(path: str | Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """The finished generations' records of a loop run folder, and the scored files of the
    episodes the policy played (generation 1 on)."""
    root = Path(path)
    records, scored = [], []
    for folder in sorted(root.glob("gen-*")):
        record_file = folder / GENERATION_FILE
        if not record_file.is_file():
            continue
        try:
            records.append(json.loads(record_file.read_text()))
        except ValueError as exc:
            raise ReportError(f"{record_file} is not JSON ({exc}): the generation's record is broken") from None
        if (folder / "scored.jsonl").is_file():
            scored.append(folder / "scored.jsonl")
    if not records:
        raise ReportError(f"{root} holds a loop with no finished generation yet: nothing to report")
    return records, scored


def loop_curves(records: Sequence[dict[str, Any]]) -> Plot | None:
    rows = [loop_row(r) for r in records]
    panels = [(title, [(k, label) for k, label in series if any(k in r for r in rows)]) for title, series in CURVES]
    panels = [(t, s) for t, s in panels if s]
    if not panels:
        return None
    fig = _figure(2.0 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for key, label in series:
            points = [(r["step"], r[key]) for r in rows if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=7, frameon=False)
        _style(ax)
    axes[-1].set_xlabel("generation")
    axes[-1].set_xticks([r["step"] for r in rows])
    return Plot("loop", "The loop, generation by generation", "line plots per generation: held-out success, "
                "reward, diversity figures and time", _svg_uri(fig))


def loop_section(records: Sequence[dict[str, Any]], root: str) -> Html:
    """The section: what the loop did per generation, its curves, and every collapse warning."""
    config: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        config = json.loads((Path(root) / LOOP_FILE).read_text())
    head = el("thead", el("tr", [el("th", h) for h in (
        "generation", "weights", "held-out seeds", "held-out scenarios", "played", "kept", "trained on", "reward",
        "distinct chains", "warnings", "seconds")]))
    rows = []
    for r in records:
        ev = r.get("eval") or {}

        def split(name: str, ev: dict[str, Any] = ev) -> str:
            s = ev.get(name) or {}
            return f"{s['successes']}/{s['episodes']}" if s.get("episodes") else NA

        data = r.get("data") or {}
        figures = r.get("collapse") or {}
        share = figures.get("distinct_chain_share")
        rows.append(el("tr", el("td", str(r["generation"])), el("td", str(r.get("weights_id") or NA)),
                       el("td", split("held-out seeds")), el("td", split("held-out scenario")),
                       el("td", str(r.get("played", NA))), el("td", str(r.get("kept", NA))),
                       el("td", f"{data['records']} ({data.get('anchor', 0)} oracle)" if data else NA),
                       el("td", f"{r['reward']:.3f}" if r.get("reward") is not None else NA),
                       el("td", f"{share:.0%}" if share is not None else NA),
                       el("td", str(len(r.get("warnings") or []))),
                       el("td", f"{sum((r.get('seconds') or {}).values()):.0f}")))
    warnings = [el("li", f"generation {r['generation']}: {w}") for r in records for w in r.get("warnings") or []]
    what = (f"data: {config.get('data', NA)}, {config.get('generations', NA)} generations of "
            f"{config.get('episodes_per_generation', NA)} episodes, training {(config.get('train') or {}).get('method', NA)}"
            if config else "")
    return join([
        figure(loop_curves(records), "no generation has figures to plot yet"),
        el("p", f"Generation 0 is the starting model; generation g played with generation g-1's policy, trained on "
                f"what was kept, and was evaluated on held-out variations. {what}."),
        table(head, rows, id_="loop-table"),
        el("div", el("h3", "Collapse warnings"), el("ul", warnings), class_="warnings") if warnings
        else el("p", "No collapse warning: no diversity, coverage or rare-scenario figure fell past its threshold.",
                class_="muted"),
    ])
