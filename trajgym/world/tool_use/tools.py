"""The agent's tools in a sandboxed workspace: files, shell, Python.

Each episode gets its own sandbox (:mod:`trajgym.tools_sandbox`), filled with the scenario's files.
When the episode ends, the scenario's check runs in the same sandbox and its result, with the
workspace's final files, is written into the state for the goal to test.
"""

from __future__ import annotations

import os
from typing import Any

from trajgym.errors import ToolCallError
from trajgym.tools_sandbox import Limits, RunResult, Sandbox, SandboxError, open_sandbox
from trajgym.world.tool_use.models import CheckResult, ToolUseState
from trajgym.world.tools import ToolKit, tool

MAX_READ = 20_000
BACKEND_ENV = "TRAJGYM_SANDBOX_BACKEND"


def _run_view(result: RunResult) -> dict[str, Any]:
    # no wall time here: tool results are part of the (deterministic) trajectory
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
            "limit_hit": result.limit_hit}


class ToolUseTools(ToolKit):
    """Files, shell and Python in the episode's sandbox."""

    state: ToolUseState

    def __init__(self, state: ToolUseState) -> None:
        super().__init__(state)
        self._sandbox: Sandbox | None = None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            spec = self.state.sandbox
            backend = os.environ.get(BACKEND_ENV, spec.backend)
            limits = Limits(timeout_s=spec.timeout_s, memory_mb=spec.memory_mb)
            sandbox = open_sandbox(backend, limits)
            try:
                for path, text in self.state.files.items():
                    sandbox.put_file(path, text)
            except BaseException:
                sandbox.close()
                raise
            self._sandbox = sandbox
        return self._sandbox

    def _guard(self, path: str) -> str:
        clean = path.strip()
        if not clean or clean.startswith("/") or ".." in clean.split("/"):
            raise ToolCallError(f"path '{path}' is outside the workspace; use a relative path",
                                error_type="permission_denied")
        return clean

    @tool("read")
    def list_files(self) -> list[str]:
        """List every file of the workspace (relative paths)."""
        return self.sandbox.list_files()

    @tool("read")
    def read_file(self, path: str) -> str:
        """Read a text file of the workspace (long files are cut).

        Args:
            path: Relative path, e.g. "data/input.csv".
        """
        try:
            data = self.sandbox.get_file(self._guard(path))
        except SandboxError as exc:
            raise ToolCallError(str(exc), error_type="not_found") from None
        text = data.decode("utf-8", errors="replace")
        return text if len(text) <= MAX_READ else text[:MAX_READ] + f"\n[... {len(text) - MAX_READ} more characters]"

    @tool("write")
    def write_file(self, path: str, content: str) -> dict[str, Any]:
        """Create or overwrite a text file in the workspace.

        Args:
            path: Relative path, e.g. "report.md".
            content: The whole new content.
        """
        self.sandbox.put_file(self._guard(path), content)
        return {"path": path, "bytes": len(content.encode())}

    @tool("write")
    def run_shell(self, command: str) -> dict[str, Any]:
        """Run a shell command (sh -c) in the workspace; no network. Returns exit code and output.

        Args:
            command: The command line, e.g. "wc -l data.csv".
        """
        return _run_view(self.sandbox.run(command))

    @tool("write")
    def run_python(self, code: str) -> dict[str, Any]:
        """Run a piece of Python 3 in the workspace; no network. Returns exit code and output.

        Args:
            code: The program.
        """
        return _run_view(self.sandbox.run_python(code))

    def finalize(self) -> None:
        check = self.state.check
        sandbox = self.sandbox
        if check.python is not None:
            result = sandbox.run_python(check.python, timeout_s=check.timeout_s)
        else:
            result = sandbox.run(check.shell or "false", timeout_s=check.timeout_s)
        output = (result.stdout + result.stderr)[-2000:]
        self.state.check_result = CheckResult(passed=result.ok, exit_code=result.exit_code, output=output)
        final: dict[str, str] = {}
        for path in sandbox.list_files():
            data = sandbox.get_file(path)
            final[path] = data[:MAX_READ].decode("utf-8", errors="replace")
        self.state.final_files = final

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
