"""Labels before examples (issue 16): does a label's prior help, before and beside examples?

Measures the shipped code path: each label's prior (:mod:`fewshot.stages.priors`, what
``fewshot label-add NAME [--description TEXT]`` declares) is embedded by the encoder and
given to the retrieval stage's memory beside the examples, as ``Corpus.memory`` does. Three
conditions:

* ``none``: the examples only (nothing can answer at 0 examples);
* ``name``: each label declared with its dataset's own name (``very negative``, ``alarm
  set``...), no description: the prior is the name;
* ``description``: each label declared with a description written mechanically from its
  name, SetFit's template ``This sentence is {name}.``: the prior is ``name: This sentence
  is name.``.

No description is written by hand and nothing is tuned on the test sets. For each dataset,
seed and n (0, 1, 2, 4, 8 examples per label, drawn as in the accuracy grid), the retrieval
stage answers the first ``--max-test`` test rows (1,000); accuracy is reported. Each
(dataset, seed) cell is cached under ``--cache-dir`` and a rerun resumes.

    python benchmarks/label_priors.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ALL_DATASETS,
    DEFAULT_CACHE,
    DEFAULT_DATA,
    HERE,
    EmbeddingCache,
    digest,
    read_split,
    retrieval_fingerprint,
    sample_support,
    source_fingerprint,
)
from common import write_json as write

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
COUNTS = (0, 1, 2, 4, 8)
VARIANTS = ("none", "name", "description")
DATASETS = (*ALL_DATASETS, "hwu64")
MAX_TEST = 1000
NOTE = (
    "`benchmarks/label_priors.py`, `benchmarks/label_priors.json`: the shipped code path of "
    "`fewshot label-add NAME [--description TEXT]`. Each label's prior is one embedded text "
    "that votes beside its examples (a candidate neighbour, and one more member of its "
    "prototype, so 1/(n+1) of it at n examples; `fewshot/stages/priors.py`): `name` declares "
    "each label with the dataset's own label name, `description` adds a description written "
    "mechanically from it (`This sentence is {name}.`, SetFit's template; the prior is then "
    "`name: This sentence is name.`); `none` is the examples alone. No description is written "
    "by hand. Plain accuracy x 100 of the retrieval stage (amazon_counterfactual_en too, not "
    "MCC) on the first 1,000 test rows, mean over seeds 0-2, per number of examples per label."
)


def describe(label: str) -> str:
    """Return the mechanical description of ``label`` (the ``description`` condition)."""
    return f"This sentence is {label}."


def priors_of(cache: EmbeddingCache, classes: list[str], variant: str) -> Any:
    """Return the :class:`~fewshot.stages.priors.Priors` of ``variant`` (None for ``none``)."""
    from fewshot.stages.priors import Priors, prior_text

    if variant == "none":
        return None
    texts = [prior_text(c, describe(c) if variant == "description" else None) for c in classes]
    return Priors.make(classes, texts, cache.encode(texts)[0])


def accuracy(
    support: tuple[list[str], list[str], np.ndarray], priors: Any, test: Any, truth: list[str]
) -> float | None:
    """Return the retrieval stage's accuracy with these examples and priors (None: empty)."""
    from fewshot.stages.retrieval import Memory, RetrievalStage

    texts, labels, vectors = support
    if not texts and priors is None:
        return None
    memory = Memory.build(texts, labels, vectors, priors)
    answers = RetrievalStage(memory).predict(["-"] * len(truth), test)
    return float(np.mean([a.label == t for a, t in zip(answers, truth)]))


def cell(
    cache: EmbeddingCache, data: Path, dataset: str, seed: int, max_test: int
) -> list[dict[str, Any]]:
    """Every (n, variant) of one dataset and seed."""
    texts, labels = read_split(data, dataset, "train")
    test_texts, test_labels = read_split(data, dataset, "test")
    test_texts, test_labels = test_texts[:max_test], test_labels[:max_test]
    vectors = cache.encode(test_texts)[0]
    classes = sorted(set(labels))
    priors = {v: priors_of(cache, classes, v) for v in VARIANTS}
    records = []
    for n in COUNTS:
        chosen, chosen_labels = sample_support(texts, labels, n, seed) if n else ([], [])
        encoded = cache.encode(chosen)[0] if chosen else np.zeros((0, 0), np.float32)
        for variant in VARIANTS:
            record = {"dataset": dataset, "seed": seed, "n_per_label": n, "variant": variant}
            support = (chosen, chosen_labels, encoded)
            record["accuracy"] = accuracy(support, priors[variant], vectors, test_labels)
            records.append(record)
    return records


def mean_of(records: list[dict[str, Any]], dataset: str, n: int, variant: str) -> float | None:
    """Return the mean accuracy x 100 of the matching records (all datasets for ``mean``)."""
    values = [
        r["accuracy"]
        for r in records
        if (dataset == "mean" or r["dataset"] == dataset)
        and r["n_per_label"] == n
        and r["variant"] == variant
        and r["accuracy"] is not None
    ]
    return 100 * float(np.mean(values)) if values else None


def section(records: list[dict[str, Any]]) -> list[str]:
    """Return a markdown table: mean accuracy x 100, "none / name / description" per n."""
    out = [
        "| dataset | " + " | ".join(f"n = {n}" for n in COUNTS) + " |",
        "|---|" + "---|" * len(COUNTS),
    ]
    datasets = sorted({r["dataset"] for r in records})
    for dataset in [*datasets, "mean"]:
        cells = []
        for n in COUNTS:
            shown = [mean_of(records, dataset, n, v) for v in VARIANTS]
            cells.append(" / ".join("-" if s is None else f"{s:.1f}" for s in shown))
        out.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return ["Each cell: none / name / description.", "", *out, "", *summary(records, datasets)]


def summary(records: list[dict[str, Any]], datasets: list[str]) -> list[str]:
    """Return one line per prior: its mean gain over ``none`` per n, and where it loses."""
    lines = []
    for variant in VARIANTS[1:]:
        gains, losers = [], []
        for n in COUNTS[1:]:
            deltas = {
                d: (mean_of(records, d, n, variant) or 0.0)
                - (mean_of(records, d, n, "none") or 0.0)
                for d in datasets
            }
            gains.append(f"{float(np.mean(list(deltas.values()))):+.1f} at n = {n}")
            losers += [f"{d} {v:+.1f} (n = {n})" for d, v in deltas.items() if v < 0]
        lines.append(
            f"- `{variant}` minus `none`, mean over datasets: {', '.join(gains)}; "
            f"below `none`: {', '.join(losers) or 'nowhere'}."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-test", type=int, default=MAX_TEST)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", type=Path, default=HERE / ".cache" / "label_priors")
    parser.add_argument("--out", type=Path, default=HERE / "label_priors.json")
    args = parser.parse_args()
    cache = EmbeddingCache(DEFAULT_CACHE, MODEL)
    code = retrieval_fingerprint() + source_fingerprint(
        [HERE.parent / "fewshot" / "stages" / "priors.py"]
    )
    records: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            key = digest([code, dataset, str(seed), str(args.max_test), *VARIANTS])
            path = args.cache_dir / f"{dataset}-{seed}-{key[:12]}.json"
            if path.exists():
                found = json.loads(path.read_text(encoding="utf-8"))
            else:
                found = cell(cache, args.data_dir, dataset, seed, args.max_test)
                write(path, found)
            records += found
        print(dataset, flush=True)
        write(args.out, records)
    print("\n".join(section(records)))


if __name__ == "__main__":
    main()
