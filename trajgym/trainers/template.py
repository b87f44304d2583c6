"""The training chat template of the bundled model: the serving template with ``{% generation %}`` markers.

A loss on the assistant's tokens alone (TRL's ``assistant_only_loss``, transformers'
``return_assistant_tokens_mask``) needs a template that marks what the assistant generates. This one
is derived, at run time, from the template the model is served with
(:func:`trajgym.serving.server.chat_template_path`), so training and serving render every
conversation byte for byte alike. The markers enclose an assistant turn's content, its tool calls
and its closing ``<|im_end|>`` (so the model learns to stop), never the ``<|im_start|>assistant\\n``
header (the prompt gives it) nor the ``\\n`` after ``<|im_end|>`` (the next turn's prompt does).

The derivation is a checked textual rewrite of two spots of the serving template's assistant branch;
if that template changes shape, :func:`training_chat_template` fails naming what it could not find,
instead of marking the wrong tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trajgym.errors import TrajgymError
from trajgym.serving.server import chat_template_path

HEADER = r"{{- '<|im_start|>assistant\n' + content -}}"
"""The start of the serving template's assistant branch: the header and the content, in one output."""
HEADER_MARKED = r"{{- '<|im_start|>assistant\n' -}}{%- generation -%}{{- content -}}"
END = r"{{- '<|im_end|>\n' -}}"
"""The end of an assistant turn (the last such output in the assistant branch)."""
END_MARKED = r"{{- '<|im_end|>' -}}{%- endgeneration -%}{{- '\n' -}}"
BRANCH_END = "{%- elif message['role'] == 'tool' -%}"
"""What follows the assistant branch in the serving template."""

PACKAGED = "smollm2_tools_training.jinja"
"""The training template as package data (``trajgym/trainers/templates``), for tools that take a
template file (TRL's ``chat_template_path``); the same text as :func:`training_chat_template`."""


class TemplateShapeError(TrajgymError):
    """The serving chat template no longer has the shape the generation markers are placed on."""


def _once(template: str, needle: str, where: str, start: int = 0, end: int | None = None) -> int:
    hits = template.count(needle, start, len(template) if end is None else end)
    if hits != 1:
        raise TemplateShapeError(
            f"cannot place the {{% generation %}} markers: expected exactly one `{needle}` in {where} of the "
            f"serving chat template ({chat_template_path()}), found {hits}. The serving template changed shape: "
            "update the markers' anchors in trajgym/trainers/template.py to match it")
    return template.index(needle, start)


def add_generation_markers(serving: str) -> str:
    """``serving`` (the text of the serving template) with the generation markers placed; a
    :class:`TemplateShapeError` if it lacks the expected assistant branch or has markers already."""
    if "generation" in serving.replace("add_generation_prompt", ""):
        raise TemplateShapeError(f"the serving chat template ({chat_template_path()}) already mentions "
                                 "generation markers: use it as is, or update trajgym/trainers/template.py")
    head = _once(serving, HEADER, "the template")
    branch_end = _once(serving, BRANCH_END, "the template after the assistant header", head)
    end = _once(serving, END, "the assistant branch", head, branch_end)
    return (serving[:head] + HEADER_MARKED + serving[head + len(HEADER):end] + END_MARKED
            + serving[end + len(END):])


def training_chat_template() -> str:
    """The training chat template: the serving template, read now, with the generation markers."""
    return add_generation_markers(chat_template_path().read_text(encoding="utf-8"))


def training_chat_template_path() -> Path:
    """The packaged copy of :func:`training_chat_template` (a test keeps the two equal)."""
    return Path(__file__).with_name("templates") / PACKAGED


def apply_to(tokenizer: Any, *, check: bool = True) -> Any:
    """Give ``tokenizer`` the training chat template and return it. With ``check``, its template
    must be the serving template (or the training one already): another model's template would be
    replaced by one its model was never served with."""
    serving = chat_template_path().read_text(encoding="utf-8")
    training = add_generation_markers(serving)
    current = getattr(tokenizer, "chat_template", None)
    if check and current not in (serving, training):
        raise TrajgymError(
            "the tokenizer's chat template is not trajgym's serving template "
            f"({chat_template_path()}), so the training template would not render what the model is served "
            "with: use the bundled model's folder (trajgym.serving.convert_bundled_model()), or pass "
            "check=False to replace it anyway")
    tokenizer.chat_template = training
    return tokenizer
