"""``make demo-llm``: the bundled SmolLM2 model, served by vLLM, plays the built-in scenarios.

Converts the bundled model (once), starts vLLM on it, runs a rollout job in which SmolLM2 plays the
support agent and the customer (tool calls forced with ``tool_choice=required``), prints the summary
table (episodes, success, faults met, tokens/s), and stops the server.
"""

from __future__ import annotations

import sys

from trajgym.cli.main import main as cli_main
from trajgym.serving.convert import convert_bundled_model
from trajgym.serving.server import VLLMServer


def main(argv: list[str] | None = None) -> int:
    out = (argv or ["runs/demo-llm.jsonl"])[0]
    model = convert_bundled_model()
    with VLLMServer(model, max_model_len=8192, log_path="runs/vllm-demo.log") as server:
        print(f"vLLM serving {model} at {server.base_url}", flush=True)
        return cli_main(["rollout", "--agent", "openai", "--base-url", server.base_url, "--tool-choice", "required",
                         "--strict", "--temperature", "0.7", "--max-tokens", "128", "--customer", "llm_customer",
                         "--episodes", "1", "--concurrency", "32", "--out", out])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
