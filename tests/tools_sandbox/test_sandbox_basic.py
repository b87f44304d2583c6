"""The Sandbox interface, against every backend: files, runs, stdin, snapshots, limits, errors."""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from trajgym.tools_sandbox import BACKENDS, Limits, Sandbox, SandboxError, open_sandbox

# -- files ------------------------------------------------------------------------------------


def test_put_get_list(sandbox: Sandbox) -> None:
    sandbox.put_file("a.txt", "hello")
    sandbox.put_file("src/pkg/mod.py", b"x = 1\n")
    sandbox.put_file("a.txt", "hello again")          # overwrite
    assert sandbox.get_file("a.txt") == b"hello again"
    assert sandbox.get_file("src/pkg/mod.py") == b"x = 1\n"
    assert sandbox.list_files() == ["a.txt", "src/pkg/mod.py"]


def test_missing_file(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match=r"no file 'nope\.txt'"):
        sandbox.get_file("nope.txt")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "", ".", "a/\0b", "src/.."])
def test_paths_escaping_the_workspace_are_refused(sandbox: Sandbox, bad: str) -> None:
    with pytest.raises(SandboxError, match="bad workspace path"):
        sandbox.put_file(bad, "x")
    with pytest.raises(SandboxError, match="bad workspace path"):
        sandbox.get_file(bad)


def test_symlinks_planted_inside_cannot_lead_the_host_out(sandbox: Sandbox) -> None:
    r = sandbox.run("ln -s /etc/passwd link && ln -s /etc dirlink && mkfifo fifo && echo ok")
    assert r.stdout == "ok\n", r
    with pytest.raises(SandboxError):
        sandbox.get_file("link")
    with pytest.raises(SandboxError):
        sandbox.get_file("dirlink/passwd")
    with pytest.raises(SandboxError):
        sandbox.put_file("dirlink/evil", "x")
    with pytest.raises(SandboxError, match="not a regular file"):
        sandbox.get_file("fifo")
    assert "link" in sandbox.list_files()


# -- runs -------------------------------------------------------------------------------------


def test_shell_command(sandbox: Sandbox) -> None:
    r = sandbox.run("echo out; echo err >&2; pwd; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n/workspace\n", "err\n")
    assert r.limit_hit is None and r.signal is None and not r.ok
    assert r.wall_s > 0


def test_argv_command_is_not_a_shell(sandbox: Sandbox) -> None:
    r = sandbox.run(["echo", "$HOME", "a;b"])
    assert r.ok and r.stdout == "$HOME a;b\n"


def test_files_go_both_ways(sandbox: Sandbox) -> None:
    sandbox.put_file("in/data.txt", "3 4\n")
    r = sandbox.run_python("a, b = map(int, open('in/data.txt').read().split())\n"
                           "open('out.txt', 'w').write(str(a * b))\nprint('done')")
    assert r.ok, r
    assert r.stdout == "done\n"
    assert sandbox.get_file("out.txt") == b"12"
    assert sandbox.list_files() == ["in/data.txt", "out.txt"]


def test_stdin(sandbox: Sandbox) -> None:
    r = sandbox.run(["python3", "-c", "import sys; print(sys.stdin.read().upper())"], stdin="abc")
    assert r.ok and r.stdout == "ABC\n"
    big = "x" * 300_000 + "\n"             # more than a pipe holds
    r = sandbox.run("wc -c", stdin=big)
    assert r.ok and r.stdout.strip() == str(len(big))
    r = sandbox.run("cat")                 # no stdin: EOF at once
    assert r.ok and r.stdout == ""


def test_stdin_ignored_by_the_command(sandbox: Sandbox) -> None:
    r = sandbox.run("echo fine", stdin="y" * 1_000_000)
    assert r.exit_code == 0 and r.stdout == "fine\n"


def test_environment_inside(sandbox: Sandbox) -> None:
    r = sandbox.run("echo $HOME; test -w /tmp && echo tmp-ok; python3 -c 'print(1+1)'")
    assert r.ok and r.stdout == "/workspace\ntmp-ok\n2\n"


def test_python_errors_are_reported(sandbox: Sandbox) -> None:
    r = sandbox.run_python("raise ValueError('boom')")
    assert r.exit_code == 1 and "ValueError: boom" in r.stderr and r.limit_hit is None


