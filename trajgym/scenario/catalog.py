"""The built-in scenario packs, and resolving a scenario given by id or by path."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

from trajgym.errors import UnknownScenarioError

DEFAULT_SCENARIO = "refund_damaged_item"


def builtin_dir() -> Path:
    """Where the shipped scenarios are: inside the wheel, or the repository's ``scenarios/``."""
    packaged = Path(__file__).resolve().parent.parent / "_scenarios"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "scenarios"


def builtin_scenarios(domain: str | None = None) -> dict[str, Path]:
    """Built-in scenario id -> file, sorted by id. A file's stem is its scenario id."""
    root = builtin_dir()
    pattern = f"{domain}/*.yaml" if domain else "*/*.yaml"
    return {p.stem: p for p in sorted(root.glob(pattern), key=lambda p: p.stem)}


def resolve(ref: str | Path) -> Path:
    """A path to a scenario file, from a path or a built-in scenario id."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UnknownScenarioError(f"scenario file '{ref}' does not exist")
        return p
    known = builtin_scenarios()
    if str(ref) in known:
        return known[str(ref)]
    close = difflib.get_close_matches(str(ref), sorted(known), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownScenarioError(
        f"no scenario '{ref}': not a file and not a built-in id{hint} (see `trajgym list`)"
    )


def scenario_files(paths: list[str]) -> list[Path]:
    """Expand files, directories (recursively, *.yaml / *.yml) and built-in ids into files."""
    out: list[Path] = []
    for ref in paths:
        p = Path(ref)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            out.append(resolve(ref))
    return out


BUILTIN = "builtin:"
"""How a trajectory names a shipped scenario file: ``builtin:<domain>/<file>``, found wherever
trajgym is installed (so a file is scored from any working directory, on any machine)."""


def builtin_ref(path: str | Path) -> str | None:
    """``builtin:<domain>/<file>`` when ``path`` is a shipped scenario file (or, for a path that does
    not exist here, names one by its last two parts); else None."""
    root = builtin_dir().resolve()
    p = Path(path)
    if p.exists():
        try:
            rel = p.resolve().relative_to(root)
        except ValueError:
            return None
        return f"{BUILTIN}{rel.as_posix()}"
    tail = Path(*p.parts[-2:]) if len(p.parts) >= 2 else None
    if tail is not None and (root / tail).is_file():
        return f"{BUILTIN}{tail.as_posix()}"
    return None


@functools.lru_cache(maxsize=4096)
def scenario_ref(path: str | Path) -> str:
    """What a trajectory records as its ``scenario_path``: a shipped file's ``builtin:`` reference,
    else the file's absolute path."""
    return builtin_ref(path) or str(Path(path).resolve())


def resolve_ref(ref: str) -> Path:
    """The file a trajectory's ``scenario_path`` names (``builtin:`` references included); the path
    may not exist."""
    if ref.startswith(BUILTIN):
        return builtin_dir() / ref[len(BUILTIN):]
    return Path(ref)
