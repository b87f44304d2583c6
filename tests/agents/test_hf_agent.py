"""The ``hf`` agent: real episodes with transformers in process.

Most tests use a tiny random Llama (two layers, built from a config) with the bundled SmolLM2's
tokenizer and tool-aware chat template, so they take seconds; one plays the bundled SmolLM2 itself
(slow on a CPU). They need the ``hf`` extra and skip without it (``make hf-setup``), except the
option and missing-extra checks, which run everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import example_data

from trajgym.agents import AGENTS, HFAgent, ScriptedCustomer
from trajgym.agents.chat import TOOL_CALL_PREFILL
from trajgym.agents.hf_agent import DEFAULT_SAMPLING, load_model
from trajgym.cli.main import main
from trajgym.cli.rollout import job_from_args
from trajgym.envs.core import Episode
from trajgym.errors import TrajgymError
from trajgym.rollout.episode import aplay, to_trajectory
from trajgym.trajectory import Trajectory, iter_episodes, role_tokens
from trajgym.trajectory.store import strip_wall
from trajgym.world.loader import ScenarioTemplate, load

SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 6}


@pytest.fixture(scope="session")
def tiny_model(converted_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer Llama saved with SmolLM2's tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(converted_model / name, out / name)
    return out


def short_scenario(folder: Path, max_turns: int) -> Path:
    """The refund scenario with a short turn limit, as a file (its id is its file name)."""
    data = example_data()
    data["limits"] = {"max_turns": max_turns}
    path = folder / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def scenario(tmp_path: Path) -> ScenarioTemplate:
    return load(short_scenario(tmp_path, 6))


def play(template: ScenarioTemplate, support: HFAgent, seed: int = 1) -> dict[str, Any]:
    agents = {"support": support, "customer": ScriptedCustomer()}
    episode = asyncio.run(aplay(Episode.start(template, seed), agents))
    traj = to_trajectory(episode, agents)
    json.dumps(traj)  # the record is JSON
    return traj


def support_steps(traj: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in traj["steps"] if s["role"] == "support"]


def check_generation(gen: dict[str, Any], sampling: dict[str, Any]) -> None:
    """What every hf step must carry for a trainer."""
    assert gen["backend"] == "hf" and gen["api"] == "local"
    assert gen["sampling"] == {**DEFAULT_SAMPLING, **sampling, "seed": gen["sampling"]["seed"]}
    assert isinstance(gen["sampling"]["seed"], int)
    assert gen["weights_id"] and gen["weights_id"].startswith("sha256:")
    ids, logprobs = gen["token_ids"], gen["logprobs"]
    assert gen["prompt_ids"] and all(isinstance(i, int) for i in gen["prompt_ids"])
    assert 0 < len(ids) == len(logprobs) <= gen["sampling"]["max_tokens"]
    assert all(isinstance(i, int) for i in ids)
    assert all(math.isfinite(x) and x <= 0.0 for x in logprobs), logprobs
    prompt = gen["prompt_from"] + len(gen["prompt_ids"])
    assert gen["usage"] == {"prompt_tokens": prompt, "completion_tokens": len(ids), "total_tokens": prompt + len(ids)}
    assert gen["finish_reason"] in ("stop", "length", "tool_calls")


def full_prompts(steps: list[dict[str, Any]]) -> list[list[int]]:
    """Each model turn's whole prompt, from the turns' new prompt ids (each turn extends the last)."""
    chain: list[int] = []
    out = []
    for step in steps:
        gen = step["generation"]
        assert gen["prompt_from"] == len(chain) and gen["chain_break"] is None  # no turn starts over
        prompt = chain + gen["prompt_ids"]
        out.append(prompt)
        chain = prompt + gen["token_ids"]
    return out


# ---------------------------------------------------------------------------------------------
# without the extra: options and errors


def _rollout_args(argv: list[str]) -> argparse.Namespace:
    from trajgym.cli.main import _parser

    return _parser().parse_args(["rollout", *argv])


def test_registry_and_command_line_options(tmp_path: Path) -> None:
    assert AGENTS["hf"] is HFAgent
    args = _rollout_args(["--agent", "hf", "--model", str(tmp_path), "--tool-choice", "required",
                          "--temperature", "0.5", "--max-tokens", "32", "--base-url", "http://x/v1",
                          "--strict", "--out", str(tmp_path / "o.jsonl")])
    options = dict(job_from_args(args).agents.roles["support"].options)
    # --base-url and --strict are the server agents'; hf runs its model in process
    assert options == {"model": str(tmp_path), "tool_choice": "required",
                       "sampling": {"temperature": 0.5, "max_tokens": 32}}


def test_bad_options_say_what_and_how(tmp_path: Path) -> None:
    with pytest.raises(TrajgymError, match=r"unknown sampling setting\(s\) \['presence_penalty'\]"):
        HFAgent(sampling={"presence_penalty": 1.0})
    with pytest.raises(TrajgymError, match=r"max_tokens must be a positive integer"):
        HFAgent(sampling={"max_tokens": 0})
    with pytest.raises(TrajgymError, match=r"stop must be a string or a list of strings"):
        HFAgent(sampling={"stop": [""]})
    with pytest.raises(TrajgymError, match=r"tool_choice must be"):
        HFAgent(tool_choice="always")
    with pytest.raises(TrajgymError, match=r"dtype must be"):
        HFAgent(dtype="int4")  # type: ignore[arg-type]
    with pytest.raises(TrajgymError, match=rf"{tmp_path} is not a transformers model folder.*save_pretrained"):
        HFAgent(model=tmp_path)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(TrajgymError, match=r"needs (torch and )?transformers.*trajgym\[hf\]"):
        HFAgent()


# ---------------------------------------------------------------------------------------------
# real episodes with a tiny random model


def test_episode_records_token_ids_logprobs_and_sampling(tiny_model: Path, scenario: ScenarioTemplate) -> None:
    agent = HFAgent(model=tiny_model, sampling=SAMPLING)
    traj = play(scenario, agent)
    steps = support_steps(traj)
    assert steps and traj["infra_error"] is None
    tokenizer = load_model(tiny_model).tokenizer
    for step, full in zip(steps, full_prompts(steps), strict=True):
        gen = step["generation"]
        check_generation(gen, SAMPLING)
        assert gen["model"] == str(tiny_model) and gen["prefill"] is None
        prompt = tokenizer.decode(full)
        # the tool-aware template, with the role's tools, ending where the answer starts
        assert "<tools>" in prompt and '"name": "refund_order"' in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
        # the action is the decoded answer (a random model writes text, not tool calls)
        assert step["error"] is None and json.loads(step["action"])["content"] == gen["raw_content"]
    # every call has its own seed; the history carries the earlier answers into the next prompt
    assert len({s["generation"]["sampling"]["seed"] for s in steps}) == len(steps)
    later = tokenizer.decode(full_prompts(steps)[-1])
    assert steps[0]["generation"]["raw_content"].strip() in later
    desc = next(a for a in traj["agents"] if a["role"] == "support")
    assert desc["kind"] == "hf" and desc["model"] == str(tiny_model)
    assert desc["config"]["sampling"] == {**DEFAULT_SAMPLING, **SAMPLING}
    assert agent.history[0]["role"] == "system"


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
def test_every_turn_extends_the_last_and_the_rebuilt_sequence_holds_the_completions(
        tool_choice: str, tiny_model: Path, scenario: ScenarioTemplate) -> None:
    """The token chain: each turn's prompt is the previous turn's prompt and completion, exactly (the
    agent sends ids, never re-rendered text); the rebuilt sequence's generated tokens are the
    recorded completions, and what the model was given is what it was scored on."""
    traj = play(scenario, HFAgent(model=tiny_model, sampling=SAMPLING, tool_choice=tool_choice))
    steps = support_steps(traj)
    assert len(steps) >= 3
    prompts = full_prompts(steps)  # asserts prompt_from == the previous prompt + completion, every turn
    tokens = role_tokens(Trajectory.model_validate(traj), "support")
    assert tokens.exact and tokens.breaks == [] and tokens.untokenized == []
    (segment,) = tokens.segments
    assert segment.completions() == [s["generation"]["token_ids"] for s in steps]
    assert segment.turns == [s["turn"] for s in steps]
    last = steps[-1]["generation"]
    assert segment.ids == prompts[-1] + last["token_ids"]
    assert [lp for lp, mine in zip(segment.logprobs, segment.generated, strict=True) if mine] == [
        lp for s in steps for lp in s["generation"]["logprobs"]]
    # what the role observed (the customer's words, tool results, the env's notes) is in the sequence,
    # never marked as the model's
    tokenizer = load_model(tiny_model).tokenizer
    given = tokenizer.decode([t for t, mine in zip(segment.ids, segment.generated, strict=True) if not mine])
    observed = [m["content"] for s in steps for m in s["observation"] if m["role"] != "system"]
    assert observed and all(text in given for text in observed)


@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_logprobs_are_the_models(mode: str, tiny_model: Path, scenario: ScenarioTemplate) -> None:
    """Each recorded logprob is that of its token under the model given everything before it: of the
    model's distribution (raw) or of the one sampled from, after temperature (processed)."""
    import torch

    sampling = {"temperature": 0.5, "max_tokens": 5}
    traj = play(scenario, HFAgent(model=tiny_model, sampling=sampling, logprobs=mode))  # type: ignore[arg-type]
    model = load_model(tiny_model).model
    steps = support_steps(traj)[:2]
    for step, prompt in zip(steps, full_prompts(steps), strict=True):
        gen = step["generation"]
        assert gen["logprobs_mode"] == mode
        ids = gen["token_ids"]
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float()
        if mode == "processed":
            logits = logits / sampling["temperature"]
        expected = torch.log_softmax(logits, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)]
        assert torch.allclose(torch.tensor(gen["logprobs"]), expected, atol=1e-4), (gen["logprobs"], expected)


