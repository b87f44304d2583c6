"""The LLM judge: transcripts, verdict parsing and the repair policy, failures of the server (against the
fake OpenAI server), and the real thing: the bundled SmolLM2 judging episodes on vLLM."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fake_openai import FakeOpenAI
from helpers import BUILTIN

from trajgym.agents import http_client
from trajgym.errors import InfraError
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scorers import ScorerError, ScoringContext, get_scorer
from trajgym.scorers.config import ScoringConfig, build_scorers
from trajgym.scorers.llm_judge import (
    DEFAULT_RUBRIC,
    JudgeVerdictError,
    LLMJudge,
    VerdictError,
    parse_verdict,
)
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.scorers.transcript import transcript, transcript_entries
from trajgym.trajectory.chat import chat_messages
from trajgym.trajectory.schema import Trajectory, ViolationRecord
from trajgym.trajectory.scored import iter_scored
from trajgym.trajectory.store import TrajectoryWriter
from trajgym.world.loader import load

log = logging.getLogger(__name__)
CTX = ScoringContext()


def play(scenario: str, agent: str = "oracle", seed: int = 0) -> Trajectory:
    template = load(BUILTIN[scenario])
    return Trajectory.model_validate(run_episode(template, seed, agents_for(template, agent)))


@pytest.fixture(scope="module")
def flaky() -> Trajectory:
    """The oracle on refund_service_flaky: two injected 503s on refund_order, then a retry that works."""
    return play("refund_service_flaky")


@pytest.fixture(scope="module")
def several() -> list[Trajectory]:
    return [play(s, a, seed) for s in ("refund_damaged_item", "refund_service_flaky", "cancel_shipped_order")
            for a in ("oracle", "random") for seed in (0, 1)]


def grade(body: dict[str, Any], scale: int = 5) -> int:
    """The fake judge's verdict: a function of the transcript, so a mixed-up answer shows."""
    return 1 + len(re.findall(r"\[turn \d+\]", body["messages"][1]["content"])) % scale


@dataclass
class JudgeServer(FakeOpenAI):
    """The fake server as a judge: ``answers`` (content, finish_reason) are given one per request, then
    a well-formed verdict from :func:`grade`. Counts the requests in flight at once."""

    answers: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0

    async def _chat(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._chat(request)
        finally:
            self.in_flight -= 1

    def reply(self, body: dict[str, Any], *, bad_tool_text: bool = False) -> dict[str, Any]:
        content, finish = self.answers.pop(0) if self.answers else (
            json.dumps({"reason": "graded", "score": grade(body)}), "stop")
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112}}


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    srv = JudgeServer().start()
    yield srv
    srv.stop()


def judge(srv: FakeOpenAI, **options: Any) -> LLMJudge:
    return LLMJudge(**{"base_url": srv.base_url, "model": "judge-model", "retries": 2, "backoff_s": 0.01,
                       "timeout_s": 5.0, **options})


def run(coro: Any) -> Any:
    async def go() -> Any:
        try:
            return await coro
        finally:
            from trajgym.agents.openai_agent import close_connections
            await close_connections()
    return asyncio.run(go())


async def judge_all(scorer: LLMJudge, trajs: list[Trajectory]) -> list[Any]:
    return list(await asyncio.gather(*(scorer.ascore(t, CTX) for t in trajs)))


# -- transcripts -----------------------------------------------------------------------------------


def test_transcript_shows_messages_tool_calls_faults_and_the_ending(flaky: Trajectory) -> None:
    text = transcript(flaky).text
    assert text.startswith("[turn 0] customer: Hi, my ")
    assert "support (agent): I'm sorry about that!" in text
    assert re.search(r"support \(agent\) calls verify_identity\(\{.*\"zip\".*\}\) -> ok: \{", text)
    failed = re.findall(r"calls refund_order\(.*\) -> error \(service_unavailable\): .*\n"
                        r"!! fault injected into call (\d) of refund_order: service_unavailable", text)
    assert failed == ["1", "2"]
    assert re.search(r"calls refund_order\(.*\) -> ok: .*\"status\": \"refunded\"", text)
    assert "customer calls end_conversation(" in text
    assert text.endswith("[end] the episode ended: customer_ended")


