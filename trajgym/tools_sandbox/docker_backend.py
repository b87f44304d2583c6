"""The Docker backend: runs are ``docker exec`` in warm, locked-down containers from a shared pool.

Every container: no network (``network_mode="none"``), a read-only root file system, no
capabilities, ``no-new-privileges``, a memory limit (swap included), a CPU quota, a pids limit,
an unprivileged user, a small tmpfs ``/tmp`` and the workspace, a host temp dir, bind-mounted
writable at ``/workspace``. Its image is built locally, once, by ``docker import`` of a tiny root
file system (folders, ``/bin`` -> ``usr/bin`` links, a minimal ``/etc``); the host's ``/usr`` is
bind-mounted read-only, so the container has the host's python3 and tools without a registry.
Its pid 1 is a small Python reaper, so orphans never pile up as zombies against the pids limit.

A run execs ``sh -c '"$@"; rc=$?; kill -9 -1; exit $rc' sh prlimit [rlimits] -- COMMAND``: the
rlimits bound the command, and when it returns everything else it started is killed. Past the
wall-clock timeout (or on an output flood) the host execs ``kill -9 -1`` in the container.

Containers are reused across runs and across sandboxes: closing a sandbox puts its container
back in the pool (``Pool.release``) after killing what runs and emptying its workspace and /tmp;
the pool removes every container it made at exit, and on first use the containers (and
workspaces) of earlier processes that died without cleaning up. A run that the memory cgroup
OOM-killed (several processes together over ``memory_mb``) is reported as ``"memory"``, from
the container's cgroup counters read on the host.

The engine must run on this machine (the workspace is a bind mount). Start one without touching
the host's firewall: ``dockerd --bridge=none --iptables=false --ip6tables=false``. The image is
the equivalent of::

    python -c "import sys; from trajgym.tools_sandbox.docker_backend import rootfs_tar; \
               sys.stdout.buffer.write(rootfs_tar())" \
      | docker import --change 'WORKDIR /workspace' - trajgym-sandbox:manual
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import os
import select
import signal
import socket
import struct
import tarfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgym.tools_sandbox._common import (
    ETC_FILES,
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
)
from trajgym.tools_sandbox.base import Limits, RunResult, SandboxError

IMAGE_REPO = "trajgym-sandbox"
LABEL = "trajgym.sandbox"
OWNER_LABEL = "trajgym.sandbox.owner"
MAX_IDLE = 4            # idle containers kept per configuration
KILL_GRACE_S = 3.0
CHUNK = 65536
DOCKERD_HINT = "start it with dockerd --bridge=none --iptables=false --ip6tables=false"

# pid 1 of every container: reaps orphans (as init must), exits on SIGTERM.
REAPER = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
while True:
    got = signal.sigtimedwait({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}, 5)
    if got is not None and got.si_signo != signal.SIGCHLD:
        os._exit(0)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
"""

# Runs the (rlimited) command, then kills whatever it left behind: kill(-1) spares pid 1 and
# the caller. The exit code of the command is the exit code of the exec.
WRAPPER = '"$@"; rc=$?; kill -9 -1 2>/dev/null; exit $rc'
KILL_ALL = ["/bin/sh", "-c", "kill -9 -1 2>/dev/null; exit 0"]
# Between two users of a container: nothing running, an empty /tmp (checked).
RESET = ["/bin/sh", "-c", "kill -9 -1 2>/dev/null; "
         "find /tmp -mindepth 1 -type d -exec chmod u+rwx {} + 2>/dev/null; "
         "find /tmp -mindepth 1 -delete 2>/dev/null; [ -z \"$(ls -A /tmp)\" ]"]


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise SandboxError("the docker backend needs the Docker SDK for Python: "
                           "pip install 'trajgym[docker]'  (or pip install 'docker>=7')") from None
    return docker


def docker_url() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


_API: dict[str, Any] = {}     # the shared client, by engine address
_API_LOCK = threading.Lock()


