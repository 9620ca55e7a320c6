"""Query strategies: unit checks on known geometry, and a simulated annotator on real data."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import read_dataset

from fewshot.active import Pool, knn_graph, margins
from fewshot.embed import Encoder
from fewshot.errors import ConfigError
from fewshot.stages.retrieval import Memory, RetrievalStage


def unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def clusters(sizes: tuple[int, ...], random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight clusters around orthogonal centres; returns (vectors, cluster of each row)."""
    rng = np.random.default_rng(random_state)
    dim = 16
    rows, owner = [], []
    for c, size in enumerate(sizes):
        centre = np.eye(dim)[c] * 5
        rows.append(centre + rng.normal(scale=0.5, size=(size, dim)))
        owner += [c] * size
    return unit(np.concatenate(rows)), np.array(owner)


def test_margins() -> None:
    scores = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.5, 0.4]])
    assert margins(scores) == pytest.approx([0.5, 0.0, 0.1])
    assert margins(np.ones((2, 1))) == pytest.approx([1.0, 1.0])


def test_knn_graph_matches_brute_force() -> None:
    vectors, _ = clusters((30, 20, 10))
    indices, sims = knn_graph(vectors, 5)
    full = vectors @ vectors.T
    np.fill_diagonal(full, -np.inf)
    expected = np.sort(full, axis=1)[:, ::-1][:, :5]
    assert np.sort(sims, axis=1)[:, ::-1] == pytest.approx(expected, abs=1e-6)
    assert np.take_along_axis(full, indices, axis=1) == pytest.approx(sims, abs=1e-6)
    assert not (indices == np.arange(len(vectors))[:, None]).any()


def test_file_and_random_orders() -> None:
    vectors, _ = clusters((10, 10))
    assert Pool(vectors, "file").pick([7, 3, 12]) == 3
    first = [Pool(vectors, "random", random_state=1).pick(range(20)) for _ in range(2)]
    assert first[0] == first[1]
    picks = {Pool(vectors, "random", random_state=seed).pick(range(20)) for seed in range(10)}
    assert len(picks) > 1


def test_diverse_reaches_every_cluster_before_repeating_one() -> None:
    vectors, owner = clusters((40, 25, 10))
    pool = Pool(vectors, "diverse")
    open_ = list(range(len(vectors)))
    picked = []
    for _ in range(3):
        choice = pool.pick(open_)
        picked.append(int(owner[choice]))
        open_.remove(choice)
        pool.add_labeled(vectors[choice])
    assert sorted(picked) == [0, 1, 2]


def test_uncertain_prefers_the_smallest_margin_and_starts_diverse() -> None:
    vectors, _ = clusters((20, 20))
    cold = Pool(vectors, "uncertain")
    assert cold.pick(range(40)) == Pool(vectors, "diverse").pick(range(40))
    pool = Pool(vectors, "uncertain")
    pool.add_labeled(vectors[[0, 20]])
    scores = np.tile([0.9, 0.1], (40, 1))
    scores[33] = [0.5, 0.5]  # the only undecided text
    assert pool.pick(range(40), scores) == 33


def test_unknown_order() -> None:
    with pytest.raises(ConfigError, match="unknown order 'smart'"):
        Pool(np.eye(3, dtype=np.float32), "smart")


def simulate(pool_v, pool_y, test_v, test_y, order: str, seed: int, budget: int) -> list[float]:  # type: ignore[no-untyped-def]
    """The true label answers each query; retrieval accuracy after every 10 answers."""
    pool = Pool(pool_v, order, random_state=seed)
    taken: list[int] = []
    open_ = np.ones(len(pool_v), dtype=bool)
    curve = []
    for step in range(1, budget + 1):
        candidates = np.flatnonzero(open_)
        labels = [pool_y[i] for i in taken]
        scores = None
        if order == "uncertain" and len(set(labels)) >= 2:
            stage = RetrievalStage(Memory.build(labels, labels, pool_v[taken]))
            scores = stage.scores(pool_v[candidates])[0]
        choice = pool.pick(candidates, scores)
        taken.append(choice)
        open_[choice] = False
        pool.add_labeled(pool_v[choice])
        if step % 10 == 0:
            labels = [pool_y[i] for i in taken]
            stage = RetrievalStage(Memory.build(labels, labels, pool_v[taken]))
            predicted = [p.label for p in stage.predict(list(test_y), test_v)]
            curve.append(float(np.mean(np.array(predicted) == np.array(test_y))))
    return curve


def test_uncertain_order_beats_random_with_a_simulated_annotator() -> None:
    train = read_dataset("trec6", "train")
    test = read_dataset("trec6", "test")
    rng = np.random.default_rng(0)
    pool_rows = [train[i] for i in rng.permutation(len(train))[:450]]
    test_rows = [test[i] for i in rng.permutation(len(test))[:250]]
    encoder = Encoder()
    pool_all = encoder.encode([r["text"] for r in pool_rows])
    test_v = encoder.encode([r["text"] for r in test_rows])
    test_y = [r["label"] for r in test_rows]
    means: dict[str, float] = {}
    for order in ("uncertain", "random"):
        curves = []
        for seed in range(3):
            pick = np.random.default_rng(seed).permutation(450)[:300]
            pool_y = [pool_rows[i]["label"] for i in pick]
            curves.append(simulate(pool_all[pick], pool_y, test_v, test_y, order, seed, 40))
        means[order] = float(np.mean(curves))
    assert means["uncertain"] > means["random"], means
