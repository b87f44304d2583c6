"""YAML loading that remembers where every value came from.

PyYAML's ``safe_load`` drops positions, so we compose the node tree with the safe loader, record the
line and column of every key and value by path, then construct plain Python data from the same
nodes. A problem found later (by pydantic or by a semantic check) is reported at the position of
the deepest path that exists in the file.

Whatever the text, :func:`load_located` either returns data or raises
:class:`~trajgym.errors.ScenarioError` with problems located inside the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from trajgym.errors import Problem, ScenarioError

Path_ = tuple[Any, ...]

MAX_VALUES = 100_000
"""At most this many keys and values, counting every use of an alias (stops 'billion laughs')."""


@dataclass
class LocatedData:
    """Data loaded from YAML with the 1-based (line, col) of each path's value and key."""

    filename: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def _step(self, current: Path_, part: Any) -> Path_ | None:
        for candidate in _spellings(part):
            if (*current, candidate) in self.values:
                return (*current, candidate)
        return None

    def position(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path``; falls back to the deepest enclosing path found in the file.

        Path segments that are not in the file (pydantic's union tags, for instance) are skipped.
        """
        current: Path_ = ()
        matched = 0
        for part in path:
            found = self._step(current, part)
            if found is not None:
                current = found
                matched += 1
        if key and matched == len(path) and current in self.keys:
            return self.keys[current]
        return self.values.get(current, (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        line, col = self.position(path, key=key)
        return Problem(self.filename, line, col, message)


def _spellings(part: Any) -> list[Any]:
    """``part`` and the other ways the same key can appear in a path (``'2'`` for ``2``)."""
    out = [part]
    if isinstance(part, str) and part.isascii() and part.isdigit():  # '²'.isdigit() too, but int() refuses it
        out.append(int(part))
    elif isinstance(part, int) and not isinstance(part, bool):
        out.append(str(part))
    return out


class _Loader(yaml.SafeLoader):
    """The safe loader, with scalar constructors that report a bad value at its position."""


def _located(construct: Callable[[yaml.SafeLoader, yaml.Node], Any], what: str) -> Any:
    def wrapped(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except yaml.MarkedYAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            detail = f" ({exc})" if what == "date" and isinstance(exc, ValueError) and str(exc) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"'{node.value}' is not a valid {what}{detail}; quote it to keep it as text",
                node.start_mark) from None

    return wrapped


for _tag, _what in (("timestamp", "date"), ("int", "integer"), ("float", "number")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                            _located(getattr(yaml.SafeLoader, f"construct_yaml_{_tag}"), _what))


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


MERGE_TAG = "tag:yaml.org,2002:merge"
EMPTY = "the file is empty; a scenario is a YAML mapping that starts with schema_version: 1"


class _Walker:
    """Records the position of every key and value; finds duplicate keys and recursive aliases."""

    def __init__(self, loader: _Loader, out: LocatedData, text: str) -> None:
        self.loader = loader
        self.text = text
        self.out = out
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        """The node's position, inside the text (an empty value at the very end is past it)."""
        line, col, _ = _clamp(self.text, *_mark(node))
        return line, col

    def _problem(self, node: yaml.Node, message: str) -> Problem:
        line, col = self._mark(node)
        return Problem(self.out.filename, line, col, message)

    def _key(self, key_node: yaml.Node) -> Any:
        if key_node.tag == MERGE_TAG:
            return key_node.value
        if isinstance(key_node, yaml.ScalarNode):
            key = self.loader.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                return key_node.value
            return key
        return repr(key_node)

    def walk(self, node: yaml.Node, path: Path_) -> None:
        self.count += 1
        if self.count > MAX_VALUES:
            raise ScenarioError([self._problem(node, f"the file has more than {MAX_VALUES} values "
                                                     "(counting every use of an alias); a scenario is far smaller")])
        if id(node) in self.active:
            raise ScenarioError([self._problem(node, "an alias refers to a mapping or list that contains it; "
                                                     "a scenario cannot be recursive")])
        self.out.values[path] = self._mark(node)
        self.active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i))
        self.active.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: Path_) -> None:
        seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            if key in seen and key_node.tag != MERGE_TAG:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else key
                self.problems.append(self._problem(
                    key_node, f"duplicate key '{shown}' (first defined at line {seen[key][0]}); "
                              "YAML keeps only the last one, so remove or rename one of them"))
            seen[key] = self._mark(key_node)
            child = (*path, key)
            self.out.keys[child] = self._mark(key_node)
            self.walk(value_node, child)


def _clamp(text: str, line: int, col: int) -> tuple[int, int, str]:
    """A position inside ``text``; a mark past the last line becomes the end of the last line."""
    lines = text.splitlines() or [""]
    if line <= len(lines):
        return line, col, ""
    return len(lines), len(lines[-1]) + 1, " (at the end of the file)"


def _offset_position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1) + 1


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        context = exc.context or ""
        start = exc.context_mark
        if context and start is not None and mark is not None and start.line != mark.line:
            context += f" (started at line {start.line + 1}, column {start.column + 1})"
        what = " ".join(p for p in (context, exc.problem) if p)
    elif isinstance(exc, yaml.reader.ReaderError):
        line, col = _offset_position(text, exc.position)
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        what = f"control character #x{code:04x} is not allowed in YAML; is this a text file?"
    else:
        line, col, what = 1, 1, str(exc)
    line, col, where = _clamp(text, line, col)
    hint = _yaml_hint(what)
    return Problem(filename, line, col, f"invalid YAML: {what}{where}{hint}")


def _yaml_hint(what: str) -> str:
    if "'\\t'" in what:
        return "; indent with spaces, not tabs"
    if "expected ',' or ']'" in what or "expected ',' or '}'" in what:
        return "; is a closing bracket missing?"
    if "expected <block end>" in what or "mapping values are not allowed" in what:
        return "; check the indentation of this line and the one above"
    if "unhashable key" in what:
        return "; a key must be plain text, not a list or a mapping"
    return ""


def load_located(text: str, filename: str) -> LocatedData:
    """Parse one YAML document with a safe loader; raise ScenarioError on any problem."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(exc, text, filename)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(filename, 1, 1, EMPTY)])
        out = LocatedData(filename, None)
        walker = _Walker(loader, out, text)
        walker.walk(node, ())
        out.data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(exc, text, filename)]) from None
    except RecursionError:
        raise ScenarioError([Problem(filename, 1, 1, "invalid YAML: nesting is too deep")]) from None
    finally:
        loader.dispose()
    if walker.problems:
        raise ScenarioError(walker.problems)
    return out
