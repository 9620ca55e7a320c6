"""Rendering records for people (rich tables) and scripts (JSON, JSONL, CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any

OUTPUT_FORMATS = ("table", "json", "jsonl", "csv")


def write_records(records: Sequence[dict[str, Any]], fmt: str, stream: IO[str]) -> None:
    """Write prediction records as ``json``, ``jsonl`` or ``csv`` (nested fields as JSON)."""
    if fmt == "json":
        stream.write(json.dumps(list(records), ensure_ascii=False, indent=2) + "\n")
    elif fmt == "jsonl":
        for record in records:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        columns: list[str] = []
        for record in records:
            columns += [key for key in record if key not in columns]
        writer = csv.DictWriter(stream, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(
                {
                    key: json.dumps(value, ensure_ascii=False)
                    if isinstance(value, (dict, list))
                    else value
                    for key, value in record.items()
                }
            )
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def predictions_table(records: Sequence[dict[str, Any]], shown_neighbors: int = 3) -> Any:
    """Return a rich Table of prediction records, with the top neighbours when present."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=True)
    table.add_column("text", overflow="fold")
    table.add_column("label", style="bold")
    table.add_column("confidence", justify="right")
    table.add_column("stage")
    for record in records:
        text = _short(record["text"])
        for near in (record.get("neighbors") or [])[:shown_neighbors]:
            text += f"\n  {near['similarity']:.2f}  [{near['label']}] {_short(near['text'], 60)}"
        stage = record["stage"] + (f" ({record['fallback']})" if record.get("fallback") else "")
        # Text(...): user texts and labels are shown as they are, never read as rich markup
        # (a "[label]" would otherwise vanish as an unknown style tag).
        confidence = f"{record['confidence']:.2f}"
        table.add_row(Text(text), Text(record["label"]), confidence, Text(stage))
    return table


def status_table(status: dict[str, Any]) -> Any:
    """Return the status for people: each label's distance to the threshold, then a summary."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"workspace {status['path']}"), show_header=True)
    table.add_column("label")
    table.add_column("examples", justify="right")
    table.add_column(f"to threshold ({status['threshold']})", justify="right")
    for label, count in status["labels"].items():
        left = max(status["threshold"] - count, 0)
        table.add_row(Text(label), str(count), "reached" if left == 0 else str(left))
    model = f"v{status['model']}" if status["model"] is not None else "none"
    summary = (
        f"{status['examples']} examples · stage: {status['stage']} · model: {model}\n"
        f"encoder: {status['encoder']}"
    )
    if status.get("training"):
        summary += "\ntraining: under way (a SetFit model is being trained now)"
    elif status.get("training_due"):
        summary += f"\ntraining: due ({status['training_due']})"
    parts: list[Any] = [table]
    if status.get("models"):
        parts.append(models_table(status["models"]))
    return Group(*parts, Text(summary))


def _when(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def models_table(models: Sequence[dict[str, Any]]) -> Any:
    """Return a rich Table of the model versions: status, when, size and the gate's figures."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="models", show_header=True)
    for name in ("version", "status", "trained"):
        table.add_column(name)
    table.add_column("examples", justify="right")
    table.add_column("held-out accuracy")
    table.add_column("gate")
    for m in models:
        metrics = m.get("metrics") or {}
        table.add_row(
            f"v{m['version']}",
            m["status"],
            _when(m["created_at"]),
            str(m["n_examples"]),
            Text(gate_figures(metrics)),
            Text(str(metrics.get("gate") or "")),
        )
    return table


def gate_figures(metrics: dict[str, Any]) -> str:
    """Return what the gate compared: "0.83 vs 0.67 retrieval, on 6" ('' if none recorded).

    The candidate's accuracy on the same held-out texts as the stage it was compared with
    (a serving SetFit version is scored only on those it never saw); versions trained
    before the held-out gate recorded cross-validated figures, marked "(cv)".
    """
    ours = metrics.get("accuracy_compared", metrics.get("cv_accuracy_compared"))
    theirs = metrics.get("baseline_accuracy")
    if ours is None or theirs is None:
        return ""
    shown = f"{ours:.2f} vs {theirs:.2f} {metrics.get('baseline', '')}".rstrip()
    if metrics.get("compared_on") is not None:
        shown += f", on {metrics['compared_on']}"
    return shown + (" (cv)" if "accuracy_compared" not in metrics else "")
