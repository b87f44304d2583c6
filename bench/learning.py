"""Does training on trajgym's data make a better agent? Base against SFT against SFT+DPO, on seeds and
scenarios that training never saw.

    python bench/learning.py [--out runs/learning] [--train-episodes 16] [--epochs 2] [--no-dpo]

Stages (each skipped when its output is already in --out, so a killed bench resumes):

1. the oracle plays ``--train-episodes`` variations (job seed 0) of each training scenario; the
   episodes are scored, and the successful ones exported as SFT records (``trajgym export --filters``);
2. the base model (the bundled SmolLM2-135M-Instruct), served by vLLM, is evaluated greedily on
   ``--eval-episodes`` held-out variations (job seed 1000) of each training scenario, and of each
   held-out scenario;
3. SFT (TRL, full fine-tuning) on the exported conversations; the trained model is served and
   evaluated the same way;
4. DPO: the SFT model plays the training variations ``--dpo-trials`` times at temperature
   ``--dpo-temperature``; its own episodes are scored and paired (better against worse turn of one
   variation), DPO trains from the SFT model, and the result is evaluated the same way.

Prints the table (success on held-out seeds and on held-out scenarios per model, and each stage's
time) and writes it to ``OUT/results.md`` and ``OUT/results.json``. Takes about an hour and a half on
two CPU cores (SFT is most of it). Needs ``make train-setup vllm-setup``.

    python bench/learning.py --loop [--out runs/learning] [--generations 3]

The self-improvement loop instead (``trajgym loop``), starting from the SFT model above (trained
first if ``OUT/sft`` holds none): ``--generations`` generations with ``data: accumulate`` (with an
oracle anchor) and the same with ``data: replace``, on the training scenarios; per generation, success
on held-out seeds and held-out scenarios, the collapse monitor's diversity figures of the policy's own
episodes, and time. Writes ``OUT/loop-results.md``; each loop's run folder is ``OUT/loop-<data>``
(resumed when the bench is started again).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from trajgym.rollout.agentspec import AgentChoice, AgentSpec
from trajgym.rollout.jobs import run_job
from trajgym.rollout.runner import plan
from trajgym.scenario.catalog import scenario_files
from trajgym.scorers.base import ScoringContext
from trajgym.scorers.config import load_scoring_config
from trajgym.scorers.pipeline import Scoring, score_files
from trajgym.serving.convert import convert_bundled_model
from trajgym.trainers.config import DPORunConfig, SFTRunConfig
from trajgym.trainers.evaluate import EvalOptions, EvalResult, evaluate
from trajgym.trainers.export import export
from trajgym.world.loader import load

TRAIN = ["refund_damaged_item", "order_status_inquiry", "cancel_processing_order", "refund_outside_window",
         "incident_response", "employee_onboarding"]
HELD_OUT = ["stale_order_status", "refund_service_flaky", "expense_reimbursement"]
TRAIN_SEED, EVAL_SEED = 0, 1000


def stage(name: str, times: dict[str, float]) -> Any:
    class _Timer:
        def __enter__(self) -> None:
            self.t0 = time.monotonic()
            print(f"== {name}", flush=True)

        def __exit__(self, *exc: object) -> None:
            times[name] = round(time.monotonic() - self.t0, 1)
            print(f"   {name}: {times[name]:.0f} s", flush=True)
    return _Timer()


def play(units: list[Any], out: Path, agent: AgentChoice, concurrency: int) -> None:
    run_job(units, out, AgentSpec({"support": agent}), concurrency=concurrency)


def score(src: Path, dst: Path) -> None:
    config, scorers = load_scoring_config(None)
    score_files([src], dst, Scoring(config, scorers, ScoringContext()))


def evaluated(name: str, model: Path, args: argparse.Namespace, times: dict[str, float], *,
              results: dict[str, EvalResult], trained_units: set[tuple[str, int]]) -> None:
    folder = args.out / f"eval-{name}"
    if (folder / "eval.json").is_file():
        results[name] = _load_eval(folder)
        return
    with stage(f"evaluate {name}", times):
        results[name] = evaluate(
            model, [*args.train, *args.held_out], folder,
            options=EvalOptions(episodes=args.eval_episodes, seed=EVAL_SEED, max_turns=args.max_turns,
                                max_tokens=args.max_tokens),
            extra_seen=trained_units, trained_scenarios=args.train, vllm_log=folder / "vllm.log")


def _load_eval(folder: Path) -> EvalResult:
    from trajgym.trainers.evaluate import ScenarioEval

    data = json.loads((folder / "eval.json").read_text())
    rows = [ScenarioEval(**{**r, "pass_k": {int(k): v for k, v in r["pass_k"].items()}}) for r in data["rows"]]
    return EvalResult(model=data["model"], weights_id=data["weights_id"], rows=rows,
                      trajectories=Path(data["trajectories"]), scored=Path(data["scored"]),
                      dropped=data["dropped"], seconds=data["seconds"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/learning"))
    p.add_argument("--train", nargs="+", default=TRAIN, help="training scenarios")
    p.add_argument("--held-out", nargs="+", default=HELD_OUT, help="scenarios training never sees")
    p.add_argument("--train-episodes", type=int, default=16, help="oracle variations per training scenario")
    p.add_argument("--eval-episodes", type=int, default=5, help="held-out variations per scenario")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--max-turns", type=int, default=20, help="turns per episode at most (the oracle needs 18)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens per answer at most (the longest call: ~50)")
    p.add_argument("--no-dpo", action="store_true")
    p.add_argument("--dpo-trials", type=int, default=4)
    p.add_argument("--dpo-episodes", type=int, default=3, help="training variations the SFT model replays")
    p.add_argument("--dpo-temperature", type=float, default=0.8)
    p.add_argument("--dpo-lr", type=float, default=5e-6)
    p.add_argument("--dpo-max-steps", type=int, default=20, help="DPO optimizer steps at most (one pair each)")
    p.add_argument("--dpo-epochs", type=float, default=1.0)
    p.add_argument("--loop", action="store_true", help="the self-improvement loop, accumulate against replace")
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--loop-episodes", type=int, default=12, help="variations the policy plays per generation")
    p.add_argument("--loop-eval-episodes", type=int, default=3, help="held-out variations per scenario")
    p.add_argument("--loop-steps", type=int, default=10, help="SFT optimizer steps per generation")
    p.add_argument("--loop-lr", type=float, default=2e-5)
    p.add_argument("--loop-temperature", type=float, default=0.7, help="sampling temperature of the policy's episodes")
    p.add_argument("--loop-name", default="loop", help="run folders OUT/<name>-accumulate, OUT/<name>-replace")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # killed (SIGTERM): unwind, so a vLLM server the bench started is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    results: dict[str, EvalResult] = {}
    base = convert_bundled_model()

    templates = [load(f) for f in scenario_files(args.train)]
    train_units = plan(templates, args.train_episodes, TRAIN_SEED)
    trained = {(u.key.scenario_id, u.key.seed) for u in train_units}
    oracle_out, oracle_scored, sft_data = out / "oracle.jsonl", out / "oracle-scored.jsonl", out / "sft-data"
    if not (sft_data / "export.json").is_file():
        with stage("oracle episodes, scored, exported", times):
            if not oracle_out.exists():
                play(train_units, oracle_out, AgentChoice("oracle", {}), concurrency=16)
            if not oracle_scored.exists():
                score(oracle_out, oracle_scored)
            filters = out / "passing.yaml"
            filters.write_text("filters:\n  - success: true\n")
            result = export([oracle_scored], sft_data, fmt="sft", filters=filters, force=True)
            print(f"   {result.records} SFT records", flush=True)

    sft_run = out / "sft"
    if not (sft_run / "model" / "trajgym_training.json").is_file():
        from trajgym.trainers.sft import train_sft

        config = SFTRunConfig(model="bundled", data=str(sft_data.resolve()), output=str(sft_run.resolve()),
                              epochs=args.epochs, learning_rate=args.lr, lr_scheduler="cosine", warmup_ratio=0.05,
                              save_steps=50)
        with stage("train sft", times):
            summary = train_sft(config, progress=False)
        (out / "sft-summary.json").write_text(json.dumps(summary, indent=2))
    if args.loop:
        return loop_bench(args, sft_run / "model")
    evaluated("sft", sft_run / "model", args, times, results=results, trained_units=trained)
    evaluated("base", base, args, times, results=results, trained_units=trained)

    if not args.no_dpo:
        dpo_run, own, own_scored, dpo_data = out / "dpo", out / "sft-own.jsonl", out / "sft-own-scored.jsonl", out / "dpo-data"
        if not (dpo_data / "export.json").is_file():
            with stage("sft model's own episodes, scored, paired", times):
                if not own.exists():
                    from trajgym.serving.server import VLLMServer

                    units = plan(templates, args.dpo_episodes, TRAIN_SEED, trials=args.dpo_trials,
                                 max_turns=args.max_turns)
                    with VLLMServer(sft_run / "model", max_model_len=8192, log_path=out / "vllm-own.log") as server:
                        play(units, own, AgentChoice("openai", {
                            "base_url": server.base_url, "api": "tokens", "tool_choice": "auto", "timeout_s": 900.0,
                            "sampling": {"temperature": args.dpo_temperature, "max_tokens": args.max_tokens}}),
                            concurrency=64)
                if not own_scored.exists():
                    score(own, own_scored)
                result = export([own_scored], dpo_data, fmt="dpo", min_margin=0.1, force=True)
                print(f"   {result.records} DPO pairs", flush=True)
        if not (dpo_run / "model" / "trajgym_training.json").is_file():
            from trajgym.trainers.dpo import train_dpo

            dconfig = DPORunConfig(model=str((sft_run / "model").resolve()), data=str(dpo_data.resolve()),
                                   output=str(dpo_run.resolve()), epochs=args.dpo_epochs, learning_rate=args.dpo_lr,
                                   max_steps=args.dpo_max_steps, save_steps=50)
            with stage("train dpo", times):
                summary = train_dpo(dconfig, progress=False)
            (out / "dpo-summary.json").write_text(json.dumps(summary, indent=2))
        evaluated("dpo", dpo_run / "model", args, times, results=results, trained_units=trained)

    report(args, results, times)
    return 0


def report(args: argparse.Namespace, results: dict[str, EvalResult], times: dict[str, float]) -> None:
    lines = [f"Learning bench ({platform.machine()}, {sys.platform}): trained on {', '.join(args.train)} "
             f"({args.train_episodes} oracle variations each); held-out scenarios {', '.join(args.held_out)}; "
             f"{args.eval_episodes} held-out variations per scenario, greedy.", "",
             "| model | held-out seeds | held-out scenarios | weights |", "|---|---|---|---|"]
    for name, r in sorted(results.items(), key=lambda kv: ["base", "sft", "dpo"].index(kv[0])):
        cells = []
        for split in ("held-out seeds", "held-out scenario"):
            ok, n = r.split_success(split)  # type: ignore[arg-type]
            cells.append(f"{ok}/{n} = {ok / n:.0%}" if n else "-")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {r.weights_id} |")
    names = sorted(results, key=["base", "sft", "dpo"].index)
    lines += ["", "| scenario | split | " + " | ".join(f"{n} success (mean total)" for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for scenario in [*args.train, *args.held_out]:
        rows = {n: next((r for r in results[n].rows if r.scenario_id == scenario), None) for n in names}
        split = next((r.split for r in rows.values() if r), "-")
        cells = [f"{r.successes}/{r.episodes} ({r.mean_total:.2f})" if r else "-" for r in rows.values()]
        lines.append(f"| {scenario} | {split} | " + " | ".join(cells) + " |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in times.items()]
    for name in ("sft", "dpo"):
        path = args.out / f"{name}-summary.json"
        if path.is_file():
            s = json.loads(path.read_text())
            lines.append(f"\n{name}: {s['steps']} steps, {s['records']} records, {s['tokens']} tokens, "
                         f"{s['tokens_per_s']} tokens/s, loss {s['first_loss']} -> {s['final_loss']}"
                         + (f", reward accuracy {s.get('final_reward_accuracy')}" if name == "dpo" else ""))
    text = "\n".join(lines)
    print(text)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({k: v.to_json() for k, v in results.items()} | {"times": times},
                                                      indent=2))


def json_eval(run: Path) -> Any:
    """The eval settings a loop run folder was started with."""
    from trajgym.trainers.loop import LOOP_FILE, EvalSettings

    return EvalSettings(**json.loads((run / LOOP_FILE).read_text())["eval"])


def loop_bench(args: argparse.Namespace, start: Path) -> int:
    """``--loop``: accumulate against replace from the SFT model (see the module docstring)."""
    import shutil

    from trajgym.trainers.loop import EvalSettings, Loop, LoopConfig, TrainSettings

    records: dict[str, list[dict[str, Any]]] = {}
    for data in ("accumulate", "replace"):
        root = (args.out / f"{args.loop_name}-{data}").resolve()
        config = LoopConfig(
            start=str(start.resolve()), output=str(root), generations=args.generations, scenarios=args.train,
            held_out_scenarios=args.held_out, data=data, episodes_per_generation=args.loop_episodes,
            temperature=args.loop_temperature, max_tokens=args.max_tokens, max_turns=args.max_turns, anchor_share=0.25,
            anchor_episodes=2, embed=True,
            train=TrainSettings(max_steps=args.loop_steps, learning_rate=args.loop_lr),
            eval=EvalSettings(episodes=args.loop_eval_episodes, seed=EVAL_SEED, max_turns=args.max_turns,
                              max_tokens=args.max_tokens))
        loop = Loop(config, resume=(root / "loop.json").is_file(), say=lambda m: print("   " + m, flush=True))
        # the same starting model, evaluated the same way (the same seeds left out): evaluated once
        done0 = [f for f in (args.out / f"{args.loop_name}-accumulate" / "gen-00", args.out / "loop-accumulate" / "gen-00")
                 if (f / "generation.json").is_file() and f != root / "gen-00"]
        if not (root / "gen-00").exists() and done0 and config.eval == json_eval(done0[0].parent):
            shutil.copytree(done0[0], root / "gen-00")
        print(f"== loop, data: {data}", flush=True)
        records[data] = loop.run()
    lines = [f"Loop bench ({platform.machine()}, {sys.platform}): from {start}; {args.generations} generations of "
             f"{args.loop_episodes} episodes on {', '.join(args.train)} at temperature {args.loop_temperature}; "
             f"{args.loop_steps} SFT steps per generation at learning rate {args.loop_lr:g}; "
             f"{args.loop_eval_episodes} held-out variations per scenario (held-out scenarios: "
             f"{', '.join(args.held_out)}), greedy.", "",
             "| data | gen | held-out seeds | held-out scenarios | kept/played | distinct chains | 2-gram bits | "
             "embedding spread | phrase repetition | warnings | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for data, recs in records.items():
        for r in recs:
            ev = r.get("eval") or {}
            cells = []
            for split in ("held-out seeds", "held-out scenario"):
                s = ev.get(split) or {}
                cells.append(f"{s['successes']}/{s['episodes']}" if s.get("episodes") else "-")
            f = r.get("collapse") or {}

            def fig(key: str, fmt: str = ".2f", f: dict[str, Any] = f) -> str:
                return format(f[key], fmt) if key in f else "-"

            lines.append(f"| {data} | {r['generation']} | {cells[0]} | {cells[1]} | "
                         f"{r.get('kept', '-')}/{r.get('played', '-')} | {fig('distinct_chain_share', '.0%')} | "
                         f"{fig('action_2gram_entropy_bits')} | {fig('embedding_spread', '.3f')} | "
                         f"{fig('phrase_repetition')} | {len(r.get('warnings') or [])} | "
                         f"{sum((r.get('seconds') or {}).values()):.0f} |")
    for data, recs in records.items():
        for r in recs:
            for w in r.get("warnings") or []:
                lines.append(f"- {data}, generation {r['generation']}: {w}")
    text = "\n".join(lines)
    print(text)
    (args.out / f"{args.loop_name}-results.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
