"""Calibration of a serving SetFit model: which temperature rule holds across datasets.

For each support set (dataset, N, seed; benchmarks/accuracy.py's draw), the automatic
pipeline trains as a user's workspace does (import the support set, the gate promotes or
not), then classifies the test split. Two things are kept per cell, under
benchmarks/.cache/calibration_setfit/ (git-ignored; an interrupted run resumes):

- what the gate fitted its temperature on: the first-phase candidate's head scores on the
  held-out texts and their true columns (captured from ``fewshot.tasks.gate``'s call of
  ``fit_temperature``; nothing else of the training is touched);
- the served head's scores on the test split with its temperature undone (``scores ** T``,
  renormalised; the same answers), and the test labels.

Every rule below is then applied to the same cells, so the rules differ only in the
temperature they choose (the answers never change). Rules that depend on a constant taken
from the benchmark (a prior temperature) are scored leave-one-dataset-out: the constant for
a dataset is fitted on the other datasets' test sets only. ``oracle`` is the best
temperature for each test set itself: the floor that temperature scaling can reach.

    nice -n 10 .venv/bin/python benchmarks/calibration_setfit.py --n 8 --seeds 0,1,2
    .venv/bin/python benchmarks/calibration_setfit.py --table   # rules from the cache only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import DEFAULT_DATA, HERE, SETFIT_DATASETS, digest, package_fingerprint, write_json

CACHE = HERE / ".cache" / "calibration_setfit"
OUT = HERE / "experiments" / "calibration_setfit.json"


def capture_cell(data: Path, dataset: str, n: int, seed: int) -> dict[str, Any]:
    """Train the pipeline on one support set; return the held-out fit and the test scores."""
    from common import read_split, sample_support

    import fewshot.tasks.gate as gate
    from fewshot.workspace import Workspace

    texts, labels = read_split(data, dataset, "train")
    test_texts, test_labels = read_split(data, dataset, "test")
    support, support_labels = sample_support(texts, labels, n, seed)
    fits: list[tuple[np.ndarray, np.ndarray]] = []
    # The gate's fitting function, whichever this code has (the rule changed in session 12).
    name = (
        "fit_temperature_towards" if hasattr(gate, "fit_temperature_towards") else "fit_temperature"
    )
    original = getattr(gate, name)

    def recording(proba: np.ndarray, truth: np.ndarray, *args: Any, **kwargs: Any) -> float:
        fits.append((np.asarray(proba, dtype=np.float64), np.asarray(truth, dtype=np.int64)))
        return float(original(proba, truth, *args, **kwargs))

    setattr(gate, name, recording)
    try:
        with tempfile.TemporaryDirectory(prefix="fewshot-calib-") as tmp:
            path = Path(tmp) / "support.jsonl"
            path.write_text(
                "".join(
                    json.dumps({"text": t, "label": lab}) + "\n"
                    for t, lab in zip(support, support_labels)
                ),
                encoding="utf-8",
            )
            with Workspace.create(Path(tmp) / "ws") as ws:
                ws.import_file(path)
                predictions = ws.classify(test_texts)
                status = ws.status()
    finally:
        setattr(gate, name, original)
    if not status["models"] or not fits:
        raise SystemExit(f"{dataset} N={n} seed={seed}: no SetFit model was trained")
    model = status["models"][-1]
    metrics = model["metrics"]
    temperature = float(metrics["head_temperature"])
    classes = list(predictions[0].scores)
    proba = np.asarray([[p.scores[c] for c in classes] for p in predictions], dtype=np.float64)
    raw = proba**temperature
    raw /= raw.sum(axis=1, keepdims=True)
    held_proba, held_truth = fits[-1]
    return {
        "dataset": dataset,
        "n_per_label": n,
        "seed": seed,
        "status": model["status"],
        "stages": sorted({p.stage for p in predictions}),
        "classes": classes,
        "head_temperature": temperature,
        "head_temperature_fitted": metrics.get("head_temperature_fitted"),
        "held_proba": held_proba.tolist(),
        "held_truth": held_truth.tolist(),
        "test_raw": raw.tolist(),
        "test_truth": [classes.index(g) if g in classes else -1 for g in test_labels],
        "accuracy": float(np.mean([p.label == g for p, g in zip(predictions, test_labels)])),
    }


def ece(proba: np.ndarray, truth: np.ndarray) -> float:
    from fewshot.metrics import expected_calibration_error

    return float(expected_calibration_error(proba.max(axis=1), proba.argmax(axis=1) == truth))


def nll(proba: np.ndarray, truth: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, None)).mean())


def best_temperature(proba: np.ndarray, truth: np.ndarray, loss: Callable[..., float]) -> float:
    from fewshot.calibration import GRID, rescale

    return float(GRID[int(np.argmin([loss(rescale(proba, t), truth) for t in GRID]))])


def matched_temperature(
    proba: np.ndarray, truth: np.ndarray, prior: float, strength: float
) -> float:
    """Temperature whose mean top score equals the held-out accuracy smoothed towards ``prior``."""
    from fewshot.calibration import GRID, rescale

    right = float((proba.argmax(axis=1) == truth).sum())
    target = (right + strength * prior) / (len(truth) + strength)
    gaps = [abs(rescale(proba, t).max(axis=1).mean() - target) for t in GRID]
    return float(GRID[int(np.argmin(gaps))])


def table(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """ECE per rule per cell, means per N (and, at N = 8, over the six SetFit-paper datasets)."""
    from fewshot.calibration import (
        fit_temperature,
        fit_temperature_towards,
        head_prior,
        rescale,
        shrunk,
    )

    arrays = []
    for c in cells:
        if not (c["usable"] if "usable" in c else c["stages"] == ["setfit"]):  # rejected: no head
            continue
        keep = np.asarray(c["test_truth"]) >= 0
        arrays.append(
            {
                **c,
                "hp": np.asarray(c["held_proba"]),
                "ht": np.asarray(c["held_truth"], dtype=np.int64),
                "tp": np.asarray(c["test_raw"])[keep],
                "tt": np.asarray(c["test_truth"], dtype=np.int64)[keep],
            }
        )
    for a in arrays:
        a["oracle_t"] = best_temperature(a["tp"], a["tt"], ece)
        a["oracle_nll_t"] = best_temperature(a["tp"], a["tt"], nll)

    def prior_for(a: dict[str, Any]) -> float:
        """Geometric mean of the other datasets' test-NLL temperatures at the same N."""
        others = [
            np.log(b["oracle_nll_t"])
            for b in arrays
            if b["dataset"] != a["dataset"] and b["n_per_label"] == a["n_per_label"]
        ]
        return float(np.exp(np.mean(others))) if others else 1.0

    def labels_prior_for(a: dict[str, Any]) -> float:
        """exp(a + b log labels), least squares over the other datasets' cells at the same N."""
        others = [
            b
            for b in arrays
            if b["dataset"] != a["dataset"] and b["n_per_label"] == a["n_per_label"]
        ]
        if len({b["hp"].shape[1] for b in others}) < 2:
            return prior_for(a)
        x = np.log([b["hp"].shape[1] for b in others])
        y = np.log([b["oracle_nll_t"] for b in others])
        slope, intercept = np.polyfit(x, y, 1)
        return float(np.exp(intercept + slope * np.log(a["hp"].shape[1])))

    rules: dict[str, Callable[[dict[str, Any]], float]] = {
        "none (T = 1)": lambda a: 1.0,
        "before: NLL fit, log T x n/(n+20)": lambda a: shrunk(
            fit_temperature(a["hp"], a["ht"]), len(a["ht"])
        ),
        "NLL fit, log T x n/(n+5)": lambda a: shrunk(
            fit_temperature(a["hp"], a["ht"]), len(a["ht"]), 5
        ),
        "NLL fit, unshrunk": lambda a: fit_temperature(a["hp"], a["ht"]),
        "prior T (LODO) alone": prior_for,
        "MAP around prior T (LODO), weight 5": lambda a: fit_temperature_towards(
            a["hp"], a["ht"], prior_for(a), 5.0
        ),
        "MAP around prior T (LODO), weight 20": lambda a: fit_temperature_towards(
            a["hp"], a["ht"], prior_for(a), 20.0
        ),
        "MAP around prior T (LODO), weight 2": lambda a: fit_temperature_towards(
            a["hp"], a["ht"], prior_for(a), 2.0
        ),
        "prior T by labels (LODO) alone": labels_prior_for,
        "MAP around prior T by labels (LODO), weight 5": lambda a: fit_temperature_towards(
            a["hp"], a["ht"], labels_prior_for(a), 5.0
        ),
        "match accuracy, +2 pseudo at 1/labels": lambda a: matched_temperature(
            a["hp"], a["ht"], 1 / a["hp"].shape[1], 2.0
        ),
        "match accuracy, +2 pseudo at 0.5 mean": lambda a: matched_temperature(
            a["hp"], a["ht"], 0.5 * (1 + 1 / a["hp"].shape[1]), 2.0
        ),
        "MAP around 0.35 at any N, weight 5 (in sample)": lambda a: fit_temperature_towards(
            a["hp"], a["ht"], 0.35
        ),
        "shipped: MAP around head_prior(N), weight 5 (in sample at N = 8)": lambda a: (
            fit_temperature_towards(a["hp"], a["ht"], head_prior(a["n_per_label"]))
        ),
        "oracle (test ECE)": lambda a: a["oracle_t"],
    }
    rows = []
    for a in arrays:
        row = {k: a[k] for k in ("dataset", "n_per_label", "seed", "accuracy", "status")}
        row["held_out"] = len(a["ht"])
        row["trained_temperature"] = a["head_temperature"]  # what the capturing code chose
        for name, rule in rules.items():
            t = rule(a)
            figure = ece(rescale(a["tp"], t), a["tt"])
            row[name] = {"temperature": round(t, 3), "ece": round(figure, 4)}
        rows.append(row)
    means: dict[str, dict[str, float]] = {}
    for n in sorted({r["n_per_label"] for r in rows}):
        subset = [r for r in rows if r["n_per_label"] == n]
        means[f"N={n}"] = {
            name: round(float(np.mean([r[name]["ece"] for r in subset])), 4) for name in rules
        }
        six = [r for r in subset if r["dataset"] in SETFIT_DATASETS]
        if six and len(six) < len(subset):
            means[f"N={n}, six SetFit-paper datasets"] = {
                name: round(float(np.mean([r[name]["ece"] for r in six])), 4) for name in rules
            }
    return {"rules": list(rules), "means": means, "cells": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join((*SETFIT_DATASETS, "hwu64")))
    parser.add_argument("--n", default="8")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table", action="store_true", help="score the cached cells only")
    args = parser.parse_args()
    code = package_fingerprint()
    cells = []
    for dataset in args.datasets.split(","):
        for n in (int(x) for x in args.n.split(",")):
            for seed in (int(x) for x in args.seeds.split(",")):
                path = CACHE / f"{dataset}-n{n}-s{seed}-{digest([code])}.json"
                older = sorted(CACHE.glob(f"{dataset}-n{n}-s{seed}-*.json"))
                if path.exists() or (args.table and older):
                    # --table scores any code's cell: a rule only reads the captured scores,
                    # which no temperature rule changes.
                    cells.append(json.loads((path if path.exists() else older[-1]).read_text()))
                    continue
                if args.table:
                    continue
                print(f"{dataset} N={n} seed={seed}", file=sys.stderr, flush=True)
                cell = {**capture_cell(args.data_dir, dataset, n, seed), "code": code}
                write_json(path, cell)
                cells.append(cell)
    result = table(cells)
    codes = sorted({c["code"] for c in cells})
    write_json(args.out, {"codes": codes, **result})
    for key, values in result["means"].items():
        print(key)
        for name, value in values.items():
            print(f"  {value:.4f}  {name}")


if __name__ == "__main__":
    main()
