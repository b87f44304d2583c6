"""The default backend: every run in fresh Linux namespaces made by bubblewrap (or ``unshare``).

A run is ``bwrap [namespaces, mounts] -- prlimit [rlimits] -- sh -c COMMAND``, started as an
unprivileged host uid (``nobody`` when we are root, through ``setpriv``: root would be exempt from
RLIMIT_NPROC). The rlimits are set inside the new user namespace, so the process limit counts
only this run's processes. Inside, the code sees a read-only ``/usr``,
a private ``/tmp`` (tmpfs), a minimal ``/etc``, its own ``/proc`` and the writable ``/workspace``
(a host temp dir); no network (a fresh network namespace with only loopback), no capabilities.

bubblewrap is pid 1 of the run's pid namespace; when the command exits, bwrap exits and the kernel
kills whatever the command left in the background. The wall-clock timeout kills the outer bwrap,
whose death kills the inner one (``--die-with-parent``) and with it the namespace.

Without ``bwrap`` the backend falls back to ``unshare`` (util-linux) plus a small mount script
and ``chroot``; :attr:`BwrapSandbox.isolation` says which one a sandbox got.

Memory is bounded per process (RLIMIT_AS): without a cgroup, processes together may use up to
``processes x memory_mb``; the Docker backend bounds them together.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Literal

from trajgym.tools_sandbox._common import (
    SANDBOX_ENV,
    HostWorkspace,
    HostWorkspaceSandbox,
    OutputCap,
    classify,
    make_base_dir,
    remove_tree,
    rlimit_argv,
    sandbox_ids,
    split_status,
    write_etc,
)
from trajgym.tools_sandbox.base import Limits, RunResult, SandboxError

Mode = Literal["auto", "bwrap", "unshare"]

KILL_GRACE_S = 2.0   # after a kill, how long to wait for the pipes to close before giving up
CHUNK = 65536

# Runs inside ``unshare --user --map-root-user --mount --pid --fork ...`` as pid 1 of the new
# namespaces: builds the sandbox's root on a tmpfs, then runs the command chrooted with no
# capabilities and waits for it; when it returns, pid 1 exits and the namespace dies.
UNSHARE_SETUP = r"""
set -eu
R=$1 WS=$2 ETC=$3 TMPSZ=$4
shift 4
mount -t tmpfs -o size=1m,mode=755 none "$R"
cd "$R"
mkdir usr workspace proc dev tmp etc
mount --rbind /usr usr
mount -o remount,bind,ro usr
for d in bin sbin lib lib64 lib32 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$d"
  elif [ -d "/$d" ]; then mkdir "$d"; mount --rbind "/$d" "$d"; mount -o remount,bind,ro "$d"
  fi
done
mount --bind "$WS" workspace
mount --bind "$ETC" etc
mount -o remount,bind,ro etc
mount -t proc -o nosuid,nodev,noexec proc proc
mount -t tmpfs -o "size=$TMPSZ,mode=1777,nosuid,nodev" none tmp
for n in null zero full random urandom tty; do
  : > "dev/$n"; mount --bind "/dev/$n" "dev/$n"
done
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin; ln -s /proc/self/fd/1 dev/stdout; ln -s /proc/self/fd/2 dev/stderr
mount -o remount,ro,bind "$R"
hostname sandbox 2>/dev/null || true
CHROOT=$(PATH="/usr/sbin:/sbin:$PATH" command -v chroot)
set +e
"$CHROOT" "$R" /usr/bin/setpriv --no-new-privs --bounding-set=-all --inh-caps=-all \
  -- /bin/sh -c 'cd /workspace && exec "$@"' sh "$@"
exit $?
"""


def _bwrap_root_args(etc: Path) -> list[str]:
    """The read-only system view: /usr, the /bin, /lib... links (or binds), /etc, /proc, /dev."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return [*args, "--ro-bind", str(etc), "/etc", "--proc", "/proc", "--dev", "/dev"]


