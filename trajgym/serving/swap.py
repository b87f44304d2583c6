"""Whether a running vLLM server can take another checkpoint's weights in place, and what it did.

A live swap (vLLM's dev-mode ``reload_weights``) replaces the tensors of the model vLLM built at
start-up; everything else vLLM read then stays: the architecture and shapes (``config.json``), the
tokenizer, the chat template and the default sampling settings (``generation_config.json``). So a swap
is only right between folders that agree on all of those, the usual case of a fine-tuned copy of the
served model; :func:`swap_blocker` says why not otherwise, and :meth:`VLLMServer.load_weights
<trajgym.serving.server.VLLMServer.load_weights>` restarts the server on the new folder instead.

>>> import json, tempfile
>>> from pathlib import Path
>>> def checkpoint(folder: Path, layers: int) -> Path:
...     folder.mkdir()
...     _ = (folder / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
...     _ = (folder / "model.safetensors").write_bytes(b"")
...     return folder
>>> with tempfile.TemporaryDirectory() as tmp:
...     served = checkpoint(Path(tmp, "served"), 30)
...     print(swap_blocker(served, checkpoint(Path(tmp, "tuned"), 30), dev_mode=True))
...     print(swap_blocker(served, checkpoint(Path(tmp, "smaller"), 12), dev_mode=True))
None
config.json differs in num_hidden_layers (30 -> 12): the model vLLM built has the old shapes
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trajgym.serving.errors import ServingError

LoadHow = Literal["swap", "restart"]

CONFIG_NOISE = frozenset({"_name_or_path", "_model_name_or_path", "_commit_hash", "transformers_version"})
"""``config.json`` keys that name or date a checkpoint without changing the model vLLM builds."""

STARTUP_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                 "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
                 "generation_config.json")
"""Files vLLM reads only when it starts (tokenizer, chat template, default sampling): a swap keeps the old."""

LOADABLE_SUFFIXES = (".safetensors", ".bin", ".pt")
"""Weight files vLLM's default loader reads (``--load-format auto``); a swap reads nothing else."""


@dataclass(frozen=True)
class WeightsLoad:
    """What :meth:`VLLMServer.load_weights <trajgym.serving.server.VLLMServer.load_weights>` did.

    ``how`` is ``"swap"`` (the running server took the weights in place: in-flight requests survive,
    the port, name and URL stay) or ``"restart"`` (the server was stopped and started on the new folder,
    same port and name; ``reason`` says why a swap was not possible). ``weights_id`` is the content hash
    of the served weights now, the id that episodes played from here on record.
    """

    how: LoadHow
    model_dir: Path
    weights_id: str | None
    seconds: float
    reason: str | None = None


def check_model_folder(folder: Path, *, what: str = "load_weights") -> None:
    """Raise a :class:`ServingError` unless ``folder`` is a transformers folder with weights vLLM can read."""
    if not (folder / "config.json").is_file():
        raise ServingError(f"{what}: {folder} is not a transformers model folder (no config.json); "
                           "give a folder written by save_pretrained")
    if not any(p.is_file() and p.suffix in LOADABLE_SUFFIXES for p in folder.iterdir()):
        raise ServingError(f"{what}: {folder} has no weight files vLLM reads ({', '.join(LOADABLE_SUFFIXES)}); "
                           "save the checkpoint with save_pretrained (safetensors)")


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ServingError(f"{folder / 'config.json'}: cannot read it ({exc}); fix or rewrite the checkpoint") from None
    if not isinstance(data, dict):
        raise ServingError(f"{folder / 'config.json'}: not a JSON object; rewrite the checkpoint with save_pretrained")
    return {k: v for k, v in data.items() if k not in CONFIG_NOISE}


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def swap_blocker(current: Path, new: Path, *, dev_mode: bool) -> str | None:
    """Why a server on ``current`` cannot take ``new``'s weights in place; None when it can.

    A swap needs vLLM's dev mode (``POST /collective_rpc``), the same ``config.json`` apart from
    :data:`CONFIG_NOISE` (a different dtype counts: vLLM keeps the one it started with), the same
    :data:`STARTUP_FILES` and weight files vLLM's loader reads.
    """
    if not dev_mode:
        return "the server is not in dev mode (VLLMServer(dev_mode=True), `trajgym serve --dev-mode`)"
    old_config, new_config = _config(current), _config(new)
    if old_config != new_config:
        keys = sorted(k for k in old_config.keys() | new_config.keys() if old_config.get(k) != new_config.get(k))
        key = keys[0]
        return (f"config.json differs in {', '.join(keys)} ({old_config.get(key)!r} -> {new_config.get(key)!r}): "
                "the model vLLM built has the old shapes")
    for name in STARTUP_FILES:
        if _digest(current / name) != _digest(new / name):
            return f"{name} differs: vLLM reads it only when it starts"
    if not any(p.is_file() and p.suffix in LOADABLE_SUFFIXES for p in new.iterdir()):
        return f"{new} has no weight files vLLM's loader reads in place ({', '.join(LOADABLE_SUFFIXES)})"
    return None
