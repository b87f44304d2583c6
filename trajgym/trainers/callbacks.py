"""The trainers' hooks into a transformers ``Trainer``: the curves as they are logged.

Imported only when a training run starts (it imports transformers: the ``train`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trajgym.trainers import curves


class CurvesCallback(TrainerCallback):
    """Append every log row (loss, learning rate, DPO's rewards) to the run's ``curves.csv`` as it is
    logged, and draw ``curves.png`` at the end. A resumed run drops the rows past its checkpoint."""

    def __init__(self, run_dir: Path, title: str) -> None:
        self.path = run_dir / curves.CSV_NAME
        self.plot_path = run_dir / curves.PLOT_NAME
        self.title = title
        self.rows: list[dict[str, Any]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.rows = [r for r in curves.read_rows(self.path) if r.get("step", 0) <= state.global_step]
        curves.write_rows(self.path, self.rows)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not logs:
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({k: v for k, v in logs.items() if isinstance(v, int | float) and k not in row})
        self.rows.append(row)
        curves.write_rows(self.path, self.rows)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        curves.plot(self.rows, self.plot_path, self.title)
