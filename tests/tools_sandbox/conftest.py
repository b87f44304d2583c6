"""Fixtures for the sandbox tests: one ``sandbox`` fixture run against every backend.

The Docker backend needs a running engine. Where ``docker.from_env().ping()`` fails its tests are
skipped, unless ``TRAJGYM_REQUIRE_DOCKER=1`` (set by ``.ci/run``, which starts the engine): then
they fail. The fixtures never start an engine themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from trajgym.tools_sandbox import Limits, Sandbox, SandboxError

# Small limits so that every attack ends fast.
FAST = Limits(timeout_s=5.0, cpu_s=1, memory_mb=256, file_size_mb=1, processes=32,
              output_bytes=4000, flood_bytes=2_000_000, tmp_mb=16)

BACKENDS = ["bwrap", "unshare", "docker"]


@pytest.fixture(scope="session")
def fast_limits() -> Limits:
    return FAST


def _require_docker() -> bool:
    return os.environ.get("TRAJGYM_REQUIRE_DOCKER", "") not in ("", "0")


@pytest.fixture(scope="session")
def docker_engine() -> object:
    """The Docker API client, or a skip (a failure under TRAJGYM_REQUIRE_DOCKER=1)."""
    try:
        import docker
    except ImportError:
        if _require_docker():
            pytest.fail("the Docker SDK is missing: pip install -e '.[dev]'")
        pytest.skip("the Docker SDK is not installed (pip install 'trajgym[docker]')")
    try:
        docker.from_env(timeout=10).ping()
    except Exception as e:
        why = (f"no Docker engine reachable ({type(e).__name__}); start one with "
               "`dockerd --bridge=none --iptables=false --ip6tables=false` (.ci/run does)")
        if _require_docker():
            pytest.fail(why)
        pytest.skip(why)
    from trajgym.tools_sandbox.docker_backend import api_client, prewarm

    prewarm(2, FAST)
    return api_client()


def _bwrap_skip(mode: str) -> None:
    from trajgym.tools_sandbox.bwrap import BwrapSandbox

    try:
        BwrapSandbox(FAST, mode=mode).close()  # type: ignore[arg-type]
    except SandboxError as e:
        pytest.skip(f"{mode} isolation unavailable here: {e}")


def make_sandbox(request: pytest.FixtureRequest, backend: str, limits: Limits) -> Sandbox:
    if backend == "docker":
        request.getfixturevalue("docker_engine")
        from trajgym.tools_sandbox.docker_backend import DockerSandbox

        return DockerSandbox(limits)
    _bwrap_skip(backend)
    from trajgym.tools_sandbox.bwrap import BwrapSandbox

    return BwrapSandbox(limits, mode=backend)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, backend: str) -> Iterator[Sandbox]:
    """A fresh sandbox with the FAST limits, of every backend (``unshare``: bwrap's fallback)."""
    sb = make_sandbox(request, backend, FAST)
    yield sb
    sb.close()


@pytest.fixture
def sandbox_factory(request: pytest.FixtureRequest, backend: str) -> Iterator[object]:
    """Opens sandboxes of the current backend with given limits; closes them after the test."""
    opened: list[Sandbox] = []

    def make(limits: Limits = FAST) -> Sandbox:
        sb = make_sandbox(request, backend, limits)
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()
