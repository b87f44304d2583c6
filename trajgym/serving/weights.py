"""The identity of a checkpoint's weights: a content hash of its weight files.

A served model's name stays the same when its weights are reloaded or a new checkpoint is written
into the same folder; what a trajectory records as ``weights_id`` must not. :func:`weights_id`
hashes the folder's weight files (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.gguf``; sorted by
name, each name and content), so any change to the weights changes the id, and nothing else does.
Hashing reads every byte once (about half a second for the bundled SmolLM2's 540 MB); the result
is remembered per file state (path, size, modification time), in this process and in
``$TRAJGYM_CACHE/weights-ids.json``, so later calls, and later processes, only look at the files' sizes
and times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_memo: dict[str, str] = {}
_lock = threading.Lock()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def _state(files: list[Path]) -> str:
    return "|".join(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}" for p in files for st in [p.stat()])


def _cache_file() -> Path:
    root = os.environ.get("TRAJGYM_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trajgym") / "weights-ids.json"


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_cache(state: str, digest: str) -> None:
    path = _cache_file()
    try:
        data = _read_cache()
        data[state] = digest
        if len(data) > 256:  # old states of rewritten checkpoints: keep the newest entries
            data = dict(list(data.items())[-256:])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home: the id is still right, only computed again next time
        log.debug("cannot remember a weights id in %s: %s", path, exc)


def weights_id(folder: str | os.PathLike[str]) -> str | None:
    """``sha256:<16 hex>`` of the weight files in ``folder``; None when it holds none (or is no folder)."""
    p = Path(folder).expanduser()
    if not p.is_dir():
        return None
    files = weight_files(p)
    if not files:
        return None
    state = _state(files)
    with _lock:
        hit = _memo.get(state) or _read_cache().get(state)
        if hit is None:
            hasher = hashlib.sha256()
            for f in files:
                hasher.update(f.name.encode() + b"\0")
                with f.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        hasher.update(chunk)
            hit = f"sha256:{hasher.hexdigest()[:16]}"
            _write_cache(state, hit)
        _memo[state] = hit
    return hit
