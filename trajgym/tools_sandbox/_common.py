"""What the backends share: the host side of the workspace, capped output, what limit a run hit.

The workspace is a directory on the host that the sandbox sees as ``/workspace``. Files go in and
out through the host file system; every path is checked so that neither a request (``../x``,
``/etc/passwd``) nor a symlink the sandboxed code planted can make the host touch anything outside.
"""

from __future__ import annotations

import abc
import io
import os
import shutil
import signal as _signal
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from trajgym.tools_sandbox.base import LimitHit, Limits, RunResult, Sandbox, SandboxError, Snapshot

NOBODY = 65534

SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/workspace",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "USER": "sandbox",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",  # the same command prints the same output: trajectories stay reproducible
}

ETC_FILES = {
    "passwd": (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"nobody:x:{NOBODY}:{NOBODY}:nobody:/workspace:/bin/sh\n"
    ),
    "group": f"root:x:0:\nnogroup:x:{NOBODY}:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "hostname": "sandbox\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}

# Messages by which a failed run shows that it ran into a limit that does not kill (a refused
# allocation, write or fork). Read only from failed runs, so a successful run that merely prints
# them is not flagged.
MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "out of memory", "std::bad_alloc",
                "memory exhausted")
FILE_SIZE_SIGNS = ("File too large", "File size limit exceeded")
CPU_SIGNS = ("CPU time limit exceeded",)
PROCESS_SIGNS = ("Resource temporarily unavailable", "Cannot fork", "can't fork",
                 "can't start new thread", "fork: retry")


def sandbox_ids(uid: int | None = None) -> tuple[int, int]:
    """The host uid/gid sandboxed code runs as: ``nobody`` when we are root, else ourselves.

    Never root: root on the host is exempt from RLIMIT_NPROC, and a non-root uid owns nothing.
    """
    if uid is not None:
        return uid, uid
    if os.geteuid() == 0:
        return NOBODY, NOBODY
    return os.getuid(), os.getgid()


def make_base_dir(prefix: str) -> Path:
    """A private temp dir that the sandbox uid may traverse (0711) but not list."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o711)
    return base


def write_etc(folder: Path, uid: int, gid: int) -> Path:
    """A minimal /etc (users, hosts) to bind read-only into the sandbox, instead of the host's;
    ``uid``/``gid``, the ids the code runs as, are the user ``sandbox`` unless they are nobody's."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    files = dict(ETC_FILES)
    if uid not in (0, NOBODY):
        files["passwd"] += f"sandbox:x:{uid}:{gid}:sandbox:/workspace:/bin/sh\n"
    if gid not in (0, NOBODY):
        files["group"] += f"sandbox:x:{gid}:\n"
    for name, text in files.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o644)
    return folder


class OutputCap:
    """Keeps the first ``cap`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = max(0, cap)
        self.buf = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += data[:room]
        self.dropped += max(0, len(data) - max(room, 0))

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        out = self.buf.decode("utf-8", errors="replace")
        if self.dropped:
            sep = "" if not out or out.endswith("\n") else "\n"
            out += f"{sep}[... output truncated: {self.dropped} bytes dropped ...]\n"
        return out


def split_status(code: int | None) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a return code: negative (Popen) or 128+N (a shell's) is a signal."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    if 128 < code < 128 + 65:
        return None, code - 128
    return code, None


def classify(*, exit_code: int | None, signal: int | None, stderr: str, timed_out: bool,
             flooded: bool, truncated: bool, limits: Limits, cpu_s: float | None = None,
             oom_killed: bool = False) -> list[LimitHit]:
    """Every limit a run met, the cause first: a resource limit, then the timeout, then output."""
    hits: list[LimitHit] = []
    failed = exit_code != 0 or signal is not None
    if signal == _signal.SIGXCPU or (signal == _signal.SIGKILL and cpu_s is not None
                                     and cpu_s >= limits.cpu_s - 0.05) or (
            failed and any(s in stderr for s in CPU_SIGNS)):
        hits.append("cpu")
    if oom_killed or (failed and any(s in stderr for s in MEMORY_SIGNS)):
        hits.append("memory")
    if signal == _signal.SIGXFSZ or (failed and any(s in stderr for s in FILE_SIZE_SIGNS)):
        hits.append("file_size")
    if failed and any(s in stderr for s in PROCESS_SIGNS):
        hits.append("processes")
    if timed_out:
        hits.append("timeout")
    if flooded or truncated:
        hits.append("output")
    return hits


def rlimit_argv(limits: Limits, *, nproc: bool = True, prlimit: str = "/usr/bin/prlimit") -> list[str]:
    """``prlimit`` options that set a run's rlimits, then exec the command (soft cpu < hard)."""
    mb = 1024 * 1024
    argv = [prlimit, f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
            f"--as={limits.memory_mb * mb}", f"--fsize={limits.file_size_mb * mb}", "--core=0"]
    if nproc:
        argv.append(f"--nproc={limits.processes}")
    return [*argv, "--"]


def command_argv(command: str | list[str]) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    if not command or not all(isinstance(a, str) for a in command):
        raise SandboxError(f"a command is a shell string or a non-empty list of strings, not {command!r}")
    return list(command)