@functools.cache
def _bwrap_options(bwrap: str) -> frozenset[str]:
    """The options this bwrap knows (--disable-userns and --size are recent: 0.8, 0.5)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(w for w in text.split() if w.startswith("--"))


_PROBED: dict[str, str | None] = {}   # mode -> None if it works, else why not
_PROBE_LOCK = threading.Lock()


class BwrapSandbox(HostWorkspaceSandbox):
    """A workspace whose runs each get fresh namespaces (bubblewrap, or ``unshare`` without it)."""

    backend = "bwrap"

    def __init__(self, limits: Limits | None = None, *, mode: Mode = "auto",
                 uid: int | None = None) -> None:
        super().__init__(limits)
        self.uid, self.gid = sandbox_ids(uid)
        self._tools = {t: shutil.which(t) for t in ("bwrap", "unshare", "prlimit", "setpriv")}
        self._prefix: dict[str, list[str]] = {}
        self._base = make_base_dir("trajgym-sbx-")
        self._finalizer = weakref.finalize(self, remove_tree, self._base)
        try:
            ws = self._base / "workspace"
            ws.mkdir(mode=0o700)
            self._etc = write_etc(self._base / "etc", self.uid, self.gid)
            if os.geteuid() == 0:
                os.chown(ws, self.uid, self.gid)
            self.workspace = HostWorkspace(ws, self.uid, self.gid)
            self._chroot = self._base / "root"
            self._chroot.mkdir(mode=0o700)
            if os.geteuid() == 0:
                os.chown(self._chroot, self.uid, self.gid)
            self.mode: Literal["bwrap", "unshare"] = self._pick_mode(mode)
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self.closed = False
        self.isolation = self._describe()

    # -- set up --------------------------------------------------------------------------------

    def _describe(self) -> str:
        who = "root" if self.uid == 0 else f"uid {self.uid}"
        common = (f"runs as host {who} with no capabilities; rlimits cpu/as/fsize/nproc; "
                  "no network (own empty net namespace); read-only /usr, private /tmp and /etc; "
                  "background processes die with the run")
        if self.mode == "bwrap":
            return ("bubblewrap: new user, pid, net, ipc, uts, cgroup and mount namespaces; "
                    + common)
        return ("unshare (the fallback without bubblewrap): new user, pid, net, ipc, uts and mount "
                "namespaces, chroot into a tmpfs root; loopback down; " + common)

    def _pick_mode(self, mode: Mode) -> Literal["bwrap", "unshare"]:
        if mode not in ("auto", "bwrap", "unshare"):
            raise SandboxError(f"unknown bwrap sandbox mode {mode!r}: use 'auto', 'bwrap' or 'unshare'")
        tried: list[str] = []
        for m in (("bwrap", "unshare") if mode == "auto" else (mode,)):
            why = self._probe(m)
            if why is None:
                return m
            tried.append(f"{m}: {why}")
        raise SandboxError("no sandbox isolation works on this machine (" + "; ".join(tried) + "). "
                           "Install bubblewrap (apt-get install bubblewrap) and allow unprivileged "
                           "user namespaces (sysctl kernel.unprivileged_userns_clone=1), or use "
                           "the docker backend")

    def _probe(self, mode: Literal["bwrap", "unshare"]) -> str | None:
        key = f"{mode}:{self.uid}"
        with _PROBE_LOCK:
            if key not in _PROBED:
                _PROBED[key] = self._try(mode)
            return _PROBED[key]

    def _try(self, mode: Literal["bwrap", "unshare"]) -> str | None:
        tool = "bwrap" if mode == "bwrap" else "unshare"
        if shutil.which(tool) is None:
            return f"{tool} not installed"
        if shutil.which("prlimit") is None:
            return "prlimit (util-linux) not installed"
        try:
            r = subprocess.run(self._argv(["/bin/sh", "-c", "echo ok"], mode=mode),
                               check=False, capture_output=True, timeout=20,
                               **self._popen_kwargs())
        except (OSError, subprocess.SubprocessError) as e:
            return f"{tool} failed to start: {e}"
        if r.returncode != 0 or r.stdout.strip() != b"ok":
            err = r.stderr.decode(errors="replace").strip().splitlines()
            return f"{tool} failed (exit {r.returncode}): {err[-1] if err else 'no message'}"
        return None

    def _popen_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"env": dict(SANDBOX_ENV), "cwd": "/", "close_fds": True,
                              "start_new_session": True}
        if self._drop_privileges() and not self._tools["setpriv"]:
            # Popen switches uid itself: it must fork (not vfork) then, slower in big processes
            kw.update(user=self.uid, group=self.gid, extra_groups=[])
        return kw

    def _drop_privileges(self) -> bool:
        return os.geteuid() == 0 and self.uid != 0

    def _setpriv(self) -> list[str]:
        """Where we are root: exec as the sandbox uid through setpriv (lets Popen use vfork)."""
        if self._drop_privileges() and self._tools["setpriv"]:
            return [self._tools["setpriv"], f"--reuid={self.uid}", f"--regid={self.gid}",
                    "--clear-groups", "--"]
        return []

    def _argv(self, inner: list[str], *, mode: str | None = None) -> list[str]:
        """The full command line of a run of ``inner`` (the part before it is cached)."""
        mode = mode or self.mode
        if mode not in self._prefix:
            self._prefix[mode] = self._argv_uncached(["<inner>"], mode=mode)[:-1]
        return [*self._prefix[mode], *inner]

    def _argv_uncached(self, inner: list[str], *, mode: str) -> list[str]:
        limited = [*rlimit_argv(self.limits, prlimit=self._tools["prlimit"] or "prlimit"), *inner]
        tmp_bytes = self.limits.tmp_mb * 1024 * 1024
        if mode == "bwrap":
            has = _bwrap_options(self._tools["bwrap"] or "bwrap")
            return [*self._setpriv(), self._tools["bwrap"] or "bwrap",
                    "--unshare-all", "--unshare-user",
                    *(["--disable-userns"] if "--disable-userns" in has else []),
                    "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                    "--hostname", "sandbox", *_bwrap_root_args(self._etc),
                    *(["--size", str(tmp_bytes)] if "--size" in has else []), "--tmpfs", "/tmp",
                    "--bind", str(self.workspace.root), "/workspace", "--remount-ro", "/",
                    "--chdir", "/workspace", "--", *limited]
        return [*self._setpriv(), self._tools["unshare"] or "unshare",
                "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
                "--net", "--ipc", "--uts", "--propagation", "private",
                "/bin/sh", "-c", UNSHARE_SETUP, "sh", str(self._chroot), str(self.workspace.root),
                str(self._etc), str(tmp_bytes), *limited]

    # -- files ---------------------------------------------------------------------------------

    # -- runs ----------------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float, stdin: str | None) -> RunResult:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(self._argv(argv), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    **self._popen_kwargs())
        except OSError as e:
            raise SandboxError(f"cannot start the sandbox ({self.mode}): {e}") from None
        self._proc = proc
        out, err = OutputCap(self.limits.output_bytes), OutputCap(self.limits.output_bytes)
        try:
            timed_out, flooded, code, cpu_s = self._pump(
                proc, stdin.encode() if stdin is not None else b"", start + timeout, out, err)
        finally:
            _kill_group(proc.pid)
            if proc.returncode is None:   # only after an error in _pump
                proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            self._proc = None
        wall = time.monotonic() - start
        exit_code, sig = split_status(code)
        if timed_out or flooded:
            exit_code, sig = None, int(signal.SIGKILL)
        stderr = err.text()
        hits = classify(exit_code=exit_code, signal=sig, stderr=stderr, timed_out=timed_out,
                        flooded=flooded, truncated=out.truncated or err.truncated,
                        limits=self.limits, cpu_s=cpu_s)
        return RunResult(exit_code=exit_code, stdout=out.text(), stderr=stderr, wall_s=wall,
                         limit_hit=hits[0] if hits else None, stdout_truncated=out.truncated,
                         stderr_truncated=err.truncated, signal=sig, limits_hit=hits)

    def _pump(self, proc: subprocess.Popen[bytes], data: bytes, deadline: float,
              out: OutputCap, err: OutputCap) -> tuple[bool, bool, int | None, float | None]:
        """Feed stdin, drain stdout/stderr into the caps and wait for the exit; kill at the
        deadline or on an output flood. (timed_out, flooded, return code, CPU seconds used)."""
        assert proc.stdin and proc.stdout and proc.stderr
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        pending = memoryview(data)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        timed_out = flooded = False
        killed_at: float | None = None
        total = 0
        code: int | None = None
        cpu_s: float | None = None
        try:
            while sel.get_map():
                now = time.monotonic()
                if killed_at is None and now >= deadline:
                    timed_out, killed_at = True, now
                    _kill_group(proc.pid)
                if killed_at is not None and now - killed_at > KILL_GRACE_S:
                    break
                wait = deadline - now if killed_at is None else 0.1
                for key, _ in sel.select(timeout=max(0.0, wait)):
                    if key.data == "exit":
                        sel.unregister(pidfd)
                        _, status, usage = os.wait4(proc.pid, 0)
                        code = proc.returncode = os.waitstatus_to_exitcode(status)
                        cpu_s = usage.ru_utime + usage.ru_stime
                    elif key.data == "stdin":
                        try:
                            n = os.write(key.fd, pending[:CHUNK])
                            pending = pending[n:]
                        except BlockingIOError:
                            continue
                        except OSError:          # the command closed its stdin
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(key.fileobj)
                            proc.stdin.close()
                    else:
                        chunk = os.read(key.fd, CHUNK)
                        if not chunk:
                            sel.unregister(key.fileobj)
                            continue
                        key.data.feed(chunk)
                        total += len(chunk)
                        if total > self.limits.flood_bytes and killed_at is None:
                            flooded, killed_at = True, time.monotonic()
                            _kill_group(proc.pid)
        finally:
            sel.close()
            os.close(pidfd)
        if code is None:  # gave up waiting for the pipes after a kill; the process is dead
            code = proc.wait()
        return timed_out, flooded, code, cpu_s

    def close(self) -> None:
        if getattr(self, "closed", False):
            return
        self.closed = True
        proc = getattr(self, "_proc", None)
        if proc is not None:
            _kill_group(proc.pid)
        self._finalizer()


def _kill_group(pid: int) -> None:
    """Kill the outer bwrap/unshare and its process group; the namespace dies with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
