"""Training levers: the SetFit stage's recipe variants against plain setfit, same support sets.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/training_levers.py \
        --datasets cr,emotion,ag_news,amazon_counterfactual_en,hwu64 \
        --lever pairs:loss=pairs --lever contrastive:loss=contrastive

Each lever is ``NAME:key=value,...`` over :class:`fewshot.stages.finetune.SetFitConfig`'s
fields. A cell trains a fresh packaged encoder on the (dataset, N, seed) support set of
benchmarks/accuracy.py (the same draw), fits the head (``train_model``: the model alone, no
gate, no workspace), and classifies the full test split. ``train_seconds`` is the training
(encoder and head), ``peak_rss_mib`` the process's peak RSS after the cell (a true figure
for the first cell of a process only). Plain setfit's figures are read from
benchmarks/accuracy.py's cell cache (run ``--methods setfit`` there first, same machine,
``OMP_NUM_THREADS=1`` for both). Cells are cached under benchmarks/.cache/levers/.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    DEFAULT_CACHE,
    DEFAULT_DATA,
    HERE,
    ROOT,
    digest,
    machine,
    read_split,
    sample_support,
    source_fingerprint,
    write_json,
)

TRAINING_CODE = ("finetune.py", "contrastive.py", "setfit.py")


def config_of(spec: str, seed: int) -> Any:
    from fewshot.stages.finetune import SetFitConfig

    kinds = {f.name: f.type for f in fields(SetFitConfig)}
    values: dict[str, Any] = {"random_state": seed}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        kind = kinds[key]
        values[key] = value if kind == "str" else (int if kind == "int" else float)(value)
    return SetFitConfig(**values)


def train_cell(texts: list[str], labels: list[str], config: Any, head_c: str) -> dict[str, Any]:
    from fewshot.embed import resolve_model
    from fewshot.stages.finetune import Run, fine_tune, fresh_body
    from fewshot.stages.setfit import Head, SetFitModel, cross_validated_c, encode_body

    body = fresh_body(resolve_model("default"))
    losses: list[float] = []
    import torch

    torch.manual_seed(config.random_state)
    with tempfile.TemporaryDirectory(prefix="levers-") as work:
        start, cpu = time.perf_counter(), time.process_time()
        fine_tune(body, texts, labels, Run(config, Path(work)), losses=losses)
        tuned = time.perf_counter() - start
        vectors = encode_body(body, texts)
        c = (
            cross_validated_c(vectors, labels, config.random_state)
            if head_c == "cv"
            else float(head_c)
        )
        model = SetFitModel(body, Head.fit(vectors, labels, config.random_state, c))
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {"model": model, "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
            "encoder_seconds": tuned,
            "steps": len(losses), "c": c, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}  # fmt: skip


def setfit_record(cache: Path, dataset: str, n: int, seed: int) -> dict[str, Any] | None:
    found = sorted((cache / "cells").glob(f"{dataset}-n{n}-s{seed}-setfit-*.json"))
    return json.loads(found[-1].read_text()) if found else None


def table(paths: list[Path], cache: Path) -> str:
    """The markdown table of the rows in ``paths``, plain setfit's cells read from the cache."""
    lines = [
        "| dataset | lever | texts | steps | accuracy | setfit | diff | CPU s | setfit CPU s "
        "| CPU ratio | wall s | setfit wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    results = json.loads((HERE / "results.json").read_text())
    earlier = {
        (r["dataset"], r["n_per_label"], r["seed"]): r["accuracy"]
        for r in results
        if r["method"] == "setfit"
    }

    def cell(value: float | None, form: str) -> str:
        return "n/a" if value is None else format(value, form)

    for path in paths:
        for row in json.loads(path.read_text())["rows"]:
            base = setfit_record(cache, row["dataset"], row["n"], row["seed"]) or {}
            mark = ""
            if not base:  # not in the cache yet: the accuracy of results.json's cell (*)
                base = {"accuracy": earlier.get((row["dataset"], row["n"], row["seed"]))}
                mark = "*" if base["accuracy"] is not None else ""
            acc, cpu = base.get("accuracy"), base.get("train_cpu_seconds")
            mine = row.get("train_cpu_seconds")
            diff = None if acc is None else row["accuracy"] - acc
            ratio = None if cpu is None or mine is None else mine / cpu
            lines.append(
                f"| {row['dataset']} | {row['lever']} ({row['spec']}, C {row['head_c']}) "
                f"| {row['n_train']} | {row['steps']} | {row['accuracy']:.4f} "
                f"| {cell(acc, '.4f')}{mark} | {cell(diff, '+.4f')} "
                f"| {cell(mine, '.1f')} | {cell(cpu, '.1f')} | {cell(ratio, '.3f')} "
                f"| {row['train_seconds']:.1f} | {cell(base.get('train_seconds'), '.1f')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", default="cr,emotion,ag_news,amazon_counterfactual_en")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lever", action="append", default=[], metavar="NAME:key=value,...")
    parser.add_argument("--head-c", default="1", help="the head's C (a number, or cv)")
    parser.add_argument(
        "--test-limit", type=int, default=0, help="score on this many test texts (seeded draw)"
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=HERE / "training_levers.json")
    parser.add_argument("--table", type=Path, nargs="*", help="print the table of these files")
    args = parser.parse_args()
    if args.table:
        print(table(args.table, args.cache_dir))
        return
    from fewshot.metrics import evaluate_labels
    from fewshot.stages.setfit import Head, cross_validated_c

    code = source_fingerprint(ROOT / "fewshot" / "stages" / f for f in TRAINING_CODE)
    old = json.loads(args.out.read_text()) if args.out.exists() else {"rows": []}
    rows = {(r["dataset"], r["n"], r["seed"], r["lever"], r.get("n_test")): r for r in old["rows"]}
    for dataset in args.datasets.split(","):
        train, test = (read_split(args.data_dir, dataset, s) for s in ("train", "test"))
        texts, labels = sample_support(train[0], train[1], args.n, args.seed)
        base = (
            None if args.test_limit else setfit_record(args.cache_dir, dataset, args.n, args.seed)
        )
        if args.test_limit and args.test_limit < len(test[0]):
            keep = np.random.default_rng(0).permutation(len(test[0]))[: args.test_limit]
            test = ([test[0][i] for i in keep], [test[1][i] for i in keep])
        for lever in args.lever:
            name, _, spec = lever.partition(":")
            limit = str(args.test_limit)
            key = digest([code, dataset, str(args.n), str(args.seed), spec, args.head_c, limit])
            path = args.cache_dir / "levers" / f"{dataset}-n{args.n}-s{args.seed}-{name}-{key}.json"
            if path.exists():
                row = json.loads(path.read_text())
            else:
                config = config_of(spec, args.seed)
                cell = train_cell(texts, labels, config, args.head_c)
                model = cell.pop("model")
                test_vectors = model.encode(test[0])
                proba = model.head.predict_proba(test_vectors)
                answers = [model.classes[i] for i in np.argmax(proba, axis=1)]
                # the same encoder with the head's C chosen by cross-validation (a lever)
                vectors = model.encode(texts)
                cv = cross_validated_c(vectors, labels, args.seed)
                other = Head.fit(vectors, labels, args.seed, cv).predict_proba(test_vectors)
                cell["c_cv"] = cv
                cell["accuracy_c_cv"] = evaluate_labels(
                    test[1], [model.classes[i] for i in np.argmax(other, axis=1)]
                ).accuracy
                row = {"dataset": dataset, "n": args.n, "seed": args.seed, "lever": name,
                       "spec": spec, "head_c": args.head_c, "n_train": len(texts),
                       "n_test": len(test[0]),
                       "accuracy": evaluate_labels(test[1], answers).accuracy, **cell,
                       "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                       "machine": machine(), "code": code}  # fmt: skip
                write_json(path, row)
            if base is not None:
                row["setfit_accuracy"] = base["accuracy"]
                row["setfit_seconds"] = base["train_seconds"]
                row["time_ratio"] = row["train_seconds"] / base["train_seconds"]
                if "train_cpu_seconds" in base and "train_cpu_seconds" in row:
                    row["setfit_cpu_seconds"] = base["train_cpu_seconds"]
                    row["cpu_ratio"] = row["train_cpu_seconds"] / base["train_cpu_seconds"]
                row["accuracy_minus_setfit"] = row["accuracy"] - base["accuracy"]
            rows[(dataset, args.n, args.seed, name, row["n_test"])] = row
            print(json.dumps({k: row.get(k) for k in ("dataset", "lever", "accuracy",
                  "setfit_accuracy", "train_seconds", "setfit_seconds", "time_ratio", "cpu_ratio",
                  "steps",
                  "loss_first", "loss_last")}), file=sys.stderr, flush=True)  # fmt: skip
            write_json(args.out, {"rows": sorted(rows.values(), key=lambda r: (r["dataset"],
                       r["lever"]))})  # fmt: skip


if __name__ == "__main__":
    main()