def api_client() -> Any:
    """The low-level Docker API client (shared), or SandboxError if the engine is not reachable."""
    with _API_LOCK:
        if docker_url() in _API:
            return _API[docker_url()]
        docker = _docker()
        try:
            client = docker.from_env(timeout=60)
            client.ping()
        except (docker.errors.DockerException, OSError) as e:
            raise SandboxError(f"the Docker engine not reachable at {docker_url()}: {DOCKERD_HINT} "
                               f"(the error was: {str(e)[:300]})") from None
        _API[docker_url()] = client.api
        return client.api


# -- the image ----------------------------------------------------------------------------------


def _root_links() -> tuple[dict[str, str], list[str]]:
    """The host's top-level /bin, /lib... : links to copy into the image, folders to bind."""
    links: dict[str, str] = {}
    binds: list[str] = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            links[name] = os.readlink(host)
        elif host.is_dir():
            binds.append(f"/{name}")
    return links, binds


def rootfs_tar() -> bytes:
    """The image's root file system, as a tar (deterministic, so its hash names the image)."""
    buf = io.BytesIO()
    links, binds = _root_links()

    def add(name: str, kind: bytes, mode: int, data: bytes = b"", target: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
        info.linkname = target
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in ("usr", "workspace", "tmp", "proc", "dev", "sys", "etc", *[b[1:] for b in binds]):
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        for name, target in sorted(links.items()):
            add(name, tarfile.SYMTYPE, 0o777, target=target)
        for name, text in sorted(ETC_FILES.items()):
            add(f"etc/{name}", tarfile.REGTYPE, 0o644, text.encode())
    return buf.getvalue()


_IMAGE_LOCK = threading.Lock()


def ensure_image(api: Any) -> str:
    """Build the sandbox image if it is not there yet (idempotent); its name."""
    data = rootfs_tar()
    name = f"{IMAGE_REPO}:{hashlib.sha256(data).hexdigest()[:12]}"
    docker = _docker()
    with _IMAGE_LOCK:
        try:
            api.inspect_image(name)
            return name
        except docker.errors.ImageNotFound:
            pass
        repo, tag = name.split(":")
        api.import_image_from_data(data, repository=repo, tag=tag,
                                   changes=['CMD ["/usr/bin/python3"]', "WORKDIR /workspace"])
        api.inspect_image(name)
        for image in api.images(name=IMAGE_REPO):      # older builds (unused ones go)
            for other in image.get("RepoTags") or []:
                if other != name:
                    with contextlib.suppress(Exception):
                        api.remove_image(other)
    return name


# -- the pool of warm containers ----------------------------------------------------------------


@dataclass
class Box:
    """One warm container and its workspace on the host."""

    id: str
    key: tuple[Any, ...]
    base: Path
    workspace: Path
    uid: int
    gid: int
    oom_kills: int = 0
    oom_file: Path | None = None   # the container's cgroup memory events, if the host shows them
    broken: bool = False


@dataclass
class Pool:
    """Warm containers by configuration, shared by every DockerSandbox of this process."""

    idle: dict[tuple[Any, ...], list[Box]] = field(default_factory=dict)
    boxes: dict[str, Box] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    swept: bool = False

    def acquire(self, api: Any, limits: Limits, cpus: float, uid: int | None) -> Box:
        image = ensure_image(api)
        ids = sandbox_ids(uid)
        key = (image, limits.memory_mb, limits.processes, limits.tmp_mb, cpus, ids)
        with self.lock:
            if not self.swept:
                self.swept = True
                self._sweep_orphans(api)
            stack = self.idle.get(key, [])
            if stack:
                return stack.pop()
        box = self._create(api, image, key, limits=limits, cpus=cpus, ids=ids)
        with self.lock:
            self.boxes[box.id] = box
        return box

    def release(self, api: Any, box: Box) -> None:
        """Back to the pool, reset (nothing running, an empty workspace), or removed."""
        if not box.broken:
            try:
                if _exec_quiet(api, box, RESET) != 0:
                    box.broken = True
                HostWorkspace(box.workspace, box.uid, box.gid).clear()
            except Exception:
                box.broken = True
        with self.lock:
            stack = self.idle.setdefault(box.key, [])
            if not box.broken and len(stack) < MAX_IDLE:
                stack.append(box)
                return
        self.discard(api, box)

    def discard(self, api: Any, box: Box) -> None:
        with self.lock:
            self.boxes.pop(box.id, None)
        with contextlib.suppress(Exception):
            api.remove_container(box.id, force=True, v=True)
        remove_tree(box.base)

    def shutdown(self) -> None:
        """Remove every container this pool made (at exit)."""
        with self.lock:
            boxes = list(self.boxes.values())
            self.boxes.clear()
            self.idle.clear()
        apis = list(_API.values())
        for box in boxes:
            for api in apis:
                with contextlib.suppress(Exception):
                    api.remove_container(box.id, force=True, v=True)
            remove_tree(box.base)

    def _create(self, api: Any, image: str, key: tuple[Any, ...], *, limits: Limits,
                cpus: float, ids: tuple[int, int]) -> Box:
        uid, gid = ids
        base = make_base_dir("trajgym-dock-")
        ws = base / "workspace"
        ws.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(ws, uid, gid)
        _, bound = _root_links()
        binds = {"/usr": {"bind": "/usr", "mode": "ro"},
                 str(ws): {"bind": "/workspace", "mode": "rw"},
                 **{d: {"bind": d, "mode": "ro"} for d in bound}}
        mem = f"{limits.memory_mb}m"
        host_config = api.create_host_config(
            binds=binds, network_mode="none", read_only=True,
            tmpfs={"/tmp": f"size={limits.tmp_mb}m,mode=1777,nosuid,nodev"},
            mem_limit=mem, memswap_limit=mem, nano_cpus=int(cpus * 1e9),
            pids_limit=limits.processes + 4, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], auto_remove=False)
        try:
            c = api.create_container(
                image, command=["/usr/bin/python3", "-I", "-S", "-c", REAPER],
                user=f"{uid}:{gid}", working_dir="/workspace", hostname="sandbox",
                environment=dict(SANDBOX_ENV), network_disabled=True, stop_signal="SIGKILL",
                labels={LABEL: "1", OWNER_LABEL: str(os.getpid())}, host_config=host_config)
            api.start(c["Id"])
        except Exception as e:
            remove_tree(base)
            raise SandboxError(f"cannot start a sandbox container from {image}: {e}") from None
        box = Box(id=c["Id"], key=key, base=base, workspace=ws, uid=uid, gid=gid)
        with contextlib.suppress(Exception):
            box.oom_file = _host_oom_file(int(api.inspect_container(box.id)["State"]["Pid"]))
            box.oom_kills = _oom_count(box.oom_file.read_text()) if box.oom_file else 0
        return box

    def _sweep_orphans(self, api: Any) -> None:
        """Remove sandbox containers left by processes that died without cleaning up."""
        try:
            found = api.containers(all=True, filters={"label": LABEL})
        except Exception:
            return
        for c in found:
            owner = str(c.get("Labels", {}).get(OWNER_LABEL, ""))
            if owner.isdigit() and int(owner) != os.getpid() and not _alive(int(owner)):
                for mount in c.get("Mounts") or []:
                    src = Path(str(mount.get("Source", "")))
                    if mount.get("Destination") == "/workspace" and \
                            src.parent.name.startswith("trajgym-dock-"):
                        remove_tree(src.parent)
                with contextlib.suppress(Exception):
                    api.remove_container(c["Id"], force=True, v=True)


