"""Sandboxes for untrusted tool calls: one interface, a bubblewrap and a Docker backend."""

from trajgym.tools_sandbox.base import Limits, RunResult, Sandbox, SandboxError, Snapshot

__all__ = ["Limits", "RunResult", "Sandbox", "SandboxError", "Snapshot"]
