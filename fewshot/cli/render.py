"""Everything the CLI shows: rich tables for people, JSON / JSONL / CSV records for scripts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from fewshot.dataio import write_csv, write_jsonl

if TYPE_CHECKING:
    from fewshot.settings import Value
    from fewshot.values import AddResult, TrainReport

FORMATS = ("table", "json", "jsonl", "csv")
T = TypeVar("T")


def flushed(result: T) -> T:
    """Return ``result`` once stdout is flushed: a closed pipe shows now, not at exit."""
    sys.stdout.flush()
    return result


def closed_pipe() -> int:
    """Send what is left for stdout to /dev/null (its reader is gone); return exit status 0.

    ``fewshot export | head -1`` ends quietly, as ``head`` users expect.
    """
    with contextlib.suppress(OSError, ValueError):  # no file descriptor under CliRunner
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def added_message(result: AddResult, path: Path, total: int) -> str:
    """Return what an add or import reports."""
    return (
        f"Added {result.added} example(s) to {path} "
        f"({result.unchanged} already labeled, {result.relabeled} relabeled); {total} in all."
    )


def trained_message(report: TrainReport) -> str:
    """Return what a training reports: the version, the gate's figures and its verdict."""
    figures = report.figures
    verdict = "serves now" if report.promoted else f"kept out; {figures.serving} still serves"
    return (
        f"Trained SetFit model v{report.version} ({report.reason}): held-out accuracy "
        f"{figures.accuracy_compared:.3f} vs {figures.baseline} "
        f"{figures.baseline_accuracy:.3f}; {verdict} ({report.gate})."
    )


def version_message(model: dict[str, Any]) -> str:
    """Return what ``train --wait`` reports of the version a background training recorded."""
    metrics = model.get("metrics") or {}
    verdict = "serves now" if model["status"] == "serving" else f"is {model['status']}"
    figures = gate_figures(metrics) or "no figures recorded"
    return (
        f"Trained SetFit model v{model['version']} ({metrics.get('reason', 'reason unknown')}): "
        f"held-out accuracy {figures}; it {verdict} ({metrics.get('gate', '')})."
    )


def settings_lines(values: Sequence[Value]) -> str:
    """Return settings as ``key = value`` lines, with the default and source when not default."""

    def shown(value: Any) -> str:
        return "(unset)" if value is None else visible(str(value))

    lines = []
    for v in values:
        line = f"{v.key} = {shown(v.value)}"
        if v.source != "default":
            line += f"  ({v.source}; default {shown(v.default)})"
        lines.append(line)
    return "\n".join(lines)


def write_records(records: Sequence[dict[str, Any]], fmt: str, stream: IO[str]) -> None:
    """Write prediction records as ``json``, ``jsonl`` or ``csv`` (nested fields as JSON)."""
    if fmt == "json":
        stream.write(json.dumps(list(records), ensure_ascii=False, indent=2) + "\n")
    elif fmt == "jsonl":
        write_jsonl(records, stream)
    elif fmt == "csv":
        columns: list[str] = []
        for record in records:
            columns += [key for key in record if key not in columns]
        flat = [
            {
                key: json.dumps(value, ensure_ascii=False)
                if isinstance(value, (dict, list))
                else value
                for key, value in record.items()
            }
            for record in records
        ]
        write_csv(flat, columns, stream)
    else:
        raise ValueError(f"unknown format {fmt!r}")


# C0 and C1 controls, DEL, the line and paragraph separators, the bidi embeddings/isolates.
_OTHERS = "\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069"
_CONTROL = re.compile(f"[\\x00-\\x1f{_OTHERS}]")
_CONTROL_BUT_LINES = re.compile(f"[\\x00-\\x08\\x0b-\\x1f{_OTHERS}]")  # keeps \\t and \\n
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}")


def visible(text: str, lines: bool = False) -> str:
    r"""Return ``text`` with control characters as visible escapes (``\n``, ``\x00``, ``\x1b``).

    What a table or screen shows never moves the cursor, clears the screen or reorders the
    line; JSON, JSONL and CSV output stay exact. With ``lines``, newlines and tabs stay.
    """
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_escape, text)