def test_snapshot_restore(sandbox: Sandbox) -> None:
    sandbox.put_file("keep.txt", "v1")
    sandbox.put_file("dir/nested.txt", "n")
    snap = sandbox.snapshot()
    assert snap.files == ["dir/nested.txt", "keep.txt"]
    sandbox.put_file("keep.txt", "v2")
    sandbox.run("rm -r dir && echo new > added.txt")
    sandbox.restore(snap)
    assert sandbox.list_files() == ["dir/nested.txt", "keep.txt"]
    assert sandbox.get_file("keep.txt") == b"v1"
    r = sandbox.run("cat keep.txt && echo more >> dir/nested.txt && cat dir/nested.txt")
    assert r.ok and r.stdout == "v1nmore\n", r     # restored files are writable inside


def test_output_is_truncated_with_a_marker(sandbox: Sandbox) -> None:
    r = sandbox.run("python3 -c \"print('a' * 10000)\"; echo tail >&2")
    assert r.exit_code == 0 and r.stdout_truncated and not r.stderr_truncated
    assert r.limit_hit == "output" and not r.ok
    assert r.stdout.startswith("a" * 4000)
    assert "[... output truncated: 6001 bytes dropped ...]" in r.stdout
    assert r.stderr == "tail\n"


def test_timeout(sandbox: Sandbox) -> None:
    # a timeout long enough for a loaded machine to start the sandbox and echo; the sleep far longer
    r = sandbox.run("echo started; sleep 120", timeout_s=5)
    assert r.timed_out and r.limit_hit == "timeout"
    assert r.exit_code is None and r.signal == 9
    assert r.stdout == "started\n"  # what was written before the kill is kept
    assert r.wall_s < 60  # killed, not waited for


def test_sandbox_usable_after_a_timeout(sandbox: Sandbox) -> None:
    sandbox.run("sleep 30", timeout_s=0.3)
    r = sandbox.run("echo alive")
    assert r.ok and r.stdout == "alive\n"


def test_bad_requests(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="timeout_s"):
        sandbox.run("true", timeout_s=0)
    with pytest.raises(SandboxError, match="non-empty list"):
        sandbox.run([])
    with pytest.raises(SandboxError, match="Snapshot"):
        sandbox.restore(b"not a snapshot")  # type: ignore[arg-type]


def test_closed_sandbox(sandbox: Sandbox) -> None:
    sandbox.close()
    sandbox.close()                                   # idempotent
    with pytest.raises(SandboxError, match="closed"):
        sandbox.run("true")
    with pytest.raises(SandboxError, match="closed"):
        sandbox.put_file("a", "b")


def test_context_manager_and_isolation_text(backend: str, sandbox_factory: Any) -> None:
    sb = sandbox_factory()
    with sb:
        assert sb.isolation
        assert sb.backend == ("docker" if backend == "docker" else "bwrap")
        assert sb.run("true").ok
    with pytest.raises(SandboxError):
        sb.run("true")


# -- the registry -----------------------------------------------------------------------------


def test_unknown_backend_suggests_the_close_name() -> None:
    with pytest.raises(SandboxError, match="did you mean 'bwrap'"):
        open_sandbox("bwarp")
    with pytest.raises(SandboxError, match="known backends: bwrap, docker"):
        open_sandbox("firecracker")


def test_registry_is_lazy_and_complete() -> None:
    assert set(BACKENDS) == {"bwrap", "docker"}
    for spec in BACKENDS.values():
        assert ":" in spec


def test_open_sandbox_default_is_bwrap() -> None:
    try:
        sb = open_sandbox(limits=Limits(timeout_s=3))
    except SandboxError as e:
        pytest.skip(f"no bwrap/unshare isolation here: {e}")
    with sb:
        assert sb.backend == "bwrap" and sb.limits.timeout_s == 3
        assert sb.run("echo hi").stdout == "hi\n"


def test_bwrap_falls_back_to_unshare(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from trajgym.tools_sandbox import bwrap

    real_which = shutil.which
    if real_which("unshare") is None:
        pytest.skip("no unshare here")
    monkeypatch.setattr(bwrap, "_PROBED", {})
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "bwrap" else real_which(name, *a, **k))
    try:
        sb = bwrap.BwrapSandbox(Limits(timeout_s=5))
    except SandboxError as e:
        pytest.skip(f"unshare cannot isolate here either: {e}")
    with sb:
        assert sb.mode == "unshare" and sb.isolation.startswith("unshare")
        r = sb.run("echo hi > f && cat f")
        assert r.ok and r.stdout == "hi\n"


