"""The report's plots: matplotlib figures drawn off-screen and embedded as SVG data URIs.

matplotlib is the optional ``report`` extra, imported only when a plot is drawn. Figures are made
with ``matplotlib.figure.Figure`` directly (no pyplot, no global backend switch) and saved without
a date and with a fixed id salt, so the same data gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trajgym.errors import ReportError
from trajgym.report.aggregate import BLAME_KEYS, EpisodeRow, ReportData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Okabe-Ito: tells apart for colour-blind readers too.
GOOD, BAD, GREY = "#009E73", "#D55E00", "#999999"
BLAME_COLORS = {"agent": "#D55E00", "simulator": "#CC79A7", "tool": "#E69F00", "infrastructure": "#0072B2",
                "unattributed": GREY}
DOMAIN_COLORS = ("#0072B2", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
WIDTH_IN = 6.0


@dataclass(frozen=True)
class Plot:
    """One embedded figure: ``key`` names it in the page (``plot-<key>``)."""

    key: str
    title: str
    alt: str
    data_uri: str


def _figure(height_in: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError("the report's plots need matplotlib, which is not installed: "
                          "pip install 'trajgym[report]' (the `report` extra)") from None
    return Figure(figsize=(WIDTH_IN, height_in), layout="constrained")


def _svg_uri(fig: Figure) -> str:
    from matplotlib import rc_context

    buf = io.BytesIO()
    with rc_context({"svg.hashsalt": "trajgym-report", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rows_height(n: float) -> float:
    return max(2.2, 0.26 * n + 1.1)


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _legend(fig: Figure, handles: list[Any] | None = None) -> None:
    """A legend above the plot, where it hides no bar."""
    if handles is None:
        handles = fig.axes[0].get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(4, len(handles)), fontsize=7, frameon=False)


def success_by_scenario(data: ReportData) -> Plot | None:
    """Success rate per scenario, coloured by domain, with successes/episodes at each bar."""
    rows = [s for s in data.scenarios if s.episodes]
    if not rows:
        return None
    fig = _figure(_rows_height(len(rows)))
    ax = fig.add_subplot()
    domains = sorted({s.domain for s in rows})
    colors = {d: DOMAIN_COLORS[i % len(DOMAIN_COLORS)] for i, d in enumerate(domains)}
    y = range(len(rows))
    ax.barh(y, [s.success_rate or 0.0 for s in rows], color=[colors[s.domain] for s in rows], height=0.7)
    for i, s in enumerate(rows):
        ax.text(min((s.success_rate or 0.0) + 0.01, 0.9), i, f"{s.successes}/{s.episodes}", va="center", fontsize=7)
    ax.set_yticks(list(y), [s.scenario_id for s in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate")
    from matplotlib.patches import Patch

    _legend(fig, handles=[Patch(color=colors[d], label=d) for d in domains])
    _style(ax)
    return Plot("success", "Success rate per scenario", "horizontal bars: the share of each scenario's "
                "episodes that succeeded", _svg_uri(fig))


def pass_k_curves(data: ReportData) -> Plot | None:
    """pass^k against k: one thin line per scenario, the mean over every variation in bold."""
    if max((len(s.pass_k) for s in data.scenarios), default=0) < 2:
        return None
    fig = _figure(3.2)
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    for s in data.scenarios:
        if len(s.pass_k) >= 2:
            ks = sorted(s.pass_k)
            ax.plot(ks, [s.pass_k[k] for k in ks], color=GREY, linewidth=0.8, alpha=0.6)
    ks = sorted(data.pass_k)
    ax.plot(ks, [data.pass_k[k] for k in ks], color="#0072B2", linewidth=2.5, marker="o", label="all variations")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k (trials that must all succeed)")
    ax.set_ylabel("pass^k")
    ax.plot([], [], color=GREY, linewidth=0.8, label="one scenario")
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return Plot("pass-k", "pass^k: how reliably a scenario is solved k times in a row", "lines of pass^k "
                "against k, one per scenario and their mean", _svg_uri(fig))


def score_histograms(data: ReportData) -> Plot | None:
    """A histogram per scorer (and of the combined total), successes and failures stacked."""
    series: list[tuple[str, list[float], list[float]]] = []
    scored = data.scored
    totals = [(r.record.total, r.success) for r in scored if r.record.total is not None]
    if totals:
        series.append(("total", [t for t, ok in totals if ok], [t for t, ok in totals if not ok]))
    for s in data.scorers:
        good: list[float] = []
        bad: list[float] = []
        for r in scored:
            result = r.record.scores.get(s.name)
            if result is not None:
                (good if r.success else bad).append(result.score)
        if good or bad:
            series.append((s.name, good, bad))
    if not series:
        return None
    cols = min(3, len(series))
    nrows = -(-len(series) // cols)
    fig = _figure(1.9 * nrows + 0.4)
    axes = fig.subplots(nrows, cols, squeeze=False)
    bins = [i / 10 for i in range(11)]
    for ax, (name, good, bad) in zip(axes.flat, series, strict=False):
        ax.hist([good, bad], bins=bins, stacked=True, color=[GOOD, BAD], label=["success", "failure"])
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        _style(ax)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, frameon=False)
    return Plot("scores", "Score distributions", "histograms of each scorer's scores, successes and failures "
                "stacked", _svg_uri(fig))


def blame_by_scenario(data: ReportData) -> Plot | None:
    """Failed episodes per scenario, stacked by who was blamed."""
    rows = [s for s in data.scenarios if sum(s.blame.values())]
    if not rows:
        return None
    fig = _figure(_rows_height(len(rows)))
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    left = [0] * len(rows)
    y = list(range(len(rows)))
    for key in BLAME_KEYS:
        counts = [s.blame.get(key, 0) for s in rows]
        if any(counts):
            ax.barh(y, counts, left=left, color=BLAME_COLORS[key], label=key, height=0.7)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_yticks(y, [s.scenario_id for s in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("failed episodes")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig)
    _style(ax)
    return Plot("blame", "Who caused the failures", "stacked bars of failed episodes per scenario by blame",
                _svg_uri(fig))


def fault_recovery(data: ReportData) -> Plot | None:
    """Per fault kind: the share of episodes that still succeeded, and the recovery credit."""
    rows = [f for f in data.faults if f.episodes]
    if not rows:
        return None
    fig = _figure(_rows_height(len(rows) * 1.4))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    has_recovery = any(f.recovery is not None for f in rows)
    h = 0.38 if has_recovery else 0.7
    ax.barh([i - (h / 2 if has_recovery else 0) for i in y], [f.success_rate or 0.0 for f in rows], height=h,
            color=GOOD, label="episodes that succeeded")
    if has_recovery:
        ax.barh([i + h / 2 for i in y], [f.recovery or 0.0 for f in rows], height=h, color="#0072B2",
                label="recovery credit (recovery scorer)")
    ax.set_yticks(y, [f"{f.kind} ({f.episodes} ep.)" for f in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    _legend(fig)
    _style(ax)
    return Plot("faults", "Fault recovery by fault kind", "bars per injected fault kind: the share of episodes "
                "that still succeeded and the recovery credit", _svg_uri(fig))


def _turns(rows: Sequence[EpisodeRow], ok: bool) -> list[int]:
    return [r.turns for r in rows if r.success is ok]


def episode_lengths(data: ReportData) -> Plot | None:
    """How long episodes ran (turns), successes and failures stacked."""
    scored = data.scored
    if not scored:
        return None
    fig = _figure(2.6)
    ax = fig.add_subplot()
    top = max(r.turns for r in scored)
    width = max(1, -(-top // 30))
    bins: list[Any] = list(range(0, top + width + 1, width))
    ax.hist([_turns(scored, True), _turns(scored, False)], bins=bins, stacked=True, color=[GOOD, BAD],
            label=["success", "failure"])
    ax.axvline(statistics.median(r.turns for r in scored), color="#333333", linewidth=1, linestyle="--",
               label="median")
    ax.set_xlabel("turns")
    ax.set_ylabel("episodes")
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return Plot("lengths", "Episode lengths", "histogram of episode lengths in turns, successes and failures "
                "stacked", _svg_uri(fig))


PLOTS = {"success": success_by_scenario, "pass-k": pass_k_curves, "scores": score_histograms,
         "blame": blame_by_scenario, "faults": fault_recovery, "lengths": episode_lengths}
"""Every plot of the report by key; each returns None when its data is empty."""


def draw_all(data: ReportData) -> dict[str, Plot]:
    """Each plot that has data to show, by key."""
    out = {}
    for key, draw in PLOTS.items():
        plot = draw(data)
        if plot is not None:
            out[key] = plot
    return out
