"""Experiment (no feature yet): would a label's name help before and beside its examples?

For issue 16's "labels before examples". Each label's prior is one text, embedded by the
same encoder and added to the labeled set as one more example of its label (so it takes part
in both the neighbour and the prototype vote, and weighs 1 / (n + 1) of the prototype at n
examples: less as examples arrive). Variants:

* ``none``: the examples only (nothing can answer at 0 examples);
* ``name``: the dataset's own label name (``very negative``, ``alarm set``...);
* ``template``: the name in SetFit's template, ``This sentence is {name}.``.

No description is written by hand and nothing is tuned on the test sets. For each dataset,
seed and n (0, 1, 2, 4, 8 examples per label, drawn as in the accuracy grid), the retrieval
stage answers the test split (at most 2,000 rows); accuracy is reported.

    python benchmarks/label_priors.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    ALL_DATASETS,
    DEFAULT_CACHE,
    DEFAULT_DATA,
    HERE,
    EmbeddingCache,
    read_split,
    sample_support,
)
from common import write_json as write

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
COUNTS = (0, 1, 2, 4, 8)
VARIANTS = ("none", "name", "template")
DATASETS = (*ALL_DATASETS, "hwu64")
NOTE = (
    "`benchmarks/label_priors.py`, `benchmarks/experiments/label_priors.json`: a measurement "
    "for issue 16's second half, whose feature (`label-add NAME --description`) is not built. "
    "Each label's prior is one text added to its examples (so it votes as a neighbour and "
    "weighs 1/(n+1) of its prototype): `name` is the dataset's own label name, `template` is "
    "`This sentence is {name}.` (SetFit's template); `none` is the examples alone. No "
    "description is written by hand. Plain accuracy x 100 of the retrieval stage (amazon_"
    "counterfactual_en too, not MCC), mean over seeds 0-2, per number of examples per label."
)


def prior_text(label: str, variant: str) -> str:
    """Return the prior's text of ``label``."""
    return label if variant == "name" else f"This sentence is {label}."


def accuracy(
    cache: EmbeddingCache, support: list[str], labels: list[str], test: Any, truth: list[str]
) -> float | None:
    """Return the retrieval stage's accuracy with this labeled set (None: it is empty)."""
    from fewshot.stages.retrieval import Memory, RetrievalStage

    if not support:
        return None
    memory = Memory.build(support, labels, cache.encode(support)[0])
    answers = RetrievalStage(memory).predict(["-"] * len(truth), test)
    return float(np.mean([a.label == t for a, t in zip(answers, truth)]))


def cell(cache: EmbeddingCache, data: Path, dataset: str, seed: int) -> list[dict[str, Any]]:
    """Every (n, variant) of one dataset and seed."""
    texts, labels = read_split(data, dataset, "train")
    test_texts, test_labels = read_split(data, dataset, "test")
    test_texts, test_labels = test_texts[:2000], test_labels[:2000]
    vectors = cache.encode(test_texts)[0]
    classes = sorted(set(labels))
    records = []
    for n in COUNTS:
        support, support_labels = sample_support(texts, labels, n, seed) if n else ([], [])
        for variant in VARIANTS:
            extra = [] if variant == "none" else [prior_text(c, variant) for c in classes]
            record = {"dataset": dataset, "seed": seed, "n_per_label": n, "variant": variant}
            record["accuracy"] = accuracy(
                cache, [*support, *extra], [*support_labels, *classes[: len(extra)]],
                vectors, test_labels,
            )  # fmt: skip
            records.append(record)
    return records


def section(records: list[dict[str, Any]]) -> list[str]:
    """Return a markdown table: mean accuracy x 100, "none / name / template" per n."""
    out = [
        "| dataset | " + " | ".join(f"n = {n}" for n in COUNTS) + " |",
        "|---|" + "---|" * len(COUNTS),
    ]
    datasets = sorted({r["dataset"] for r in records})
    for dataset in [*datasets, "mean"]:
        cells = []
        for n in COUNTS:
            shown = []
            for v in VARIANTS:
                values = [
                    r["accuracy"]
                    for r in records
                    if (dataset == "mean" or r["dataset"] == dataset)
                    and r["n_per_label"] == n
                    and r["variant"] == v
                    and r["accuracy"] is not None
                ]
                shown.append(f"{100 * np.mean(values):.1f}" if values else "-")
            cells.append(" / ".join(shown))
        out.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return ["Each cell: none / name / template.", "", *out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "experiments" / "label_priors.json")
    args = parser.parse_args()
    cache = EmbeddingCache(DEFAULT_CACHE, MODEL)
    records: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        for seed in args.seeds.split(","):
            records += cell(cache, args.data_dir, dataset, int(seed))
        print(dataset, flush=True)
        write(args.out, records)
    print("\n".join(section(records)))


if __name__ == "__main__":
    main()