def test_no_isolation_at_all_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from trajgym.tools_sandbox import bwrap

    monkeypatch.setattr(bwrap, "_PROBED", {})
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(SandboxError, match="no sandbox isolation works") as info:
        bwrap.BwrapSandbox()
    assert "bwrap not installed" in str(info.value) and "unshare not installed" in str(info.value)


def test_close_frees_the_workspace(backend: str, sandbox: Sandbox) -> None:
    """bwrap: the temp dir is removed; docker: emptied, the container goes back to the pool."""
    sb: Any = sandbox
    sandbox.put_file("a/b.txt", "x")
    r = sandbox.run("mkdir -p locked/deeper && touch locked/deeper/f && chmod 000 locked/deeper locked")
    assert r.ok, r
    folder = sb.workspace.root
    assert folder.exists()
    sandbox.close()
    if backend == "docker":
        assert list(folder.iterdir()) == []
    else:
        assert not folder.exists() and not sb._base.exists()


def test_missing_docker_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from trajgym.tools_sandbox import docker_backend

    real_import = builtins.__import__

    def no_docker(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "docker" or name.startswith("docker."):
            raise ImportError("No module named 'docker'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "docker", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_docker)
    with pytest.raises(SandboxError, match=r"pip install 'trajgym\[docker\]'"):
        docker_backend._docker()


def test_unreachable_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("docker")
    from trajgym.tools_sandbox import docker_backend

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(SandboxError) as info:
        open_sandbox("docker")
    msg = str(info.value)
    assert "Docker engine not reachable at unix:///nonexistent/docker.sock" in msg
    assert "dockerd --bridge=none --iptables=false --ip6tables=false" in msg
    assert "unix:///nonexistent/docker.sock" not in docker_backend._API


def test_bwrap_mode_is_checked() -> None:
    from trajgym.tools_sandbox.bwrap import BwrapSandbox

    with pytest.raises(SandboxError, match="unknown bwrap sandbox mode"):
        BwrapSandbox(mode="chroot")  # type: ignore[arg-type]


# -- the Docker pool --------------------------------------------------------------------------


def test_docker_pool_reuses_warm_containers(docker_engine: object, fast_limits: Limits) -> None:
    from trajgym.tools_sandbox.docker_backend import DockerSandbox, pool_status

    first = DockerSandbox(fast_limits)
    first.put_file("secret.txt", "from the first user")
    r = first.run("sleep 300 & echo secret > /tmp/secret; echo $!")
    assert r.ok
    container = first.box.id
    first.close()
    assert container in pool_status()["ids"]
    second = DockerSandbox(fast_limits)
    try:
        assert second.box.id == container               # the same warm container ...
        assert second.list_files() == []                # ... with an empty workspace
        assert second.run("ls -A /tmp").stdout == ""    # ... an empty /tmp
        r = second.run("ps -eo args | grep -c 'sleep 30[0]' || true")
        assert r.stdout.strip() == "0"                  # ... and nothing left running
    finally:
        second.close()


def test_limits_are_per_sandbox(sandbox_factory: Callable[..., Sandbox]) -> None:
    sb = sandbox_factory(replace(Limits(), output_bytes=10))
    r = sb.run("echo 0123456789abcdef")
    assert r.stdout.startswith("0123456789\n[... output truncated: 7 bytes dropped ...]")


def test_docker_containers_of_a_killed_process_are_swept(docker_engine: Any) -> None:
    import signal
    import subprocess
    from pathlib import Path

    from trajgym.tools_sandbox.docker_backend import LABEL, POOL

    code = ("from trajgym.tools_sandbox.docker_backend import DockerSandbox\n"
            "sb = DockerSandbox()\nprint(sb.box.id, sb.box.base, flush=True)\n"
            "import time\ntime.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    cid, base = child.stdout.readline().split()
    child.send_signal(signal.SIGKILL)                # no atexit, no cleanup
    child.wait()
    assert Path(base).exists()
    POOL._sweep_orphans(docker_engine)
    left = [c["Id"] for c in docker_engine.containers(all=True, filters={"label": LABEL})]
    assert cid not in left
    assert not Path(base).exists()
