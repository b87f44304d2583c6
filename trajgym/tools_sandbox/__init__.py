"""Sandboxes for untrusted tool calls: one interface, a bubblewrap and a Docker backend.

    from trajgym.tools_sandbox import open_sandbox, Limits

    with open_sandbox("bwrap", Limits(timeout_s=5)) as sb:
        sb.put_file("main.py", "print(6 * 7)")
        result = sb.run("python3 main.py")      # RunResult(exit_code=0, stdout='42\\n', ...)

Backends load lazily (the Docker SDK is an optional extra: ``pip install 'trajgym[docker]'``).
"""

from __future__ import annotations

from typing import Any

from trajgym.registry import Unknown, lookup, resolve
from trajgym.tools_sandbox.base import Limits, RunResult, Sandbox, SandboxError, Snapshot

BACKENDS: dict[str, str] = {
    "bwrap": "trajgym.tools_sandbox.bwrap:BwrapSandbox",
    "docker": "trajgym.tools_sandbox.docker_backend:DockerSandbox",
}


def backend_class(name: str) -> type[Sandbox]:
    """The Sandbox class registered as ``name``; SandboxError naming the close ones if unknown."""
    entry = lookup(BACKENDS, name, what="sandbox backend", error=SandboxError, message=_unknown, cutoff=0.5)
    cls = resolve(entry)
    if not (isinstance(cls, type) and issubclass(cls, Sandbox)):
        raise SandboxError(f"backend {name!r} ({BACKENDS[name]}) is not a Sandbox class")
    return cls


def _unknown(u: Unknown) -> str:
    hint = f"did you mean {u.close!r}? " if u.close else ""
    return f"unknown sandbox backend {u.name!r}: {hint}known backends: {', '.join(u.known)}"


def open_sandbox(backend: str = "bwrap", limits: Limits | None = None, **options: Any) -> Sandbox:
    """A new sandbox of ``backend`` with ``limits``; extra options go to the backend's class."""
    return backend_class(backend)(limits, **options)


__all__ = ["BACKENDS", "Limits", "RunResult", "Sandbox", "SandboxError", "Snapshot",
           "backend_class", "open_sandbox"]
