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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(SETFIT_PAPER))
    parser.add_argument("--n", default="8,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "calibration.json")
    args = parser.parse_args()
    cache = EmbeddingCache(DEFAULT_CACHE, "sentence-transformers/all-MiniLM-L6-v2")
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