def cut(text: str, width: int, flat: bool = True) -> str:
    """Return ``text`` for a table cell: on one line (with ``flat``), cut to ``width`` with ….

    Control characters are shown as escapes (:func:`visible`).
    """
    shown = visible(" ".join(text.split())) if flat else visible(text, lines=True)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


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
        text = cut(record["text"], 70)
        for near in (record.get("neighbors") or [])[:shown_neighbors]:
            label = visible(near["label"]) + (" description" if near.get("kind") else "")
            text += f"\n  {near['similarity']:.2f}  [{label}] {cut(near['text'], 60)}"
        stage = record["stage"] + (f" ({record['fallback']})" if record.get("fallback") else "")
        # Text(...): user texts and labels are shown as they are, never read as rich markup
        # (a "[label]" would otherwise vanish as an unknown style tag).
        confidence = f"{record['confidence']:.2f}"
        table.add_row(Text(text), Text(shown_label(record)), confidence, Text(visible(stage)))
    return table


def shown_label(record: dict[str, Any]) -> str:
    """Return the label cell: the label, or "none of these (best: X, in scope 0.01)"."""
    if not record.get("abstained"):
        return visible(str(record["label"]))
    best = visible(str(record.get("best_label")))
    score = record.get("in_scope")
    return f"none of these (best: {best}" + (
        f", in scope {score:.2f})" if score is not None else ")"
    )


def labels_table(labels: Sequence[dict[str, Any]]) -> Any:
    """Return a rich Table of ``fewshot labels``: name, description, examples, declared."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_header=True)
    for column in ("label", "description", "examples", "declared"):
        table.add_column(column, justify="right" if column == "examples" else "left")
    for row in labels:
        description = "" if row["description"] is None else visible(row["description"])
        declared = "yes" if row["declared"] else "no (examples only)"
        table.add_row(Text(visible(row["name"])), Text(description), str(row["examples"]), declared)
    return table


def status_table(status: dict[str, Any]) -> Any:
    """Return the status for people: each label's distance to the threshold, then a summary."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"workspace {visible(str(status['path']))}"), show_header=True)
    table.add_column("label")
    table.add_column("examples", justify="right")
    table.add_column(f"to threshold ({status['threshold']})", justify="right")
    for label, count in status["labels"].items():
        left = max(status["threshold"] - count, 0)
        table.add_row(Text(visible(label)), str(count), "reached" if left == 0 else str(left))
    model = f"v{status['model']}" if status["model"] is not None else "none"
    summary = (
        f"{status['examples']} examples · stage: {status['stage']} · model: {model}\n"
        f"encoder: {visible(str(status['encoder']))}"
    )
    abstain = status.get("abstain") or {}
    if abstain.get("on"):
        summary += f"\nabstain: on, target {abstain['target']:g}; " + (
            f"threshold {abstain['threshold']:.3f} from {abstain['scored']} examples"
            if abstain.get("threshold") is not None
            else "no threshold yet (needs two labels and 4 examples scored leave-one-out)"
        )
    if status.get("model_problem"):
        summary += f"\nmodel: {status['model_problem']}; retrieval answers meanwhile"
    if status.get("llm"):
        summary += f"\nllm: {visible(llm_figures(status['llm']))}"
    if status.get("training"):
        summary += f"\ntraining: under way ({_progress(status.get('training_progress'))})"
    elif status.get("training_due"):
        summary += f"\ntraining: due ({status['training_due']})"
    parts: list[Any] = [table]
    if status.get("models"):
        parts.append(models_table(status["models"]))
    return Group(*parts, Text(summary))


def llm_figures(llm: dict[str, Any]) -> str:
    """Return what the gate measured of the LLM: "0.92 vs 0.67 retrieval, on 12 ...: it serves"."""
    if llm.get("error"):
        return f"not measured ({llm['error']})"
    if not llm.get("measured"):
        return "not measured yet: it answers as configured; the next training measures it"
    verdict = "it serves" if llm["serves"] else f"not better, {llm['local']} serves"
    return (
        f"{llm['accuracy']:.2f} vs {llm['local_accuracy']:.2f} {llm['local']}, "
        f"on {llm['compared_on']} held-out texts: {verdict}"
    )


