"""Helpers the env views share: loading a scenario for a domain, text rendering."""

from __future__ import annotations

from trajgym.envs.core import Episode
from trajgym.errors import TrajgymError
from trajgym.scenario.catalog import resolve
from trajgym.scenario.loader import ScenarioTemplate, load


def load_for_domain(scenario: str, domain: str | None) -> ScenarioTemplate:
    """Load ``scenario`` (id or path) and check it belongs to ``domain``."""
    template = load(resolve(scenario))
    if domain is not None and template.spec.domain != domain:
        raise TrajgymError(f"scenario '{template.id}' is a {template.spec.domain} scenario; this env "
                           f"runs {domain} scenarios")
    return template


def render_text(episode: Episode, last: int = 6) -> str:
    """The latest steps of an episode as plain text."""
    lines = [f"[{episode.spec.id} turn {episode.turn}]"]
    for step in episode.steps[-last:]:
        if step["message"]:
            lines.append(f"{step['role']}: {step['message']}")
        for tc in step["tool_calls"]:
            lines.append(f"{step['role']} -> {tc['name']}({tc['arguments']}) = {'ok' if tc['ok'] else tc['error_type']}")
        if step["error"]:
            lines.append(f"{step['role']}: (malformed) {step['error']}")
    if episode.done:
        lines.append(f"[ended: {episode.termination}]")
    return "\n".join(lines)