def check_rel_path(path: str) -> PurePosixPath:
    """``path`` as a clean relative path inside the workspace; SandboxError if it could escape."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise SandboxError(f"bad workspace path {path!r}: give a non-empty relative path")
    p = PurePosixPath(path)
    if p.is_absolute():
        raise SandboxError(f"bad workspace path {path!r}: absolute paths are refused; give a path "
                           "relative to the workspace (e.g. 'src/main.py')")
    if ".." in p.parts:
        raise SandboxError(f"bad workspace path {path!r}: '..' is refused, paths stay inside the "
                           "workspace")
    if p == PurePosixPath("."):
        raise SandboxError(f"bad workspace path {path!r}: that is the workspace itself, not a file")
    return p


class HostWorkspace:
    """The workspace directory on the host, and safe access to it."""

    def __init__(self, root: Path, uid: int, gid: int) -> None:
        self.root = root
        self.uid, self.gid = uid, gid

    def _inside(self, target: Path, what: str) -> None:
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(target)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise SandboxError(f"{what!r} leads outside the workspace (through a symlink): refused")

    def _chown(self, target: Path) -> None:
        if os.geteuid() == 0 and (self.uid, self.gid) != (0, 0):
            os.chown(target, self.uid, self.gid, follow_symlinks=False)

    def put_file(self, path: str, data: bytes | str) -> None:
        rel = check_rel_path(path)
        raw = data.encode() if isinstance(data, str) else bytes(data)
        folder = self.root
        for part in rel.parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                raise SandboxError(f"cannot write {path!r}: {part!r} is not a folder of the workspace")
            if not folder.exists():
                folder.mkdir(mode=0o755)
                self._chown(folder)
        target = self.root / rel
        self._inside(target.parent, path)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise SandboxError(f"cannot write {path!r} in the workspace: {e.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        self._chown(target)

    def get_file(self, path: str) -> bytes:
        rel = check_rel_path(path)
        target = self.root / rel
        self._inside(target.parent, path)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise SandboxError(f"no file {path!r} in the workspace (see list_files())") from None
        except OSError as e:
            raise SandboxError(f"cannot read {path!r} from the workspace: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SandboxError(f"{path!r} is not a regular file")
            return f.read()

    def list_files(self) -> list[str]:
        out: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            rel = Path(folder).relative_to(self.root)
            out.extend(str(rel / name) for name in files)
            out.extend(str(rel / d) for d in dirs if (Path(folder) / d).is_symlink())
        return sorted(p.removeprefix("./") for p in out)

    def snapshot(self) -> Snapshot:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for entry in sorted(os.listdir(self.root)):
                tar.add(self.root / entry, arcname=entry, recursive=True)
        return Snapshot(data=buf.getvalue(), files=self.list_files())

    def clear(self) -> None:
        for entry in os.listdir(self.root):
            target = self.root / entry
            if target.is_dir() and not target.is_symlink():
                _make_removable(target)
                shutil.rmtree(target)
            else:
                target.unlink()

    def restore(self, snapshot: Snapshot) -> None:
        if not isinstance(snapshot, Snapshot):
            raise SandboxError(f"restore() takes a Snapshot from snapshot(), not {type(snapshot).__name__}")
        self.clear()
        try:
            with tarfile.open(fileobj=io.BytesIO(snapshot.data), mode="r:") as tar:
                tar.extractall(self.root, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise SandboxError(f"cannot restore the snapshot: {e}") from None
        self._chown_tree(self.root)

    def _chown_tree(self, top: Path) -> None:
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                self._chown(Path(folder) / name)
        self._chown(top)


def _make_removable(top: Path) -> None:
    """Give the owner write+exec on every folder (sandboxed code may have chmod'ed them 000)."""
    top.chmod(0o700)
    for folder, dirs, _ in os.walk(top):
        for d in dirs:
            p = Path(folder) / d
            if not p.is_symlink():
                p.chmod(0o700)


def remove_tree(path: Path) -> None:
    if path.exists():
        _make_removable(path)
        shutil.rmtree(path, ignore_errors=True)


def first_line(text: str | bytes, limit: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:limit]


def join_words(words: Iterable[str]) -> str:
    return ", ".join(words)


class HostWorkspaceSandbox(Sandbox):
    """A sandbox whose workspace is a host folder (both backends): files go through
    :class:`HostWorkspace`; a backend implements only ``_run``."""

    workspace: HostWorkspace
    closed: bool
    _lock: threading.Lock

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError("this sandbox is closed; open a new one with open_sandbox()")

    def put_file(self, path: str, data: bytes | str) -> None:
        self._check_open()
        self.workspace.put_file(path, data)

    def get_file(self, path: str) -> bytes:
        self._check_open()
        return self.workspace.get_file(path)

    def list_files(self) -> list[str]:
        self._check_open()
        return self.workspace.list_files()

    def snapshot(self) -> Snapshot:
        self._check_open()
        return self.workspace.snapshot()

    def restore(self, snapshot: Snapshot) -> None:
        self._check_open()
        self.workspace.restore(snapshot)

    def run(self, command: str | list[str], *, timeout_s: float | None = None,
            stdin: str | None = None) -> RunResult:
        self._check_open()
        argv = command_argv(command)
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise SandboxError(f"timeout_s must be positive, not {timeout}")
        with self._lock:
            return self._run(argv, timeout, stdin)

    @abc.abstractmethod
    def _run(self, argv: list[str], timeout: float, stdin: str | None) -> RunResult:
        """Run ``argv`` in the workspace, within the limits, for at most ``timeout`` seconds."""