def _progress(record: dict[str, Any] | None) -> str:
    """Where a training is: "step 12 of 40", else its phase."""
    record = record or {}
    if record.get("phase") == "training" and record.get("steps"):
        return f"step {record.get('step', 0)} of {record['steps']}"
    return str(record.get("phase") or "starting")


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
            Text(visible(gate_figures(metrics))),
            Text(visible(str(metrics.get("gate") or ""))),
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


def eval_table(report: dict[str, Any]) -> Any:
    """Return the report for people: a summary, per-label scores and the confusion matrix."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    scores = Table(title="per label", show_header=True)
    for column in ("label", "precision", "recall", "f1", "support"):
        scores.add_column(column, justify="left" if column == "label" else "right")
    for label, s in report["per_label"].items():
        mark = " (unknown)" if label in report["unknown_labels"] else ""
        scores.add_row(
            Text(visible(label) + mark), f"{s['precision']:.3f}", f"{s['recall']:.3f}",
            f"{s['f1']:.3f}", str(s["support"]),
        )  # fmt: skip
    labels = report["confusion"]["labels"]
    matrix = Table(title="confusion (row = true, column = predicted)", show_header=True)
    matrix.add_column("true \\ predicted")
    for label in labels:
        matrix.add_column(Text(visible(label)), justify="right")
    for label, row in zip(labels, report["confusion"]["matrix"]):
        matrix.add_row(Text(visible(label)), *(str(x) for x in row))
    stages = ", ".join(f"{name} {count}" for name, count in report["stages"].items())
    lines = [
        f"{visible(str(report['path']))}: n={report['n']}  accuracy={report['accuracy']:.3f}  "
        f"macro-F1={report['macro_f1']:.3f}  MCC={report['mcc']:.3f}  ECE={report['ece']:.3f}",
        f"answered by: {stages}  ·  {report['texts_per_second']:.1f} texts/s",
    ]
    if report["unknown_labels"]:
        unknown = ", ".join(f"{visible(k)} ({v})" for k, v in report["unknown_labels"].items())
        known = report["known"]
        known_acc = "n/a" if known["accuracy"] is None else f"{known['accuracy']:.3f}"
        lines.append(
            f"labels the workspace does not know (counted as errors): {unknown}; "
            f"accuracy on the {known['n']} rows with known labels: {known_acc}"
        )
    lines += scope_lines(report)
    return Group(Text("\n".join(lines)), scores, matrix)


def scope_lines(report: dict[str, Any]) -> list[str]:
    """Return the eval summary's lines on out-of-scope rows and refusals."""
    oos = report.get("out_of_scope")
    if oos is None:
        return (
            [f"refused (none of these): {report['abstained']}"] if report.get("abstained") else []
        )

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    ins = oos["in_scope"]
    return [
        f"out of scope: {oos['n']} rows, recall={num(oos['recall'])} "
        f"precision={num(oos['precision'])} AUROC={num(oos['auroc'])}; in scope: {ins['n']} rows, "
        f"accuracy={num(ins['accuracy'])} refused={num(ins['refused'])}"
    ]


def compare_table(reports: Sequence[dict[str, Any]]) -> Any:
    """Return ``eval --compare`` for people: one row per stage, the same texts for each."""
    from rich.table import Table
    from rich.text import Text

    first = reports[0]
    table = Table(title=Text(f"{first['path']}: {first['n']} texts, every stage"))
    table.add_column("stage")
    scoped = first.get("out_of_scope") is not None
    extra = ("in-scope accuracy", "OOS recall", "AUROC") if scoped else ()
    for name in ("accuracy", "macro-F1", "ECE", "texts/s", "LLM calls", *extra):
        table.add_column(name, justify="right")
    for r in reports:
        oos = r.get("out_of_scope") or {}
        cells = [oos["in_scope"]["accuracy"], oos["recall"], oos["auroc"]] if scoped else []
        table.add_row(
            Text(r["stage"]), f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}", f"{r['ece']:.3f}",
            f"{r['texts_per_second']:.1f}", str(r["llm_calls"]),
            *("n/a" if c is None else f"{c:.3f}" for c in cells),
        )  # fmt: skip
    return table
