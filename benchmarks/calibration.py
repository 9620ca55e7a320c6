"""Calibration of the retrieval stage: ECE before and after temperature scaling.

For each support set (dataset, N examples per label, seed; sampled as in accuracy.py), the
retrieval stage answers the test split with the default vote, then with the temperature
fitted on the support set's own leave-one-out answers (fewshot.calibration; no test label
is used). Accuracy is unchanged by construction (the answer never changes); the expected
calibration error (top label, 10 equal-width bins) is reported for both.

    python benchmarks/calibration.py --datasets cr,sst5 --n 8,64 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import DEFAULT_CACHE, DEFAULT_DATA, HERE, EmbeddingCache, read_split, sample_support

SETFIT_PAPER = ("sst5", "amazon_counterfactual_en", "cr", "emotion", "enron_spam", "ag_news")


def cell(cache: EmbeddingCache, data: Path, dataset: str, n: int, seed: int) -> dict[str, object]:
    from fewshot.metrics import expected_calibration_error
    from fewshot.stages.retrieval import Memory, RetrievalStage, Vote

    texts, labels = read_split(data, dataset, "train")
    test_texts, test_labels = read_split(data, dataset, "test")
    support, support_labels = sample_support(texts, labels, n, seed)
    memory = Memory.build(support, support_labels, cache.encode(support)[0])
    vectors = cache.encode(test_texts)[0]
    temperature = memory.temperature(Vote())
    out: dict[str, object] = {"dataset": dataset, "n_per_label": n, "seed": seed}
    for name, vote in (("raw", Vote()), ("calibrated", Vote(calibration=temperature))):
        scores, _ = RetrievalStage(memory, vote).scores(vectors)
        predicted = np.asarray(memory.classes)[scores.argmax(axis=1)]
        right = predicted == np.asarray(test_labels)
        out[f"ece_{name}"] = expected_calibration_error(scores.max(axis=1), right)
        out[f"accuracy_{name}"] = float(right.mean())
        out[f"confidence_{name}"] = float(scores.max(axis=1).mean())
    out["temperature"] = temperature
    return out


def rule_cell(
    cache: EmbeddingCache, data: Path, dataset: str, n: int, seed: int
) -> dict[str, object]:
    """One support set's leave-one-out and raw test scores, for calibration_setfit's rules."""
    from fewshot.stages.retrieval import Memory, RetrievalStage, Vote

    texts, labels = read_split(data, dataset, "train")
    test_texts, test_labels = read_split(data, dataset, "test")
    support, support_labels = sample_support(texts, labels, n, seed)
    memory = Memory.build(support, support_labels, cache.encode(support)[0])
    held, truth, _ = memory.loo(Vote())
    scores, _ = RetrievalStage(memory, Vote()).scores(cache.encode(test_texts)[0])
    classes = list(memory.classes)
    return {
        "dataset": dataset, "n_per_label": n, "seed": seed, "usable": True,
        "head_temperature": memory.temperature(Vote()), "status": "retrieval",
        "held_proba": np.asarray(held).tolist(), "held_truth": np.asarray(truth).tolist(),
        "test_raw": np.asarray(scores).tolist(),
        "test_truth": [classes.index(g) if g in classes else -1 for g in test_labels],
        "accuracy": float(np.mean(np.asarray(classes)[scores.argmax(axis=1)] == test_labels)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SETFIT_PAPER))
    parser.add_argument("--n", default="8,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "calibration.json")
    parser.add_argument(
        "--rules", type=Path, default=None, help="score calibration_setfit's rules; write here"
    )
    args = parser.parse_args()
    cache = EmbeddingCache(DEFAULT_CACHE, "sentence-transformers/all-MiniLM-L6-v2")
    if args.rules is not None:
        from calibration_setfit import table

        cells = [
            rule_cell(cache, args.data_dir, dataset, int(n), int(seed))
            for dataset in args.datasets.split(",")
            for n in args.n.split(",")
            for seed in args.seeds.split(",")
        ]
        result = table(cells)
        args.rules.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        for key, values in result["means"].items():
            print(key, *(f"  {v:.4f}  {name}" for name, v in values.items()), sep="\n")
        return
    records = [
        cell(cache, args.data_dir, dataset, int(n), int(seed))
        for dataset in args.datasets.split(",")
        for n in args.n.split(",")
        for seed in args.seeds.split(",")
    ]
    args.out.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    for n in sorted({r["n_per_label"] for r in records}):
        rows = [r for r in records if r["n_per_label"] == n]
        raw = np.mean([r["ece_raw"] for r in rows])
        cal = np.mean([r["ece_calibrated"] for r in rows])
        print(f"N={n}: {len(rows)} support sets, mean ECE raw {raw:.3f} -> calibrated {cal:.3f}")
    for r in records:
        print(
            f"{r['dataset']:26s} N={r['n_per_label']:<3} s{r['seed']} T={r['temperature']:.2f} "
            f"ECE {r['ece_raw']:.3f} -> {r['ece_calibrated']:.3f} acc {r['accuracy_raw']:.3f}"
        )


if __name__ == "__main__":
    main()
