"""The report page as HTML text, and the command that writes it (the browser test opens it)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from scored_rollouts import scored_rollouts

from trajgym.cli.main import main
from trajgym.errors import ReportError
from trajgym.report import build_report, read_scored, summarize
from trajgym.report.markup import Html, el, esc, join
from trajgym.report.page import render_page
from trajgym.trajectory.scored import ScoredTrajectory


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[ScoredTrajectory]:
    return scored_rollouts(tmp_path_factory.mktemp("rollouts"), episodes=1, trials=2)


def _write(records: list[ScoredTrajectory], path: Path) -> Path:
    path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in records), encoding="utf-8")
    return path


def test_markup_escapes_text_and_attributes() -> None:
    assert el("p", "<b>&", title='a"b') == '<p title="a&quot;b">&lt;b&gt;&amp;</p>'
    assert el("td", Html("<i>x</i>"), None, ["<", 1]) == "<td><i>x</i>&lt;1</td>"
    assert el("img", src="data:,", alt="", data_sort=3, hidden=True, class_=None) == \
        '<img src="data:," alt="" data-sort="3" hidden>'
    assert join(["<a>", Html("<b>")], sep=", ") == "&lt;a&gt;, <b>"
    assert esc({"k": "<v>"}) == "{&#x27;k&#x27;: &#x27;&lt;v&gt;&#x27;}"
    with pytest.raises(ValueError, match="void"):
        el("br", "text")


def test_page_is_self_contained_escaped_and_deterministic(records: list[ScoredTrajectory]) -> None:
    poisoned = records[1].model_copy(deep=True)
    poisoned.trajectory.steps[0].message = "</script><script>alert(1)</script>"
    page, data = build_report([records[0], poisoned, *records[2:]], max_transcripts=None)
    assert page.startswith("<!DOCTYPE html>") and page.count("<script>") == 1
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # nothing is fetched: every src and href is a data URI or an anchor on the page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("#", "data:image/svg+xml;base64,")) for r in refs)
    ids = set(re.findall(r' id="([^"]+)"', page))
    assert {r[1:] for r in refs if r.startswith("#")} <= ids
    assert page.count('<details id="ep-') == len(data.rows) and "left-out" not in page
    assert build_report([records[0], poisoned, *records[2:]], max_transcripts=None)[0] == page


def test_transcripts_are_limited_and_the_page_says_how_many(records: list[ScoredTrajectory]) -> None:
    data = summarize(records)
    page = render_page(data, {}, max_transcripts=2)          # the page without its plots
    assert page.count('<details id="ep-') == 2 and page.count('class="ep-link"') == 2
    assert f"{len(data.rows) - 2} of {len(data.rows)} transcripts were left out" in page
    with pytest.raises(ReportError, match="no scored episodes"):
        build_report([])


def test_a_missing_matplotlib_names_the_extra(records: list[ScoredTrajectory],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # what an absent package looks like to import
    with pytest.raises(ReportError, match=r"pip install 'trajgym\[report\]'"):
        build_report(records)


def test_report_command(records: list[ScoredTrajectory], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scored = _write(records, tmp_path / "scored.jsonl")
    more = _write(records[:3], tmp_path / "more.jsonl")
    out = tmp_path / "out" / "report.html"
    assert main(["report", str(scored), str(more), "--out", str(out), "--max-transcripts", "5"]) == 0
    said = capsys.readouterr().out
    assert f"{len(records) + 3} episodes" in said and "5 transcripts" in said and "left out" in said
    page = out.read_text(encoding="utf-8")
    assert str(scored) in page and page.count('<details id="ep-') == 5
    assert [r.source for r in read_scored([scored])] == [r.source for r in records]


def test_report_command_errors(records: list[ScoredTrajectory], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps(records[2].trajectory.model_dump(mode="json")) + "\n", encoding="utf-8")
    broken = tmp_path / "broken.jsonl"
    line = records[2].model_dump(mode="json")
    line["total"] = "high"
    broken.write_text(json.dumps(records[1].model_dump(mode="json")) + "\n" + json.dumps(line) + "\n", encoding="utf-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    out = str(tmp_path / "r.html")
    cases = [(raw, f"{raw}:1: not a scored trajectory"), (broken, f"{broken}:2: not a scored trajectory"),
             (empty, "no scored episodes in"), (tmp_path / "nope.jsonl", "nope.jsonl: cannot open the scored trajectory file")]
    for path, message in cases:
        assert main(["report", str(path), "--out", out]) == 1
        err = capsys.readouterr().err
        assert message in " ".join(err.split()) and "Traceback" not in err
    assert not Path(out).exists()