def _host_oom_file(pid: int) -> Path | None:
    """The memory cgroup file that counts OOM kills of the container whose pid 1 is ``pid``
    (only where the engine runs on this host and /sys/fs/cgroup is visible)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.oom_control"
            if candidate.exists():
                return candidate
        if controllers == "":
            candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events"
            if candidate.exists():
                return candidate
    return None


def _oom_count(text: str) -> int:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "oom_kill" and parts[1].isdigit():
            return int(parts[1])
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


POOL = Pool()
atexit.register(POOL.shutdown)


def prewarm(n: int = 2, limits: Limits | None = None, cpus: float = 1.0) -> None:
    """Start ``n`` idle containers for ``limits`` now, so that the first sandboxes start warm."""
    api = api_client()
    boxes = [POOL.acquire(api, limits or Limits(), cpus, None) for _ in range(n)]
    for box in boxes:
        POOL.release(api, box)


# -- exec ----------------------------------------------------------------------------------------


def _raw_socket(api: Any, exec_id: str) -> tuple[Any, socket.socket, bytes]:
    """Start an exec attached: the SDK's handle (keep it alive), its socket, and what the HTTP
    reader had already buffered past the headers (the start of the stream)."""
    sock_io = api.exec_start(exec_id, socket=True)
    sock = getattr(sock_io, "_sock", sock_io)
    if not isinstance(sock, socket.socket):
        raise SandboxError(f"unsupported Docker connection ({docker_url()}): use a unix socket or tcp")
    early = b""
    resp = getattr(sock_io, "_response", None)
    fp = getattr(getattr(getattr(resp, "raw", None), "_fp", None), "fp", None)
    if fp is not None and hasattr(fp, "peek"):
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError, ValueError):
            early = fp.peek() or b""
            if early:
                fp.read(len(early))
    sock.setblocking(False)
    return sock_io, sock, early


def _frames(buf: bytearray) -> Iterator[tuple[int, bytes]]:
    """Complete multiplexed frames (stream, payload) at the front of ``buf``, consumed."""
    while len(buf) >= 8:
        stream, size = buf[0], struct.unpack(">I", buf[4:8])[0]
        if len(buf) < 8 + size:
            return
        payload = bytes(buf[8:8 + size])
        del buf[:8 + size]
        yield stream, payload


def _exec_quiet(api: Any, box: Box, argv: list[str]) -> int | None:
    ex = api.exec_create(box.id, argv, stdout=True, stderr=True, user=f"{box.uid}:{box.gid}")
    api.exec_start(ex["Id"])
    code = api.exec_inspect(ex["Id"]).get("ExitCode")
    return int(code) if code is not None else None


class DockerSandbox(HostWorkspaceSandbox):
    """A workspace in a warm container from the pool; runs are ``docker exec``."""

    backend = "docker"

    def __init__(self, limits: Limits | None = None, *, cpus: float = 1.0,
                 uid: int | None = None) -> None:
        super().__init__(limits)
        if cpus <= 0:
            raise SandboxError(f"cpus must be positive, not {cpus}")
        self.cpus = cpus
        self.closed = True
        self.api = api_client()
        self.box = POOL.acquire(self.api, self.limits, cpus, uid)
        self.closed = False
        self.workspace = HostWorkspace(self.box.workspace, self.box.uid, self.box.gid)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, POOL.release, self.api, self.box)
        self._finalizer.atexit = False      # at exit POOL.shutdown removes every container
        self.isolation = (
            f"docker container {self.box.id[:12]} (warm pool): no network, read-only root "
            f"file system, no capabilities, no-new-privileges, memory {self.limits.memory_mb} MiB, "
            f"{cpus:g} CPU, pids {self.limits.processes}, user {self.box.uid}; host /usr "
            "read-only; rlimits cpu/as/fsize per run; background processes killed after each run")

    # -- files ---------------------------------------------------------------------------------

    # -- runs ----------------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float, stdin: str | None) -> RunResult:
        api, box = self.api, self.box
        start = time.monotonic()
        full = ["/bin/sh", "-c", WRAPPER, "sh", *rlimit_argv(self.limits, nproc=False), *argv]
        try:
            ex = api.exec_create(box.id, full, stdout=True, stderr=True, stdin=stdin is not None,
                                 user=f"{box.uid}:{box.gid}", workdir="/workspace")
            handle, sock, early = _raw_socket(api, ex["Id"])
        except SandboxError:
            raise
        except Exception as e:
            box.broken = True
            raise SandboxError(f"docker exec failed in container {box.id[:12]}: {e}") from None
        out, err = OutputCap(self.limits.output_bytes), OutputCap(self.limits.output_bytes)
        try:
            timed_out, flooded = self._pump(
                sock, early, None if stdin is None else stdin.encode(), deadline=start + timeout,
                out=out, err=err)
        finally:
            sock.close()
            del handle
        try:
            code = api.exec_inspect(ex["Id"]).get("ExitCode")
        except Exception:
            code = None
        wall = time.monotonic() - start
        exit_code, sig = split_status(code)
        if timed_out or flooded:
            exit_code, sig = None, int(signal.SIGKILL)
        oom = self._oom_killed(sig == signal.SIGKILL and not (timed_out or flooded))
        stderr = err.text()
        hits = classify(exit_code=exit_code, signal=sig, stderr=stderr, timed_out=timed_out,
                        flooded=flooded, truncated=out.truncated or err.truncated,
                        limits=self.limits, oom_killed=oom)
        return RunResult(exit_code=exit_code, stdout=out.text(), stderr=stderr, wall_s=wall,
                         limit_hit=hits[0] if hits else None, stdout_truncated=out.truncated,
                         stderr_truncated=err.truncated, signal=sig, limits_hit=hits)

    def _pump(self, sock: socket.socket, early: bytes, data: bytes | None, *, deadline: float,
              out: OutputCap, err: OutputCap) -> tuple[bool, bool]:
        buf = bytearray(early)
        pending = memoryview(data or b"")
        writing = data is not None
        if writing and not pending:
            sock.shutdown(socket.SHUT_WR)
            writing = False
        timed_out = flooded = False
        killed_at: float | None = None
        total = 0
        caps = {1: out, 2: err}
        while True:
            for stream, payload in _frames(buf):
                if stream in caps:
                    caps[stream].feed(payload)
                    total += len(payload)
            if total > self.limits.flood_bytes and killed_at is None:
                flooded, killed_at = True, time.monotonic()
                self._kill_all()
            now = time.monotonic()
            if killed_at is None and now >= deadline:
                timed_out, killed_at = True, now
                self._kill_all()
            if killed_at is not None and time.monotonic() - killed_at > KILL_GRACE_S:
                self.box.broken = True       # could not stop it: never reuse this container
                break
            wait = deadline - now if killed_at is None else 0.1
            r, w, _ = select.select([sock], [sock] if writing else [], [], max(0.0, wait))
            if w:
                try:
                    n = sock.send(pending[:CHUNK])
                    pending = pending[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = pending[:0]
                if not pending:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    writing = False
            if r:
                try:
                    chunk = sock.recv(CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    for stream, payload in _frames(buf):
                        if stream in caps:
                            caps[stream].feed(payload)
                    break
                buf += chunk
        return timed_out, flooded

    def _kill_all(self) -> None:
        """Kill every process of the container but pid 1, from a thread: the caller must go on
        draining the running exec's stream, or the engine may stall on it."""

        def kill() -> None:
            try:
                _exec_quiet(self.api, self.box, KILL_ALL)
            except Exception:
                self.box.broken = True
                with contextlib.suppress(Exception):
                    self.api.kill_container(self.box.id)

        threading.Thread(target=kill, name="trajgym-docker-kill", daemon=True).start()

    def _oom_killed(self, killed: bool) -> bool:
        """Whether the cgroup's OOM killer struck during the run (cgroup v1 or v2): read on the
        host after every run where it can, else asked from inside after a SIGKILL only."""
        box = self.box
        text = ""
        if box.oom_file is not None:
            with contextlib.suppress(OSError):
                text = box.oom_file.read_text()
        elif killed:
            probe = ("cat /sys/fs/cgroup/memory.events 2>/dev/null "
                     "|| cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null")
            try:
                ex = self.api.exec_create(box.id, ["/bin/sh", "-c", probe],
                                          user=f"{box.uid}:{box.gid}")
                text = self.api.exec_start(ex["Id"]).decode(errors="replace")
            except Exception:
                return False
        if not text:
            return False
        count = _oom_count(text)
        hit = count > box.oom_kills
        box.oom_kills = count
        return hit

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._finalizer()


def pool_status() -> dict[str, Any]:
    """How many containers the pool holds (for tests and the bench)."""
    with POOL.lock:
        return {"containers": len(POOL.boxes),
                "idle": sum(len(v) for v in POOL.idle.values()),
                "ids": sorted(POOL.boxes)}