def test_required_tool_choice_prefills_and_a_malformed_call_is_the_agents_mistake(
        tiny_model: Path, scenario: ScenarioTemplate) -> None:
    traj = play(scenario, HFAgent(model=tiny_model, sampling=SAMPLING, tool_choice="required"))
    steps = support_steps(traj)
    tokenizer = load_model(tiny_model).tokenizer
    assert steps and traj["infra_error"] is None
    for step, full in zip(steps, full_prompts(steps), strict=True):
        gen = step["generation"]
        check_generation(gen, SAMPLING)
        assert gen["prefill"] == TOOL_CALL_PREFILL and gen["raw_content"].startswith(TOOL_CALL_PREFILL)
        assert tokenizer.decode(full).endswith("<|im_start|>assistant\n<tool_call>\n")
        assert gen["tool_call_format"] == "text"
        # random text after <tool_call> is no call: an error observation, and the episode goes on
        assert "needs function.name" in step["error"]


def test_same_seed_same_trajectories_at_any_concurrency(tiny_model: Path, tmp_path: Path) -> None:
    path = short_scenario(tmp_path, 6)

    def rollout(out: str, seed: int, concurrency: int) -> list[dict[str, Any]]:
        code = main(["rollout", str(path), "--agent", "hf", "--model", str(tiny_model), "--episodes", "2",
                     "--seed", str(seed), "--temperature", "1.0", "--max-tokens", "4",
                     "--concurrency", str(concurrency), "--out", str(tmp_path / out), "--no-progress"])
        assert code == 0
        episodes = [strip_wall(ep) for ep in iter_episodes(tmp_path / out)]
        return sorted(episodes, key=lambda ep: ep["episode_id"])

    one = rollout("a.jsonl", 0, 1)
    assert len(one) == 2 and all(s["generation"]["token_ids"] for ep in one for s in support_steps(ep))
    for ep in one:
        ep["provenance"].pop("command", None)
    two = rollout("b.jsonl", 0, 2)  # two episodes generating in worker threads at once
    for ep in two:
        ep["provenance"].pop("command", None)
    assert one == two
    other = rollout("c.jsonl", 1, 2)
    assert [s["generation"]["token_ids"] for s in support_steps(other[0])] != [
        s["generation"]["token_ids"] for s in support_steps(one[0])]


