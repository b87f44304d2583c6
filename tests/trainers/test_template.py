"""The training chat template: renders every real conversation like the serving template, and its
assistant mask is exactly what the assistant said, <|im_end|> included."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("trl")

from trainers_helpers import SCENARIOS, ReplayChatAgent
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

from trajgym.errors import TrajgymError
from trajgym.rollout.episode import run_episode
from trajgym.rollout.runner import agents_for
from trajgym.scenario.catalog import resolve
from trajgym.serving.server import chat_template_path
from trajgym.trainers.records import learner_messages, learner_tools, raw_messages
from trajgym.trainers.template import (
    TemplateShapeError,
    add_generation_markers,
    apply_to,
    training_chat_template,
    training_chat_template_path,
)
from trajgym.trajectory.schema import Trajectory
from trajgym.world.loader import load

SERVING = chat_template_path().read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def conversations(oracle_episodes: dict[str, Trajectory]) -> list[tuple[list[dict[str, Any]], list[Any], Any]]:
    """(raw messages, tools, trajectory) of the support role: the oracle's episodes, and a model
    agent's (malformed first answer, a text tool call) on every scenario."""
    out = []
    for sid in SCENARIOS:
        template = load(resolve(sid))
        agents = agents_for(template, "oracle")
        agents["support"] = ReplayChatAgent()
        replayed = Trajectory.model_validate(run_episode(template, 7, agents))
        for traj in (oracle_episodes[sid], replayed):
            out.append((raw_messages(traj), learner_tools(traj), traj))
    return out


def _render(tokenizer: Any, template: str, messages: list[dict[str, Any]], tools: list[Any], **kw: Any) -> str:
    text: str = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                              chat_template=template, **kw)
    return text


def test_packaged_copy_is_the_derived_template() -> None:
    assert training_chat_template_path().read_text(encoding="utf-8") == training_chat_template(), (
        "trajgym/trainers/templates is stale: rewrite it with training_chat_template_path().write_text("
        "training_chat_template())")


def test_markers_enclose_the_answer_and_im_end_only() -> None:
    t = training_chat_template()
    assert has_generation_markers(t) and not has_generation_markers(SERVING)
    assert t.count("{%- generation -%}") == 1 and t.count("{%- endgeneration -%}") == 1
    assert "{{- '<|im_start|>assistant\\n' -}}{%- generation -%}" in t
    assert "{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}" in t


@pytest.mark.parametrize("change", [
    ("{{- '<|im_start|>assistant\\n' + content -}}", "{{- '<|im_start|>assistant\\n' ~ content -}}"),
    ("{%- elif message['role'] == 'tool' -%}", "{%- elif message.role == 'tool' -%}"),
    ("{{- '<|im_end|>\\n' -}}\n    {%- elif", "{{- '<|im_end|>' + '\\n' -}}\n    {%- elif"),
])
def test_a_changed_serving_template_fails_loudly(change: tuple[str, str]) -> None:
    assert change[0] in SERVING
    with pytest.raises(TemplateShapeError, match="changed shape"):
        add_generation_markers(SERVING.replace(change[0], change[1]))
    with pytest.raises(TemplateShapeError, match="already"):
        add_generation_markers(training_chat_template())


def test_renders_byte_for_byte_like_serving(tokenizer: Any, conversations: list[Any]) -> None:
    training = training_chat_template()
    for raw, tools, traj in conversations:
        normalized = learner_messages(traj)
        for prompt in (False, True):
            served = _render(tokenizer, SERVING, raw, tools, add_generation_prompt=prompt)
            assert _render(tokenizer, training, raw, tools, add_generation_prompt=prompt) == served
            assert _render(tokenizer, training, normalized, tools, add_generation_prompt=prompt) == served
            assert _render(tokenizer, SERVING, normalized, tools, add_generation_prompt=prompt) == served
        assert f'"name": "{tools[0]["function"]["name"]}"' in served


def _said(message: dict[str, Any]) -> str:
    """What an assistant message renders as after its header, as the serving template writes it."""
    content = message["content"] if isinstance(message["content"], str) else ""
    out = content
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function", call)
        args = fn["arguments"] if isinstance(fn["arguments"], str) else json.dumps(fn["arguments"])
        out += "\n" if content or k else ""
        out += f'<tool_call>\n{{"name": {json.dumps(fn["name"])}, "arguments": {args}}}\n</tool_call>'
    return out + "<|im_end|>"


def _masked_runs(ids: list[int], mask: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i, (tok, on) in enumerate(zip(ids, mask, strict=True)):
        if on:
            if i == 0 or not mask[i - 1]:
                runs.append([])
            runs[-1].append(tok)
    return runs


def test_assistant_mask_is_what_the_assistant_said(tokenizer: Any, conversations: list[Any]) -> None:
    training = training_chat_template()
    for raw, tools, traj in conversations:
        for messages in (raw, learner_messages(traj)):
            out = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True, chat_template=training)
            runs = _masked_runs(out["input_ids"], out["assistant_masks"])
            said = [_said(m) for m in messages if m["role"] == "assistant"]
            assert [tokenizer.decode(r) for r in runs] == said
            assert sum(out["assistant_masks"]) == sum(len(r) for r in runs)


def test_trl_accepts_it(tokenizer: Any) -> None:
    assert not is_chat_template_stop_token_trained(tokenizer, SERVING)
    assert is_chat_template_stop_token_trained(tokenizer, training_chat_template())
    trained = apply_to(tokenizer.__class__.from_pretrained(tokenizer.name_or_path))
    assert trained.chat_template == training_chat_template()
    assert has_generation_markers(trained.chat_template) and is_chat_template_stop_token_trained(trained)
    assert apply_to(trained).chat_template == training_chat_template()  # idempotent


def test_apply_to_refuses_another_models_template(tokenizer: Any) -> None:
    other = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    other.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TrajgymError, match="not trajgym's serving template"):
        apply_to(other)
    assert has_generation_markers(apply_to(other, check=False).chat_template)