def test_transcript_marks_violations_and_malformed_actions(flaky: Trajectory) -> None:
    steps = [s.model_copy(deep=True) for s in flaky.steps]
    refund = next(s for s in steps if s.tool_calls and s.tool_calls[0].name == "refund_order")
    refund.tool_calls[0].violations.append(ViolationRecord(turn=refund.turn, role="support", tool="refund_order",
                                                           rule="identity_before_change", message="not verified"))
    steps[1] = steps[1].model_copy(update={"error": "not JSON", "action": "refund it!!", "message": None})
    text = transcript(flaky.model_copy(update={"steps": steps})).text
    assert "!! policy violation [identity_before_change]: not verified" in text
    assert "[turn 1] support (agent) sent a malformed action: refund it!!\n!! malformed action: not JSON" in text


def test_a_long_transcript_keeps_its_beginning_and_end(flaky: Trajectory) -> None:
    full = transcript(flaky)
    assert full.omitted == 0 and full.entries == len(transcript_entries(flaky))
    cut = transcript(flaky, max_chars=1200)
    assert cut.omitted > 0 and len(cut.text) <= 1200
    lines = cut.text.splitlines()
    assert lines[0].startswith("[turn 0] customer:") and lines[-1].startswith("[end]")
    assert f"[... {cut.omitted} events ({cut.omitted_chars} characters) left out here" in cut.text
    long_result = flaky.model_copy(deep=True)
    long_result.steps[5].tool_calls[0].content = {"blob": "x" * 5000}
    assert re.search(r"x{300,400}… \[\d+ more characters\]", transcript(long_result).text)


def test_chat_messages_alternate_and_hold_only_what_the_agent_saw(flaky: Trajectory) -> None:
    messages = chat_messages(flaky)
    assert messages[0]["role"] == "system" and "policy" in messages[0]["content"]
    roles = [m["role"] for m in messages[1:]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # consecutive agent steps merged
    agent = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    assert agent.count("[tool call] refund_order(") == 3 and "error (service_unavailable)" in agent
    assert "!!" not in json.dumps(messages)  # no harness notes: the reward model sees what the agent saw
    assert chat_messages(flaky, include_instructions=False)[0]["role"] == "user"


# -- verdicts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "score"), [
    ('{"reason": "fine", "score": 4}', 4),
    ('  {"score": 5.0, "reason": "x"}\n', 5),
    ('Here you go:\n```json\n{"reason": "meh", "score": 2}\n```', 2),
    ('My verdict is {"score": 1, "reason": "refunded twice"}. Thanks!', 1),
])
def test_verdicts_parse(text: str, score: int) -> None:
    assert parse_verdict(text, 5)["score"] == score


@pytest.mark.parametrize(("text", "why"), [
    ("five", "not a JSON object"),
    ('{"reason": "x"}', "'score' must be an integer from 1 to 5, got None"),
    ('{"score": true}', "must be an integer"),
    ('{"score": "4"}', "must be an integer"),
    ('{"score": 6}', "'score' must be from 1 to 5, got 6"),
    ('{"score": 0}', "got 0"),
    ('{"score": 3, "reason": 7}', "'reason' must be a string"),
    ('[3]', "not a JSON object"),
])
def test_malformed_verdicts_say_why(text: str, why: str) -> None:
    with pytest.raises(VerdictError, match=re.escape(why)):
        parse_verdict(text, 5)


def test_a_verdict_cut_off_says_so() -> None:
    with pytest.raises(VerdictError, match="cut off at max_tokens"):
        parse_verdict('{"reason": "the agent did wel', 5, cut_off=True)


# -- the judge against the fake server -------------------------------------------------------------


def test_judge_scores_through_the_openai_client(server: JudgeServer, flaky: Trajectory) -> None:
    server.answers = [('{"reason": "retried the refund and told the amount", "score": 4}', "stop")]
    result = run(judge(server).ascore(flaky, CTX))
    assert result.score == 0.75
    d = result.details
    assert (d["raw_score"], d["scale"], d["reason"], d["model"], d["repairs"]) == (
        4, 5, "retried the refund and told the amount", "judge-model", 0)
    assert d["verdict"] == {"reason": "retried the refund and told the amount", "score": 4}
    assert re.fullmatch(r"[0-9a-f]{16}", d["prompt_hash"]) and d["omitted_events"] == 0
    body = server.requests[0]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-model", 0.0, 512)
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert schema["required"] == ["reason", "score"] and schema["properties"]["reason"]["maxLength"] == 240
    system, user = body["messages"]
    assert DEFAULT_RUBRIC in system["content"] and '"score": <an integer from 1 to 5>' in system["content"]
    assert "Acme Outfitters support policy" in user["content"]  # the agent's instructions
    assert transcript(flaky).text in user["content"]