def test_sync_act_plays_the_same_episode(tiny_model: Path, scenario: ScenarioTemplate) -> None:
    """``act`` (play, the Gymnasium view) and ``aact`` (batch jobs) give the same trajectory."""
    from trajgym.rollout.episode import run_episode

    sync = run_episode(scenario, 3, {"support": HFAgent(model=tiny_model, sampling=SAMPLING),
                                     "customer": ScriptedCustomer()})
    assert strip_wall(sync["steps"]) == strip_wall(play(scenario, HFAgent(model=tiny_model, sampling=SAMPLING),
                                                        seed=3)["steps"])


def test_aact_leaves_the_event_loop_free(tiny_model: Path, scenario: ScenarioTemplate) -> None:
    """While the model generates, other coroutines run (a blocking agent would let them run once
    before and once after)."""
    agent = HFAgent(model=tiny_model, sampling={"max_tokens": 4})
    episode = Episode.start(scenario, 1)
    from trajgym.rollout.episode import reset_agents

    reset_agents(episode, {"support": agent})
    episode.step("customer", json.dumps({"content": "Hi, my order arrived damaged."}))

    async def go() -> int:
        task = asyncio.create_task(agent.aact(episode.peek("support"), episode.info("support")))
        ticks = 0
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)
        await task
        return ticks

    assert asyncio.run(go()) > 2
    assert agent.generation is not None and agent.generation["token_ids"]


def test_one_model_instance_per_folder(tiny_model: Path) -> None:
    first = load_model(tiny_model)
    assert load_model(tiny_model) is first
    assert load_model(tiny_model, "bfloat16") is not first


# ---------------------------------------------------------------------------------------------
# the bundled SmolLM2


@pytest.mark.slow
def test_bundled_smollm2_plays_an_episode(converted_model: Path, tmp_path: Path) -> None:
    """The default model through the command line: two trials of one seed (same seed twice),
    in flight together."""
    path = short_scenario(tmp_path, 3)
    out = tmp_path / "smol.jsonl"
    code = main(["rollout", str(path), "--agent", "hf", "--tool-choice", "required", "--temperature", "0.7",
                 "--max-tokens", "24", "--trials", "2", "--concurrency", "2", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    episodes = sorted(iter_episodes(out), key=lambda ep: ep["trial"])
    assert [ep["trial"] for ep in episodes] == [0, 1]
    for ep in episodes:
        desc = next(a for a in ep["agents"] if a["role"] == "support")
        assert desc["kind"] == "hf" and desc["model"] == str(converted_model)
        steps = support_steps(ep)
        assert steps and ep["infra_error"] is None
        for step in steps:
            check_generation(step["generation"], {"temperature": 0.7, "max_tokens": 24})
            assert step["generation"]["raw_content"].startswith(TOOL_CALL_PREFILL)
    first, second = (strip_wall(ep["steps"]) for ep in episodes)
    assert first == second
