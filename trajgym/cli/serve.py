"""``trajgym serve``: an OpenAI-compatible vLLM server on a model, until Ctrl-C.

``--model DIR`` (or the positional ``MODEL_DIR``, its older spelling) names a transformers folder: a
fine-tuned checkpoint, the trained policy. Without it, the bundled SmolLM2-135M-Instruct is served,
converted first if needed (the ``hf`` extra: ``make hf-setup``). vLLM runs from its own venv
(``make vllm-setup``).
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape

from trajgym.serving.errors import ServingError


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` (what ``ArgumentParser.add_subparsers`` returned)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve a model over an OpenAI-compatible API (vLLM) until Ctrl-C",
        description="Serve a transformers model folder (--model DIR, e.g. a trained checkpoint; default: the "
                    "bundled SmolLM2-135M-Instruct, converted on first use) with vLLM, tool calling on. "
                    "Needs `make vllm-setup` (and `make hf-setup` to convert).")
    p.add_argument("--model", metavar="DIR", dest="model",
                   help="the transformers model folder to serve, e.g. a fine-tuned checkpoint written by "
                        "save_pretrained (default: the bundled model)")
    p.add_argument("model_dir", nargs="?", metavar="MODEL_DIR",
                   help="the same as --model DIR (the older spelling)")
    p.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    p.add_argument("--convert", action="store_true",
                   help="only convert the bundled model (once, into the cache) and print its folder")
    p.add_argument("--cache-dir", help="folder for the converted bundled model "
                                       "(default $TRAJGYM_CACHE/models/... or ~/.cache/trajgym/models/...)")
    p.add_argument("--python", help="the Python that has vLLM (default .venv-vllm/bin/python)")
    p.add_argument("--name", help="served model name (default: the folder's name)")
    p.add_argument("--max-model-len", type=int, default=4096, help="context length (default 4096)")
    p.add_argument("--log", help="vLLM's log file (default: a temporary file)")
    p.add_argument("--dev-mode", action="store_true",
                   help="VLLM_SERVER_DEV_MODE=1: allows POST /collective_rpc (reload_weights; "
                        "VLLMServer.load_weights swaps in a fine-tuned checkpoint live)")
    return p


def serve(args: argparse.Namespace, console: Console) -> int:
    from trajgym.serving.convert import convert_bundled_model
    from trajgym.serving.server import VLLMServer

    given = _model_arg(args)
    if args.convert and given:
        raise ServingError("--convert converts the bundled model; it takes no MODEL_DIR (--model)")
    if given:
        model_dir = Path(given).expanduser()
        if not (model_dir / "config.json").is_file():
            raise ServingError(f"--model {given}: not a transformers model folder (no config.json); give a "
                               "folder written by save_pretrained, or leave --model out for the bundled model")
    else:
        with console.status("converting the bundled SmolLM2-135M-Instruct (once)..."):
            model_dir = convert_bundled_model(args.cache_dir)
    if args.convert:
        console.print(str(model_dir), highlight=False, soft_wrap=True)
        return 0

    server = VLLMServer(model_dir, port=args.port, python=args.python, served_model_name=args.name,
                        max_model_len=args.max_model_len, log_path=args.log, dev_mode=args.dev_mode)
    # SIGTERM (kill, a supervisor) stops the server like Ctrl-C does: it runs in a session of its own and
    # would outlive us otherwise.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with console.status(f"starting vLLM on {escape(str(model_dir))}..."):
            server.start()
        console.print(f"serving [bold]{escape(server.served_model_name)}[/] at [bold]{server.base_url}[/]"
                      f"  (log {escape(str(server.log_path))}; Ctrl-C stops)", highlight=False, soft_wrap=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        code = server.process.returncode if server.process is not None else None
        raise ServingError(f"vLLM exited on its own (code {code}); log {server.log_path}:\n{server.log_tail()}")
    except KeyboardInterrupt:
        console.print("stopping vLLM...")
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


def _model_arg(args: argparse.Namespace) -> str | None:
    """The folder given as ``--model DIR`` or as the positional ``MODEL_DIR`` (one of them, or both alike)."""
    option, positional = getattr(args, "model", None), args.model_dir
    if option and positional and Path(option).expanduser().resolve() != Path(positional).expanduser().resolve():
        raise ServingError(f"serve: two model folders given, --model {option} and MODEL_DIR {positional}; "
                           "give one (MODEL_DIR is the older spelling of --model)")
    return str(option or positional) if option or positional else None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