@pytest.mark.parametrize(("scale", "raw", "score"), [(3, 3, 1.0), (3, 1, 0.0), (3, 2, 0.5), (10, 4, 1 / 3)])
def test_verdicts_are_normalised_to_the_unit_interval(server: JudgeServer, flaky: Trajectory, scale: int,
                                                      raw: int, score: float) -> None:
    server.answers = [(json.dumps({"reason": "r", "score": raw}), "stop")]
    result = run(judge(server, scale=scale).ascore(flaky, CTX))
    assert result.score == pytest.approx(score) and result.details["raw_score"] == raw
    assert server.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["score"]["maximum"] == scale


def test_the_served_model_is_asked_for_when_none_is_given(server: JudgeServer, flaky: Trajectory) -> None:
    result = run(judge(server, model=None).ascore(flaky, CTX))
    assert result.details["model"] == "fake-model" and server.requests[0]["model"] == "fake-model"


def test_structured_output_modes(server: JudgeServer, flaky: Trajectory) -> None:
    run(judge(server, structured_output="json_object").ascore(flaky, CTX))
    run(judge(server, structured_output="none").ascore(flaky, CTX))
    assert server.requests[0]["response_format"] == {"type": "json_object"}
    assert "response_format" not in server.requests[1]


def test_a_malformed_verdict_is_asked_for_again(server: JudgeServer, flaky: Trajectory) -> None:
    server.answers = [("The agent was good.", "stop"), ('{"reason": "good", "score": 2}', "stop")]
    result = run(judge(server).ascore(flaky, CTX))
    assert result.score == 0.25 and result.details["repairs"] == 1
    assert result.details["usage"] == {"prompt_tokens": 200, "completion_tokens": 24}  # both answers
    retry = server.requests[1]["messages"]
    assert retry[:2] == server.requests[0]["messages"]
    assert retry[2] == {"role": "assistant", "content": "The agent was good."}
    assert retry[3]["role"] == "user" and "not a valid verdict: the answer is not a JSON object" in retry[3]["content"]


def test_a_judge_that_never_answers_in_shape_is_an_error(server: JudgeServer, flaky: Trajectory) -> None:
    server.answers = [('{"score": 9}', "stop"), ('{"reason": "it was fine, I would say', "length")]
    with pytest.raises(JudgeVerdictError) as err:
        run(judge(server, structured_output="none").ascore(flaky, CTX))
    message = str(err.value)
    assert flaky.episode_id in message and "in 2 answer(s)" in message and "cut off at max_tokens" in message
    assert "it was fine, I would say" in message and "structured_output: json_schema" in message
    server.answers = [("no", "stop")]
    with pytest.raises(JudgeVerdictError, match=r"in 1 answer\(s\)"):
        run(judge(server, repairs=0).ascore(flaky, CTX))
    assert len(server.requests) == 3


def test_a_server_that_stays_down_is_an_infra_error_not_a_score(server: JudgeServer, flaky: Trajectory) -> None:
    server.fail_after = 0  # every request: 503
    with pytest.raises(InfraError, match=r"failed 2 attempt\(s\); last error: HTTP 503"):
        run(judge(server).ascore(flaky, CTX))
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InfraError, match=r"cannot connect to http://127.0.0.1:\d+ \(ConnectionRefusedError"):
        run(judge(server, base_url=f"http://127.0.0.1:{port}/v1").ascore(flaky, CTX))


def test_a_rejected_request_says_what_to_change(server: JudgeServer, flaky: Trajectory) -> None:
    server.faults = ["400"]
    with pytest.raises(ScorerError, match=r"HTTP 400.*set structured_output: none"):
        run(judge(server).ascore(flaky, CTX))


def test_infra_error_episodes_are_not_judged(server: JudgeServer, flaky: Trajectory) -> None:
    broken = flaky.model_copy(update={"termination": "infra_error", "infra_error": "server down"})
    assert run(judge(server).ascore(broken, CTX)) is None
    assert server.requests == []


def test_concurrent_verdicts_share_one_pool_and_stay_with_their_episode(
        server: JudgeServer, several: list[Trajectory]) -> None:
    server.latency_s = 0.05
    scorer = judge(server, max_in_flight=3)

    async def go() -> tuple[list[Any], list[tuple[int, int]]]:
        results = await asyncio.gather(*(scorer.ascore(t, CTX) for t in several * 2))
        pools = http_client._pools[asyncio.get_running_loop()].values()
        return results, [(p.open, len(p.idle)) for p in pools]

    results, pools = run(go())
    assert pools == [(3, 3)]  # one pool; as many connections as requests in flight, kept alive
    assert len(server.requests) == len(several) * 2 and server.peak == 3  # the in-flight limit held
    expected = [1 + len(re.findall(r"\[turn \d+\]", transcript(t).text)) % 5 for t in several * 2]
    assert [r.details["raw_score"] for r in results] == expected


