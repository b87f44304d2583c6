"""The training curves of a run: every logged row in ``curves.csv``, and ``curves.png`` drawn from it.

The CSV is written as the trainer logs (a killed run keeps what it logged); a resumed run first drops
the rows past the checkpoint it resumes from, so no step appears twice.

    >>> rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "rewards/accuracies": 0.5}]
    >>> columns(rows)
    ['step', 'loss', 'rewards/accuracies']
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CSV_NAME = "curves.csv"
PLOT_NAME = "curves.png"
_FIRST = ("step", "epoch", "loss")
_PLOTTED = ("loss", "rewards/accuracies", "rewards/margins", "grad_norm", "learning_rate")


def columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The rows' keys, ``step``, ``epoch`` and ``loss`` first, the rest in order of appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return [k for k in _FIRST if k in seen] + [k for k in seen if k not in _FIRST]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a curves CSV, numbers as floats (``step`` as int); none if the file is missing."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in (None, ""):
                    continue
                try:
                    row[key] = int(value) if key == "step" else float(value)
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``rows`` as a CSV (replaced atomically)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def plot(rows: Sequence[dict[str, Any]], out: Path, title: str) -> Path | None:
    """Draw the loss (and DPO's reward accuracy and margin, where logged) against the step into
    ``out``; None when there is nothing to draw or matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = [k for k in _PLOTTED if any(_finite(r.get(k)) for r in rows)]
    if not series:
        return None
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], series, strict=True):
        points = [(r["step"], r[key]) for r in rows if "step" in r and _finite(r.get(key))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 60 else None)
        ax.set_ylabel(key.replace("rewards/", "reward "))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("optimizer step")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
