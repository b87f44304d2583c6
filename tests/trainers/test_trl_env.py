"""trajgym scenarios as TRL environments (``environment_factory``): the class's tools, the customer's
answer as the reply tool's result, the reward; and TRL's GRPOTrainer training on one for two steps."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from transformers.utils import get_json_schema

from trajgym.trainers.trl_env import environment_class, prepare_tokenizer


def test_the_class_offers_the_scenario_tools_and_plays_the_customer() -> None:
    cls = environment_class("refund_damaged_item")
    env = cls()
    names = {n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction) if not n.startswith("_")}
    assert {"reset", "get_reward", "reply", "get_order", "refund_order", "verify_identity"} <= names
    schema = get_json_schema(env.refund_order)["function"]
    assert schema["name"] == "refund_order"
    assert schema["parameters"]["required"] == ["order_id", "amount", "reason"]
    assert schema["parameters"]["properties"]["amount"]["type"] == "number"
    assert get_json_schema(env.reply)["function"]["name"] == "reply"
    first = env.reset(seed=3)
    assert "support agent" in first and "[user]" in first  # the instructions, then the customer's opening
    answer = env.reply("Hello! Which order is it about?")
    assert answer.startswith("[user]")  # the simulated customer's answer is the reply tool's result
    seen = json.loads(env.get_order(order_id="O1"))
    assert seen.get("order_id") == "O1" or "error" in seen
    assert env.get_reward() == 0.0
    # the same seed, the same episode
    again = cls()
    assert again.reset(seed=3) == first


@pytest.mark.slow
def test_trl_grpo_trainer_trains_two_steps_on_a_trajgym_env(tiny_model: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    prepare_tokenizer(tokenizer)
    parsed = tokenizer.parse_response('<tool_call>\n{"name": "get_order", "arguments": {"order_id": "O1"}}\n</tool_call>'
                                      "<|im_end|>", prefix="<|im_start|>assistant\n")
    assert parsed["tool_calls"][0]["function"] == {"name": "get_order", "arguments": {"order_id": "O1"}}
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "Help the customer."}], "seed": s}
                              for s in range(4)])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=16, learning_rate=1e-3, use_cpu=True, report_to="none", logging_steps=1,
                      save_strategy="no", max_tool_calling_iterations=2, bf16=False)
    trainer = GRPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                          environment_factory=environment_class("refund_damaged_item"),
                          reward_funcs=[lambda completions, **kw: [float(len(str(c))) / 100 for c in completions]])
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not p.detach().equal(before[n]) for n, p in trainer.model.named_parameters())
