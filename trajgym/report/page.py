"""The report page: one self-contained HTML document (inline CSS, JS and plots; nothing fetched).

Sections: key figures, scenarios (success, pass^k), scores, failure blame, fault recovery,
diversity, the episode table, and the transcripts the episode table links to (``#ep-<n>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from trajgym._version import __version__
from trajgym.report.aggregate import BLAME_KEYS, EpisodeRow, ReportData
from trajgym.report.markup import NA, Html, el, join
from trajgym.report.plots import Plot
from trajgym.report.transcript import anchor, fmt_score, transcript, verdict

SECTIONS = (("overview", "Overview"), ("scenarios", "Scenarios"), ("scores", "Scores"), ("blame", "Failure blame"),
            ("faults", "Fault recovery"), ("diversity", "Diversity"), ("episodes", "Episodes"),
            ("transcripts", "Transcripts"))


def _asset(name: str) -> Html:
    text = files("trajgym.report").joinpath("assets", name).read_text(encoding="utf-8")
    if "</" + "script" in text.lower() or "</" + "style" in text.lower():
        raise ValueError(f"asset {name} would close its own inline element")
    return Html(text)


def pct(value: float | None) -> str:
    return NA if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, text: str | None = None) -> Html:
    """A right-aligned cell that sorts by ``value`` (missing values sort last)."""
    return el("td", text if text is not None else fmt_score(value), class_="num",
              data_sort="" if value is None else f"{value:.6g}")


def _head(*names: str, num_from: int = 1) -> Html:
    return el("thead", el("tr", [el("th", n, class_="num" if i >= num_from else None) for i, n in enumerate(names)]))


def figure(plot: Plot | None, empty: str) -> Html:
    if plot is None:
        return el("p", empty, class_="muted")
    return el("figure", el("img", src=plot.data_uri, alt=plot.alt, class_="plot", id=f"plot-{plot.key}"),
              el("figcaption", plot.title))


def table(head: Html, rows: Sequence[Html], *, id_: str | None = None, sortable: bool = True) -> Html:
    return el("div", el("table", head, el("tbody", rows), id=id_, class_="sortable" if sortable else None),
              class_="table-wrap")


def _overview(data: ReportData) -> Html:
    k = max(data.pass_k, default=0)
    cards = [("episodes scored", f"{len(data.scored):,}"), ("excluded (infra errors)", f"{data.excluded:,}"),
             ("scenarios", str(len(data.scenarios))), ("success rate", pct(data.success_rate)),
             (f"pass^{k}" if k else "pass^k", pct(data.pass_k.get(k)) if k else NA),
             ("mean total score", fmt_score(data.mean_total))]
    return el("div", [el("div", el("div", v, class_="v"), el("div", name, class_="k"), class_="card")
                      for name, v in cards], class_="cards")


def _failures(blame: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {blame[key]}" for key in BLAME_KEYS if blame.get(key)) or NA


def _scenarios(data: ReportData, plots: Mapping[str, Plot]) -> Html:
    ks = sorted({k for s in data.scenarios for k in s.pass_k})
    rows = []
    for s in data.scenarios:
        chains = s.diversity.get("distinct_decision_chains")
        rows.append(el("tr",
                       el("td", el("a", s.scenario_id, href=f"#row-{s.first_row}"), data_sort=s.scenario_id),
                       el("td", s.domain), _num(s.variations, str(s.variations)), _num(s.episodes, str(s.episodes)),
                       _num(s.excluded, str(s.excluded)), _num(s.success_rate, pct(s.success_rate)),
                       [_num(s.pass_k.get(k), fmt_score(s.pass_k.get(k))) for k in ks],
                       _num(s.mean_total), el("td", _failures(s.blame)),
                       _num(chains, NA if chains is None else f"{chains:g}")))
    head = _head("scenario", "domain", "variations", "episodes", "excluded", "success", *(f"pass^{k}" for k in ks),
                 "mean total", "failures by blame", "distinct chains", num_from=2)
    note = None if all(len(s.pass_k) > 1 for s in data.scenarios if s.episodes) else el(
        "p", "Some variation was played only once: pass^k for k > 1 needs every variation played k times "
             "(trajgym rollout --trials K).",
        class_="note")
    return join([note, table(head, rows, id_="scenario-table"),
                 el("div", figure(plots.get("success"), "no scored episodes"),
                    figure(plots.get("pass-k"), "pass^k needs every variation of a scenario played at least twice"), class_="plots")])


def _scores(data: ReportData, plots: Mapping[str, Plot]) -> Html:
    rows = [el("tr", el("td", s.name), _num(s.applied, str(s.applied)), _num(s.not_applicable, str(s.not_applicable)),
               _num(s.mean), _num(s.median), _num(min(s.values, default=None)), _num(max(s.values, default=None)),
               _num(s.passed, str(s.passed)), _num(s.failed, str(s.failed)), _num(s.vetoes, str(s.vetoes)),
               _num(s.findings, str(s.findings)))
            for s in data.scorers]
    head = _head("scorer", "applied", "n/a", "mean", "median", "min", "max", "passed", "failed", "vetoes", "findings")
    shown = table(head, rows, id_="scorer-table") if rows else el("p", "no scores in these records", class_="muted")
    return join([shown, figure(plots.get("scores"), "no scores to plot")])


def _blame(data: ReportData, plots: Mapping[str, Plot]) -> Html:
    failures = sum(data.blame.values())
    rows = [el("tr", el("td", key), _num(n, str(n)), _num(n / failures if failures else None,
                                                            pct(n / failures if failures else None)))
            for key, n in data.blame.items()]
    failed = len(data.scored) - data.successes
    excluded = (f"; {data.excluded:,} more ended in infra_error, were excluded from scoring and count as "
                "infrastructure failures" if data.excluded else "")
    return join([el("p", f"{failed:,} of {len(data.scored):,} scored episodes failed{excluded}. Simulator-caused "
                         "failures can be dropped before training."),
                 table(_head("cause", "failures", "share"), rows, id_="blame-table"),
                 figure(plots.get("blame"), "no failures")])


def _faults(data: ReportData, plots: Mapping[str, Plot]) -> Html:
    if not data.faults:
        return el("p", "no faults were injected into these episodes", class_="muted")
    rows = [el("tr", el("td", f.kind), _num(f.injected, str(f.injected)), _num(f.episodes, str(f.episodes)),
               _num(f.successes, str(f.successes)), _num(f.success_rate, pct(f.success_rate)),
               _num(f.recovery, NA if f.recovery is None else f"{f.recovery:.2f} ({len(f.credits)})"))
            for f in data.faults]
    head = _head("fault kind", "injected", "episodes", "succeeded", "success rate", "recovery credit (n)")
    return join([el("p", "Success rate: the share of episodes with this fault that still succeeded. Recovery "
                         "credit: what the recovery scorer gave for faults of this kind, when it ran."),
                 table(head, rows, id_="fault-table"), figure(plots.get("faults"), "")])


def _diversity(data: ReportData, plots: Mapping[str, Plot]) -> Html:
    names = list(data.diversity)
    if not names:
        return el("p", "no scored episodes", class_="muted")
    rows = [el("tr", el("td", el("b", "all scenarios")), [_num(data.diversity.get(n), _fig(data.diversity.get(n)))
                                                          for n in names])]
    rows += [el("tr", el("td", s.scenario_id), [_num(s.diversity.get(n), _fig(s.diversity.get(n))) for n in names])
             for s in data.scenarios if s.diversity]
    return join([el("p", "Decision chain: the agent's actions in order (tool names, messages), without arguments "
                         "or wording. Entropies in bits over action n-grams."),
                 table(_head("", *(n.replace("_", " ") for n in names)), rows, id_="diversity-table"),
                 figure(plots.get("lengths"), "")])


def _fig(value: float | None) -> str:
    return NA if value is None else f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


def _episode_row(row: EpisodeRow, linked: bool) -> Html:
    t, r = row.trajectory, row.record
    support = next((a.name for a in t.agents if a.role == "support"), NA)
    episode = (el("a", t.episode_id, href=f"#{anchor(row)}", class_="ep-link") if linked
               else el("span", t.episode_id, title="transcript not embedded (see --max-transcripts)"))
    return el("tr",
              _num(row.index, str(row.index)), el("td", episode), el("td", t.scenario_id), _num(t.seed, str(t.seed)),
              _num(t.trial, str(t.trial)), el("td", support),
              el("td", verdict(row.success), data_sort="" if row.success is None else str(int(row.success))),
              _num(r.total), _num(r.rank, NA if r.rank is None else f"{r.rank}/{r.group_size}"),
              el("td", r.blame or r.excluded or ""), _num(row.turns, str(row.turns)),
              _num(row.tool_calls, str(row.tool_calls)), _num(len(t.faults), str(len(t.faults))),
              el("td", t.termination), el("td", r.source, class_="muted"), id=f"row-{row.index}")


def _episodes(data: ReportData, embedded: int) -> Html:
    rows = [_episode_row(row, row.index < embedded) for row in data.rows]
    left_out = len(data.rows) - embedded
    note = (el("p", f"{left_out:,} of {len(data.rows):,} transcripts were left out to keep the page light "
                    f"(trajgym report --max-transcripts N); their rows have no link.", class_="note", id="left-out")
            if left_out else None)
    head = _head("#", "episode", "scenario", "seed", "trial", "support", "success", "total", "rank", "blame",
                 "turns", "tool calls", "faults", "ended", "source", num_from=99)
    return join([el("p", "Ordered by scenario, variation and rank; click a column to sort, type to filter. ",
                    el("span", str(len(rows)), id="episode-count"), " shown."),
                 el("input", type="search", id="episode-filter", placeholder="filter: scenario, agent, failure…",
                    aria_label="filter episodes"),
                 note, table(head, rows, id_="episode-table")])


def render_page(data: ReportData, plots: Mapping[str, Plot], *, title: str = "trajgym report",
                max_transcripts: int | None = None, extra: Sequence[tuple[str, str, Html]] = ()) -> str:
    """The whole HTML document. Transcripts of the first ``max_transcripts`` episodes of the
    episode table are embedded (all when None); the page says how many were left out."""
    embedded = len(data.rows) if max_transcripts is None else min(max_transcripts, len(data.rows))
    body = {
        "overview": _overview(data), "scenarios": _scenarios(data, plots), "scores": _scores(data, plots),
        "blame": _blame(data, plots), "faults": _faults(data, plots), "diversity": _diversity(data, plots),
        "episodes": _episodes(data, embedded),
        "transcripts": join([el("p", f"{embedded:,} of {len(data.rows):,} episodes; click one to open it.",
                                class_="muted"), [transcript(r) for r in data.rows[:embedded]]]),
    }
    sections = list(SECTIONS)
    for key, name, html in extra:  # after the overview: a loop's generations, say
        body[key] = html
        sections.insert(1, (key, name))
    sources = ", ".join(data.sources) or NA
    header = el("header", el("h1", title),
                el("p", f"{len(data.rows):,} episodes from {sources} · made by trajgym {__version__}"),
                el("nav", [el("a", name, href=f"#{key}") for key, name in sections]))
    main = el("main", [el("section", el("h2", name), body[key], id=key) for key, name in sections])
    head = el("head", el("meta", charset="utf-8"),
              el("meta", name="viewport", content="width=device-width, initial-scale=1"),
              el("title", title), el("style", _asset("report.css")))
    return "<!DOCTYPE html>\n" + el("html", head, el("body", header, main, el("script", _asset("report.js"))),
                                    lang="en") + "\n"


def agreement_section(records: Sequence[Any], labels: Any) -> Html:
    """Per scorer: on the episodes reviewers accepted or rejected, how often its verdict matched
    theirs, and Cohen's kappa (agreement beyond chance: near 0, the scorer says nothing a person
    would; near 1, it can stand in for them)."""
    from trajgym.trajectory.labels import agreement, open_labels

    store = open_labels(labels)
    try:
        verdicts = store.verdicts()
    finally:
        store.close()
    rows = [el("tr", el("td", a["scorer"]), _num(a["episodes"], str(a["episodes"])),
               _num(a["agreement"], pct(a["agreement"])), _num(a["kappa"], NA if a["kappa"] is None else f"{a['kappa']:.2f}"))
            for a in agreement(records, verdicts)]
    if not rows:
        return el("p", f"no accepted or rejected episode of these files in {labels}", class_="muted")
    return join([el("p", f"{len(verdicts)} episodes accepted or rejected by reviewers ({labels}). Agreement: the share "
                         "of them where the scorer's pass/fail matched the reviewer's accept/reject; Cohen's kappa: "
                         "the same beyond chance."),
                 table(_head("scorer", "episodes", "agreement", "Cohen's kappa"), rows, id_="agreement-table")])
