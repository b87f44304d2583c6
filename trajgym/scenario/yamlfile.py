"""YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` drops positions, so we compose the node tree with the safe loader, record the
line and column of every key and value by path, then construct plain Python data from the same
nodes. A problem found later (by pydantic or by a semantic check) is reported at the position of
the deepest path that exists in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from trajgym.errors import Problem, ScenarioError

Path_ = tuple[str | int, ...]


@dataclass
class LocatedData:
    """Data loaded from YAML with the 1-based (line, col) of each path's value and key."""

    filename: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the deepest enclosing path found in the file.

        Path segments that are not in the file (pydantic's union tags, for instance) are skipped.
        """
        best: Path_ = ()
        current: Path_ = ()
        for part in path:
            candidate = (*current, part)
            if candidate in self.values:
                current = candidate
                best = current
            elif isinstance(part, str) and part.isdigit() and (*current, int(part)) in self.values:
                current = (*current, int(part))
                best = current
        if key and best == tuple(path) and best in self.keys:
            return self.keys[best]
        return self.values.get(best, (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        line, col = self.position(path, key=key)
        return Problem(self.filename, line, col, message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(node: yaml.Node, path: Path_, out: LocatedData, problems: list[Problem]) -> None:
    out.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                line, col = _mark(key_node)
                problems.append(
                    Problem(out.filename, line, col,
                            f"duplicate key '{key}' (first defined at line {seen[key][0]}); "
                            "YAML keeps only the last one, so remove or rename one of them")
                )
            seen[key] = _mark(key_node)
            child = (*path, key)
            out.keys[child] = _mark(key_node)
            _walk(value_node, child, out, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out, problems)


def load_located(text: str, filename: str) -> LocatedData:
    """Parse one YAML document with ``yaml.SafeLoader``; raise ScenarioError on any problem."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(filename, 1, 1, "the file is empty; a scenario is a YAML mapping")])
        out = LocatedData(filename, None)
        problems: list[Problem] = []
        _walk(node, (), out, problems)
        out.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError([Problem(filename, line, col, f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(filename, 1, 1, f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ScenarioError([Problem(filename, 1, 1, "invalid YAML: nesting is too deep")]) from None
    finally:
        loader.dispose()
    if problems:
        raise ScenarioError(problems)
    return out
