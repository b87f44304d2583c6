"""Fixtures of the serving tests: a real vLLM server on the converted bundled model (``converted_model``,
in tests/conftest.py).

Both are slow and need optional installs: the ``hf`` extra (``make hf-setup``) for the conversion and
``.venv-vllm`` (``make vllm-setup``) for the server. Without them the tests skip, saying what to run;
with ``TRAJGYM_REQUIRE_VLLM=1`` a missing vLLM venv fails the tests instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trajgym.serving.errors import ServingError


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
