"""Accuracy of fewshot's SetFit training against its step cap, and against the plain library.

For each dataset, seed and examples-per-label N, one support set is drawn (seeded) and:

* ``cap=S``: fewshot's training (fewshot.stages.setfit.train_model): sampled pairs, 40 per
  example as in the paper, at most S steps (one training of the whole support set);
* ``pairs=P``: the same training with P pairs per example and the default cap of 1000 steps;
* ``paper``: the plain setfit library as the SetFit paper ran it (num_iterations=20, one
  epoch, batch 16, its own pair sampler and LogisticRegression head), on the same support set;
* ``retrieval``: fewshot's retrieval stage on the same support set.

Each cell's accuracy, training seconds (same process, same machine, so ratios compare) and
reliability bins (confidence vs accuracy) are cached under benchmarks/.cache/setfit_cap/.

    nice -n 10 .venv/bin/python benchmarks/setfit_cap.py --datasets sst2 emotion --per-label 8 \
        --caps 10 25 50 100 --seeds 0 --test-size 300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "setfit_cap"


def read(data_dir: Path, name: str, split: str) -> list[dict[str, str]]:
    path = data_dir / name / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def support_set(rows: list[dict[str, str]], per_label: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(str(row["label"]), []).append(row)
    return [r for label in sorted(by_label) for r in rng.sample(by_label[label], per_label)]


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 5) -> list[dict]:
    """Equal-count confidence bins, lowest first: each bin's mean confidence and accuracy."""
    order = np.argsort(confidence, kind="stable")
    bins = []
    for part in np.array_split(order, n_bins):
        if len(part):
            bins.append(
                {
                    "n": len(part),
                    "confidence": float(confidence[part].mean()),
                    "accuracy": float(correct[part].mean()),
                }
            )
    return bins


def score(proba: np.ndarray, classes: list[str], gold: list[str]) -> dict[str, Any]:
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    correct = pred == np.asarray(gold)
    confidence = proba.max(axis=1)
    return {
        "accuracy": float(correct.mean()),
        "bins": reliability(confidence, correct),
        "confidence": [round(float(c), 5) for c in confidence],
        "correct": correct.astype(int).tolist(),
    }


def run_cap(
    texts: list[str],
    labels: list[str],
    test: list[str],
    gold: list[str],
    cap: int,
    seed: int,
    pairs: int = 40,
) -> dict[str, Any]:
    from fewshot.embed import resolve_model
    from fewshot.stages.finetune import SetFitConfig, fresh_body, train_model

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        config = SetFitConfig(max_steps=cap, pairs_per_example=pairs, random_state=seed)
        model = train_model(fresh_body(resolve_model("default")), texts, labels, config, Path(work))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **score(model.predict_proba(test), list(model.classes), gold)}


def run_paper(
    texts: list[str], labels: list[str], test: list[str], gold: list[str], seed: int
) -> dict[str, Any]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from fewshot.embed import resolve_model

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        model = SetFitModel.from_pretrained(resolve_model("default"))
        args = TrainingArguments(
            output_dir=work,
            num_iterations=20,
            num_epochs=1,
            batch_size=16,
            seed=seed,
            report_to="none",
            save_strategy="no",
        )
        Trainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        ).train()
    seconds = time.perf_counter() - start
    proba = np.asarray(model.predict_proba(test, as_numpy=True))
    classes = [str(c) for c in model.model_head.classes_]
    return {"seconds": seconds, **score(proba, classes, gold)}


def run_retrieval(
    texts: list[str], labels: list[str], test: list[str], gold: list[str]
) -> dict[str, Any]:
    from fewshot.classifier import FewShotClassifier

    start = time.perf_counter()
    clf = FewShotClassifier().fit(texts, labels)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **score(clf.predict_proba(test), list(clf.classes_), gold)}


def cell(args: argparse.Namespace, name: str, per_label: int, seed: int, method: str) -> dict:
    key = f"{name}-n{per_label}-s{seed}-t{args.test_size}-{method}.json"
    path = CACHE / key
    if path.exists():
        return dict(json.loads(path.read_text()))
    train = support_set(read(args.data_dir, name, "train"), per_label, seed)
    test_rows = read(args.data_dir, name, "test")
    random.Random(seed).shuffle(test_rows)
    test_rows = test_rows[: args.test_size]
    texts, labels = [r["text"] for r in train], [str(r["label"]) for r in train]
    test, gold = [r["text"] for r in test_rows], [str(r["label"]) for r in test_rows]
    if method == "paper":
        result = run_paper(texts, labels, test, gold, seed)
    elif method == "retrieval":
        result = run_retrieval(texts, labels, test, gold)
    elif method.startswith("pairs="):
        pairs = int(method.split("=")[1])
        result = run_cap(texts, labels, test, gold, 1000, seed, pairs)
    else:
        result = run_cap(texts, labels, test, gold, int(method.split("=")[1]), seed)
    result.update(dataset=name, per_label=per_label, seed=seed, method=method)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--datasets", nargs="+", default=["sst2", "emotion"])
    parser.add_argument("--per-label", nargs="+", type=int, default=[8])
    parser.add_argument("--caps", nargs="*", type=int, default=[10, 25, 50, 100])
    parser.add_argument("--pairs", nargs="*", type=int, default=[], help="pairs per example")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--no-paper", action="store_true", help="skip the plain-library run")
    args = parser.parse_args()
    methods = ["retrieval"] + [f"cap={c}" for c in args.caps] + [f"pairs={p}" for p in args.pairs]
    methods += [] if args.no_paper else ["paper"]
    for name in args.datasets:
        for per_label in args.per_label:
            for seed in args.seeds:
                for method in methods:
                    r = cell(args, name, per_label, seed, method)
                    bins = [(round(b["confidence"], 2), round(b["accuracy"], 2)) for b in r["bins"]]
                    print(
                        f"{name:10s} N={per_label:<3d} seed={seed} {method:10s} "
                        f"acc={r['accuracy']:.3f} train={r['seconds']:7.1f}s bins={bins}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