def test_options_are_checked(tmp_path: Path, flaky: Trajectory) -> None:
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Give 5 to an agent that refunds the exact amount.\n")
    from_file = LLMJudge(rubric_file=str(rubric))
    assert from_file.rubric == "Give 5 to an agent that refunds the exact amount."
    assert from_file.prompt_hash != LLMJudge().prompt_hash
    assert LLMJudge(rubric="Give 5 to an agent that refunds the exact amount.").prompt_hash == from_file.prompt_hash
    assert LLMJudge().config()["rubric"] is None  # the default rubric is not copied into every record
    bad: list[tuple[dict[str, Any], str]] = [
        ({"rubric": "x", "rubric_file": str(rubric)}, "not both"),
        ({"rubric_file": str(tmp_path / "missing.txt")}, "cannot read it"),
        ({"rubric": "  "}, "the rubric is empty"),
        ({"scale": 1}, "at least 2"),
        ({"structured_output": "grammar"}, "json_schema, json_object, none"),
        ({"max_tokens": 8}, "at least 32"),
    ]
    for options, message in bad:
        with pytest.raises(ScorerError, match=message):
            LLMJudge(**options)
    assert "api_key" not in LLMJudge(api_key="secret").config()
    config = ScoringConfig.model_validate({"scorers": {"llm_judge": {"options": {"temprature": 0}}},
                                           "success_from": "llm_judge"})
    with pytest.raises(ScorerError, match="has no option 'temprature'"):
        build_scorers(config)


def test_the_pipeline_runs_the_judge_from_a_config(server: JudgeServer, several: list[Trajectory],
                                                   tmp_path: Path) -> None:
    source = tmp_path / "runs.jsonl"
    with TrajectoryWriter(source, fsync=False) as writer:
        for trial, traj in enumerate(several):  # one work unit each (oracle and random share seeds)
            writer.write(traj.model_copy(update={"trial": trial}).model_dump(mode="json"))
    config = ScoringConfig.model_validate({"scorers": {"llm_judge": {"weight": 1, "options": {
        "base_url": server.base_url, "model": "judge-model", "retries": 2, "backoff_s": 0.01}}},
        "success_from": "llm_judge"})
    assert get_scorer("llm_judge") is LLMJudge
    out = tmp_path / "scored.jsonl"
    score_files([source], out, Scoring(config, build_scorers(config)), concurrency=4)
    scored = list(iter_scored(out))
    assert len(scored) == len(several)
    for rec in scored:
        result = rec.scores["llm_judge"]
        assert result is not None and rec.total == result.score
        assert result.details["raw_score"] == 1 + len(re.findall(r"\[turn \d+\]", transcript(rec.trajectory).text)) % 5
    assert scored[0].scoring["scorers"]["llm_judge"]["model"] == "judge-model"


# -- the real thing: the bundled SmolLM2 judging on vLLM -----------------------------------------


@pytest.mark.slow
def test_smollm2_judges_episodes_on_vllm(vllm_server: Any, several: list[Trajectory]) -> None:
    """One test function for the server (xdist would start one per worker otherwise); its parts in turn.

    The 135M model is no judge worth the name: this checks the plumbing, i.e. that vLLM's structured
    output makes even it answer a parseable verdict, first time, for every episode."""
    scorer = LLMJudge(base_url=vllm_server.base_url, max_tokens=256)
    episodes = several[::3]  # oracle and random, on three scenarios
    start = time.perf_counter()
    results = run(judge_all(scorer, episodes))
    seconds = time.perf_counter() - start
    log.warning("llm_judge on vLLM CPU (SmolLM2-135M): %d episodes in %.1f s, %.2f s/episode at %d in flight",
                len(episodes), seconds, seconds / len(episodes), len(episodes))
    for result in results:
        d = result.details
        assert d["repairs"] == 0  # structured output: the first answer is a verdict
        assert 1 <= d["raw_score"] <= 5 and result.score == (d["raw_score"] - 1) / 4
        assert d["model"] == vllm_server.served_model_name and isinstance(d["reason"], str)
        assert len(d["reason"]) <= scorer.reason_chars and d["usage"]["completion_tokens"] <= 256
    # the schema bounds the reason so that the JSON closes even with a tight token budget
    tight = LLMJudge(base_url=vllm_server.base_url, max_tokens=40, repairs=0)
    verdict = run(tight.ascore(episodes[0], CTX))
    assert verdict.details["repairs"] == 0 and len(verdict.details["reason"]) <= tight.reason_chars == 16
