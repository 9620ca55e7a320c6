"""Learning curves of the `fewshot label` query orders with a simulated annotator.

For each dataset and seed: a pool of unlabeled texts (a seeded subset of train) and a seeded
test subset. The annotator answers every query with the true label; after each checkpoint
(number of answers) the retrieval stage is built from the answers so far and scored on the
test subset. Orders: the product's ``uncertain``, ``diverse``, ``random`` and, as the
cold-start pitfall reference, pure smallest-margin uncertainty (``margin``, not a product
option). Embeddings are cached under benchmarks/.cache/ (git-ignored).

    nice -n 10 .venv/bin/python benchmarks/active_learning.py            # defaults below
    nice -n 10 .venv/bin/python benchmarks/active_learning.py --datasets trec6 cr --seeds 3

Writes benchmarks/active_learning.json (curves and means) and, when matplotlib is
installed, benchmarks/active_learning.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "active_learning"
DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets"
DATASETS = ("ag_news", "trec6", "sst2", "emotion", "cr")
ORDERS = ("uncertain", "diverse", "random", "margin")
CHECKPOINTS = (8, 16, 24, 32, 48, 64, 80, 100)


def read_rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def embed(texts: list[str]) -> np.ndarray:
    """Encode with the packaged encoder, cached by the texts' hash."""
    from fewshot.embed import Encoder

    digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:24]
    path = CACHE / f"{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = Encoder().encode(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def working_set(
    data_dir: Path, name: str, pool_size: int, test_size: int, seeds: int
) -> dict[str, Any]:
    """A fixed seeded sample of train and test (encoded once); seeds draw from it."""
    rng = np.random.default_rng(12345)
    train = read_rows(data_dir / name / "train.jsonl")
    test = read_rows(data_dir / name / "test.jsonl")
    train_pick = rng.permutation(len(train))[: min(len(train), pool_size * min(seeds, 3))]
    test_pick = rng.permutation(len(test))[: min(len(test), test_size * 2)]
    train_rows = [train[i] for i in train_pick]
    test_rows = [test[i] for i in test_pick]
    return {
        "train_vectors": embed([r["text"] for r in train_rows]),
        "train_labels": np.array([r["label"] for r in train_rows]),
        "test_vectors": embed([r["text"] for r in test_rows]),
        "test_labels": np.array([r["label"] for r in test_rows]),
    }


def accuracy(train_v: np.ndarray, train_y: list[str], test_v: np.ndarray, test_y: Any) -> float:
    from fewshot.stages.retrieval import Memory, RetrievalStage

    stage = RetrievalStage(Memory.build([""] * len(train_y), train_y, train_v))
    predictions = stage.predict([""] * len(test_v), test_v)
    return float(np.mean([p.label == y for p, y in zip(predictions, test_y)]))


def retrieval_scores(train_v: np.ndarray, train_y: list[str], query_v: np.ndarray) -> np.ndarray:
    from fewshot.stages.retrieval import Memory, RetrievalStage

    stage = RetrievalStage(Memory.build([""] * len(train_y), train_y, train_v))
    return stage.scores(query_v)[0]


def simulate(
    pool_v: np.ndarray,
    pool_y: np.ndarray,
    test_v: np.ndarray,
    test_y: np.ndarray,
    order: str,
    random_state: int,
    checkpoints: tuple[int, ...],
) -> list[float]:
    """Label ``max(checkpoints)`` texts in ``order``; accuracy at each checkpoint."""
    from fewshot.active import Pool, margins

    pool = Pool(pool_v, "random" if order == "margin" else order, random_state=random_state)
    taken: list[int] = []
    open_ = np.ones(len(pool_v), dtype=bool)
    curve = []
    for step in range(max(checkpoints)):
        candidates = np.flatnonzero(open_)
        labels = [str(pool_y[i]) for i in taken]
        scores = None
        if order in ("uncertain", "margin") and len(set(labels)) >= 2:
            scores = retrieval_scores(pool_v[taken], labels, pool_v[candidates])
        if order == "margin" and scores is not None:
            choice = int(candidates[int(np.argmin(margins(scores)))])
        else:
            choice = pool.pick(candidates, scores)
        taken.append(choice)
        open_[choice] = False
        pool.add_labeled(pool_v[choice])
        if step + 1 in checkpoints:
            curve.append(accuracy(pool_v[taken], [str(pool_y[i]) for i in taken], test_v, test_y))
    return curve


def run_dataset(name: str, args: argparse.Namespace) -> dict[str, Any]:
    data = working_set(args.data_dir, name, args.pool, args.test, args.seeds)
    curves: dict[str, list[list[float]]] = {order: [] for order in args.orders}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        pool_idx = rng.choice(len(data["train_labels"]), args.pool, replace=False)
        test_idx = rng.choice(len(data["test_labels"]), args.test, replace=False)
        for order in args.orders:
            curves[order].append(
                simulate(
                    data["train_vectors"][pool_idx],
                    data["train_labels"][pool_idx],
                    data["test_vectors"][test_idx],
                    data["test_labels"][test_idx],
                    order,
                    seed,
                    tuple(args.checkpoints),
                )
            )
    means = {order: np.mean(c, axis=0).round(4).tolist() for order, c in curves.items()}
    area = {order: round(float(np.mean(m)), 4) for order, m in means.items()}
    return {"curves": curves, "mean": means, "mean_over_checkpoints": area}


def plot(results: dict[str, Any], checkpoints: list[int], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        for order, mean in results[name]["mean"].items():
            ax.plot(checkpoints, mean, marker="o", markersize=3, label=order)
        ax.set_title(name)
        ax.set_xlabel("answers")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (retrieval)")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--orders", nargs="+", default=list(ORDERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=list(CHECKPOINTS))
    parser.add_argument("--out", type=Path, default=HERE / "active_learning.json")
    args = parser.parse_args()
    started = time.perf_counter()
    results = {}
    for name in args.datasets:
        results[name] = run_dataset(name, args)
        print(name, json.dumps(results[name]["mean_over_checkpoints"]), flush=True)
        report = {  # written after each dataset, so an interrupted run keeps what it did
            "setup": {
                "pool": args.pool,
                "test": args.test,
                "seeds": args.seeds,
                "checkpoints": args.checkpoints,
                "stage": "retrieval (defaults)",
                "annotator": "simulated: the true label answers every query",
                "seconds": round(time.perf_counter() - started, 1),
            },
            "results": results,
        }
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if plot(results, args.checkpoints, args.out.with_suffix(".png")):
        print("plot:", args.out.with_suffix(".png"))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
