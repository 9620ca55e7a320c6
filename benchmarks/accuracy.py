"""Few-shot accuracy on the shared datasets, by the SetFit paper's protocol.

For each dataset, N and seed: draw N labeled examples per label from train (seeded; the
SAME support set for every method), fit every method on it, evaluate on the full test split.
All methods use the same encoder (the packaged all-MiniLM-L6-v2 unless --model says other):

    knn             this project's retrieval stage (fewshot.stages.retrieval, default Vote)
    wknn            plain similarity-weighted kNN: k=10, each neighbour votes its cosine
    logreg          logistic regression on the frozen embeddings (scikit-learn defaults)
    setfit          the plain setfit library as the paper ran it: num_iterations=20,
                    1 epoch, batch size 16, default (logistic regression) head
    setfit-default  the plain setfit library with its current default arguments (N = 8 only)
    fewshot         the project's automatic pipeline: import the support set into a fresh
                    Workspace, let it do what it does on its own, classify the test split

Every cell is cached as JSON under benchmarks/.cache/accuracy/cells/ (git-ignored) and an
interrupted run resumes; --no-cache recomputes. Encoder embeddings (test splits included) are
cached too, with the seconds they took, so knn/wknn/logreg cells take seconds and their
throughput is still a measured one. A `fewshot` cell's key holds a hash of fewshot/**/*.py,
a `knn` cell's a hash of the retrieval code, so results of older code are never reused.

    nice -n 19 .venv/bin/python benchmarks/accuracy.py --n 8,64 --seeds 0,1,2 \
        --methods knn,wknn,logreg,setfit,setfit-default,fewshot

--out (default benchmarks/results.json) receives the records of this grid, merged into the
records already there (a cell computed again replaces its old record). Then run
benchmarks/report.py to regenerate RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ALL_DATASETS,
    DEFAULT_CACHE,
    DEFAULT_DATA,
    HERE,
    SETFIT_DATASETS,
    EmbeddingCache,
    digest,
    machine,
    package_fingerprint,
    read_split,
    retrieval_fingerprint,
    sample_support,
    write_json,
)

METHODS = ("knn", "wknn", "logreg", "setfit", "setfit-default", "fewshot")
SETFIT_DEFAULT_N = 8  # at N = 64 the default pair count takes hours on a CPU
WKNN_K = 10


@dataclass(frozen=True)
class Cell:
    """One (dataset, N, seed) support set and its test split, with cached embeddings."""

    dataset: str
    n: int
    seed: int
    support_texts: list[str]
    support_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]
    embeddings: EmbeddingCache
    model: str
    use_cache: bool
    fewshot_settings: tuple[tuple[str, str], ...] = ()

    def support_vectors(self) -> tuple[np.ndarray, float]:
        return self.embeddings.encode(self.support_texts, self.use_cache)

    def test_vectors(self) -> tuple[np.ndarray, float]:
        return self.embeddings.encode(self.test_texts, self.use_cache)


# A method returns (predicted labels, train seconds, predict seconds, extra record fields).
Outcome = tuple[Sequence[str], float, float, dict[str, Any]]


def run_knn(cell: Cell) -> Outcome:
    from fewshot.stages.retrieval import Memory, RetrievalStage, Vote

    support, encode_s = cell.support_vectors()
    test, test_s = cell.test_vectors()
    start = time.perf_counter()
    stage = RetrievalStage(Memory.build(cell.support_texts, cell.support_labels, support), Vote())
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted = [p.label for p in stage.predict(cell.test_texts, test)]
    return predicted, encode_s + fit_s, test_s + time.perf_counter() - start, {}


def wknn_predict(
    support: np.ndarray, labels: Sequence[str], test: np.ndarray, k: int = WKNN_K
) -> list[str]:
    """Similarity-weighted kNN: the k most similar examples each add their cosine to a label.

    The baseline of issue 2. Ties go to the label name that sorts first.
    """
    classes = sorted(set(labels))
    column = np.array([classes.index(label) for label in labels])
    sims = test @ support.T
    k = min(k, support.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    votes = np.zeros((test.shape[0], len(classes)))
    for row in range(test.shape[0]):
        np.add.at(votes[row], column[top[row]], sims[row, top[row]])
    return [classes[i] for i in votes.argmax(axis=1)]


def run_wknn(cell: Cell) -> Outcome:
    support, encode_s = cell.support_vectors()
    test, test_s = cell.test_vectors()
    start = time.perf_counter()
    predicted = wknn_predict(support, cell.support_labels, test)
    return predicted, encode_s, test_s + time.perf_counter() - start, {}


def run_logreg(cell: Cell) -> Outcome:
    from sklearn.linear_model import LogisticRegression

    support, encode_s = cell.support_vectors()
    test, test_s = cell.test_vectors()
    start = time.perf_counter()
    head = LogisticRegression(max_iter=1000, random_state=cell.seed)
    head.fit(support, cell.support_labels)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted = [str(x) for x in head.predict(test)]
    return predicted, encode_s + fit_s, test_s + time.perf_counter() - start, {}


def _setfit(cell: Cell, paper: bool) -> Outcome:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from fewshot.embed import resolve_model

    hf_logging.set_verbosity_error()
    model = SetFitModel.from_pretrained(resolve_model(cell.model))
    train = Dataset.from_dict({"text": cell.support_texts, "label": cell.support_labels})
    with tempfile.TemporaryDirectory(prefix="setfit-bench-") as out:
        if paper:
            args = TrainingArguments(
                output_dir=out,
                num_iterations=20,
                num_epochs=1,
                batch_size=16,
                seed=cell.seed,
                report_to="none",
            )
        else:
            args = TrainingArguments(output_dir=out, seed=cell.seed, report_to="none")
        trainer = Trainer(model=model, args=args, train_dataset=train)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    predicted = [str(x) for x in model.predict(cell.test_texts, batch_size=64)]
    # CPU seconds of the process (every thread): a load-independent measure of the work
    return predicted, train_s, time.perf_counter() - start, {"train_cpu_seconds": round(cpu_s, 3)}


def run_fewshot(cell: Cell) -> Outcome:
    from fewshot.metrics import evaluate_labels
    from fewshot.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="fewshot-bench-") as tmp:
        support = Path(tmp) / "support.jsonl"
        rows = [
            {"text": t, "label": lab} for t, lab in zip(cell.support_texts, cell.support_labels)
        ]
        support.write_text("".join(_jsonl(row) for row in rows), encoding="utf-8")
        with Workspace.create(Path(tmp) / "ws", model=cell.model) as ws:
            for key, value in cell.fewshot_settings:
                ws.config(key, value)
            start, cpu = time.perf_counter(), time.process_time()
            ws.import_file(support)
            train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
            start = time.perf_counter()
            predictions = ws.classify(cell.test_texts)
            predict_s = time.perf_counter() - start
            status = ws.status()
            rules = serving_rules(ws, cell, status) if status["models"] else None
            rejected = None
            if status["models"] and status["models"][-1]["status"] == "rejected":
                # What the pipeline would answer had the gate let the candidate in: serve it
                # (a rollback to that version) and classify again. Not part of the cell's score.
                ws.rollback(status["models"][-1]["version"])
                candidate = ws.classify(cell.test_texts)
                figures = evaluate_labels(cell.test_labels, [p.label for p in candidate])
                rejected = {
                    "accuracy": figures.accuracy,
                    "mcc": figures.mcc,
                    **calibration_of(candidate, cell.test_labels, status["models"][-1]),
                }
    stages = dict(sorted(Counter(p.stage for p in predictions).items()))
    extra: dict[str, Any] = {"stages": stages, "serving": status.get("stage"),
                             "train_cpu_seconds": round(cpu_s, 3)}  # fmt: skip
    served = status["models"][-1] if status["models"] else {}
    extra.update(calibration_of(predictions, cell.test_labels, served))
    if status["models"]:  # what the promotion gate measured, to explain who serves
        model = status["models"][-1]
        wanted = (
            "held_out_accuracy",
            "retrieval_held_out_accuracy",
            "baseline_accuracy",
            "compared_on",
            "ranking_compared",
            "baseline_ranking",
            "phase_steps",
            "head_temperature",
            "head_temperature_fitted",
            "train_seconds",
        )
        extra["gate"] = {
            "status": model["status"],
            **{k: model["metrics"][k] for k in wanted if k in model["metrics"]},
        }
        if "gate" in model["metrics"]:
            extra["gate"]["reason"] = model["metrics"]["gate"]
        if rejected is not None:
            extra["gate"]["rejected_model"] = rejected
    if rules is not None:
        extra["rules"] = rules
    if cell.fewshot_settings:
        extra["settings"] = dict(cell.fewshot_settings)
    return [p.label for p in predictions], train_s, predict_s, extra


BLENDS = (0.25, 0.5, 0.75)


def serving_rules(ws: Any, cell: Cell, status: dict[str, Any]) -> dict[str, float]:
    """Test accuracy of serving rules over the newest model, promoted or not (not scored).

    ``head``: its head alone; ``ft_retrieval``: retrieval's vote over the support set under
    its fine-tuned encoder; ``blend_w``: ``w * head + (1 - w) * ft_retrieval``. So one
    training tells which rule would have served best, beside what the gate chose.
    """
    from fewshot.stages.retrieval import Memory, RetrievalStage

    model = ws.registry.load_model(status["models"][-1]["version"])
    vectors = model.encode(cell.test_texts)
    head = model.head.predict_proba(vectors)
    memory = Memory.build(cell.support_texts, cell.support_labels, model.encode(cell.support_texts))
    retrieval, _ = RetrievalStage(memory).scores(vectors)
    columns = [memory.classes.index(name) for name in model.classes]
    retrieval = retrieval[:, columns]
    gold = np.asarray(cell.test_labels)
    classes = np.asarray(model.classes)

    def accuracy(scores: np.ndarray) -> float:
        return float((classes[scores.argmax(axis=1)] == gold).mean())

    rules = {"head": accuracy(head), "ft_retrieval": accuracy(retrieval)}
    for w in BLENDS:
        rules[f"blend_{w}"] = accuracy(w * head + (1 - w) * retrieval)
    return rules


def calibration_of(
    predictions: Sequence[Any], gold: Sequence[str], model: dict[str, Any]
) -> dict[str, float]:
    """ECE of the answers as given, and with the SetFit head's temperature undone.

    The head's scores are ``softmax(logits / T)``; ``scores ** T``, renormalised, are the
    uncalibrated ones (the same answers), so both come from one classification.
    """
    from fewshot.metrics import expected_calibration_error

    right = np.asarray([p.label == g for p, g in zip(predictions, gold)])
    given = [p.confidence for p in predictions]
    out = {"ece": expected_calibration_error(np.asarray(given), right)}
    temperature = (model.get("metrics") or {}).get("head_temperature")
    if temperature is not None and any(p.stage == "setfit" for p in predictions):
        raw = []
        for p in predictions:
            if p.stage != "setfit":
                raw.append(p.confidence)
                continue
            scores = np.asarray(list(p.scores.values()), dtype=np.float64) ** temperature
            raw.append(float(scores.max() / scores.sum()))
        out["ece_head_uncalibrated"] = expected_calibration_error(np.asarray(raw), right)
        setfit = np.asarray([p.stage == "setfit" for p in predictions])
        out["ece_setfit_answers"] = expected_calibration_error(
            np.asarray(given)[setfit], right[setfit]
        )
    return out


def _jsonl(row: dict[str, str]) -> str:
    import json

    return json.dumps(row, ensure_ascii=False) + "\n"


RUNNERS: dict[str, Callable[[Cell], Outcome]] = {
    "knn": run_knn,
    "wknn": run_wknn,
    "logreg": run_logreg,
    "setfit": lambda cell: _setfit(cell, paper=True),
    "setfit-default": lambda cell: _setfit(cell, paper=False),
    "fewshot": run_fewshot,
}


def method_key(method: str) -> str:
    """What a cached cell of ``method`` depends on besides data, N, seed and encoder."""
    if method == "fewshot":
        return package_fingerprint()
    if method == "knn":
        return retrieval_fingerprint()
    if method.startswith("setfit"):
        import importlib.metadata as md

        return f"setfit{md.version('setfit')}-st{md.version('sentence-transformers')}"
    return "v1"


def load_pipeline() -> dict[str, str]:
    """Import every fewshot module now and return each method's key.

    A long run must not label its cells with code that changed on disk after it started:
    the modules are imported (and so frozen for this process) at the moment they are hashed.
    """
    import importlib
    import pkgutil

    import fewshot

    for module in pkgutil.walk_packages(fewshot.__path__, "fewshot."):
        if module.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except (ImportError, SyntaxError) as err:  # another module being edited right now
            print(f"warning: {module.name} does not import ({err})", file=sys.stderr)
    return {method: method_key(method) for method in METHODS}


def score(cell: Cell, method: str, outcome: Outcome) -> dict[str, Any]:
    from fewshot.metrics import evaluate_labels

    predicted, train_s, predict_s, extra = outcome
    metrics = evaluate_labels(cell.test_labels, [str(p) for p in predicted])
    return {
        "dataset": cell.dataset,
        "n_per_label": cell.n,
        "seed": cell.seed,
        "method": method,
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "mcc": metrics.mcc,
        "train_seconds": round(train_s, 3),
        "texts_per_second": round(len(cell.test_texts) / predict_s, 1) if predict_s else None,
        "n_train": len(cell.support_texts),
        "n_test": len(cell.test_texts),
        "model": cell.model,
        "machine": machine(),
        **extra,
    }


def grid(args: argparse.Namespace) -> list[tuple[str, int, int, str]]:
    cells = []
    for dataset in args.datasets:
        for n in sorted(args.n, reverse=True):  # N = 8 reuses N = 64's vectors
            for seed in args.seeds:
                for method in args.methods:
                    if method == "setfit-default" and n != SETFIT_DEFAULT_N:
                        continue
                    cells.append((dataset, n, seed, method))
    return cells


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], int]:
    """Compute (or load) every cell of the grid; returns (records, cells computed now)."""
    import json

    from tqdm import tqdm

    embeddings = EmbeddingCache(args.cache_dir / "embeddings", args.model)
    keys = load_pipeline()
    records, computed = [], 0
    splits: dict[str, Any] = {}
    cells = grid(args)
    bar = tqdm(cells, desc="grid", unit="cell", file=sys.stderr, disable=args.quiet)
    for dataset, n, seed, method in bar:
        bar.set_postfix_str(f"{dataset} N={n} seed={seed} {method}")
        if dataset not in splits:
            train, test = (read_split(args.data_dir, dataset, s) for s in ("train", "test"))
            splits[dataset] = (train, test, digest([*train[0], *train[1], *test[0], *test[1]]))
        train, test, data_key = splits[dataset]
        settings = args.fewshot_setting if method == "fewshot" else ()
        parts = [data_key, args.model, str(n), str(seed), method, keys[method]]
        key = digest(parts + [f"{k}={v}" for k, v in settings])
        path = args.cache_dir / "cells" / f"{dataset}-n{n}-s{seed}-{method}-{key}.json"
        if path.exists() and not args.no_cache:
            records.append(json.loads(path.read_text(encoding="utf-8")))
            continue
        if args.cached_only:
            continue
        support = sample_support(train[0], train[1], n, seed)
        cell = Cell(
            dataset, n, seed, *support, *test, embeddings, args.model, not args.no_cache, settings
        )
        record = {**score(cell, method, RUNNERS[method](cell)), "code": keys[method]}
        write_json(path, record)
        write_json(args.out, merge(args.out, [record]))  # results.json grows as cells land
        records.append(record)
        computed += 1
    return records, computed


def merge(path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the records of ``path`` with ``records`` added (same cell: the new one wins)."""
    import json

    def ident(r: dict[str, Any]) -> tuple[str, int, int, str]:
        return (r["dataset"], r["n_per_label"], r["seed"], r["method"])

    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    merged = {ident(r): r for r in old}
    merged.update((ident(r), r) for r in records)
    order = {name: i for i, name in enumerate(ALL_DATASETS)}
    methods = {name: i for i, name in enumerate(METHODS)}
    return sorted(
        merged.values(),
        key=lambda r: (order.get(r["dataset"], 99), r["dataset"], r["n_per_label"],
                       methods.get(r["method"], 99), r["seed"]),
    )  # fmt: skip


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", type=_names, default=list(SETFIT_DATASETS))
    parser.add_argument("--n", type=_ints, default=[8, 64], help="examples per label, e.g. 8,64")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    parser.add_argument("--methods", type=_names, default=["knn", "wknn", "logreg"])
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--no-cache", action="store_true", help="recompute every cell")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--cached-only", action="store_true", help="collect the cached cells, compute none"
    )
    parser.add_argument(
        "--fewshot-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a workspace setting for the fewshot method's cells (repeatable), e.g.\n"
        "gate_folds=5; part of the cell's cache key; use another --out, since\n"
        "results.json holds the default pipeline",
    )
    args = parser.parse_args(argv)
    args.fewshot_setting = tuple(sorted(args.fewshot_setting))
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; expected some of {', '.join(METHODS)}")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    records, computed = run(args)
    write_json(args.out, merge(args.out, records))
    print(
        f"{len(records)} cells ({computed} computed, {len(records) - computed} from the cache) "
        f"-> {args.out}",
        file=sys.stderr,
    )
    return records


if __name__ == "__main__":
    main()
