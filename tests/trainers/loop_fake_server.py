"""A stand-in for vLLM in loop tests whose player is a scripted agent: it serves nothing, and says
which weights it was asked to serve (``server: "loop_fake_server:FakeServer"`` in a loop config)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trajgym.serving.weights import weights_id


@dataclass
class Loaded:
    how: str
    weights_id: str | None


class FakeServer:
    def __init__(self, model: Path) -> None:
        self.model = Path(model)
        self.loads: list[str] = []

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:9/v1"

    def load_weights(self, model_dir: str | Path) -> Loaded:
        self.model = Path(model_dir)
        log = self.model.parents[2] / "fake-server-loads.jsonl"
        with log.open("a") as f:
            f.write(json.dumps({"model": str(self.model)}) + "\n")
        return Loaded("swap", weights_id(self.model))

    def stop(self) -> None:
        pass
