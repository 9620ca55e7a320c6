"""The FAISS index and its cache: search vs numpy brute force, and every reason to rebuild.

The cache tests damage ``vectors.faiss`` / ``vectors.json`` on disk, open the workspace again
(a fresh object, as another process would) and check that the index was rebuilt from the
embeddings stored in SQLite and answers exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES

from fewshot.embed import DEFAULT_MODEL, resolve_model
from fewshot.storage.files import atomic_write_bytes
from fewshot.storage.index import INDEX_NAME, MANIFEST_NAME, VectorIndex
from fewshot.workspace import Workspace

QUERIES = [
    "My order still hasn't been delivered, where is it?",
    "I was billed two times for the same purchase",
    "I forgot my password and can't sign in",
    "The checkout page freezes when I press pay",
]


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    sims = queries.astype(np.float64) @ vectors.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


# -- VectorIndex against numpy ----------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 7, 300, 301, 1000])
def test_search_matches_numpy_brute_force(k: int) -> None:
    rng = np.random.default_rng(0)
    vectors = unit_vectors(rng, 300, 24)
    ids = rng.choice(10**9, size=300, replace=False).astype(np.int64)  # sparse, unordered ids
    queries = unit_vectors(rng, 25, 24)

    sims, found = VectorIndex.build(ids, vectors).search(queries, k)
    expected_sims, expected_ids = brute_force(vectors, ids, queries, k)

    assert found.shape == (25, min(k, 300))
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 1e-6), "most similar first"


def test_search_of_an_empty_index_returns_no_neighbours() -> None:
    index = VectorIndex.build(np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.float32))
    sims, ids = index.search(np.ones((3, 8), dtype=np.float32), 5)
    assert index.count == 0
    assert sims.shape == ids.shape == (3, 0)


def test_save_then_load_answers_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, 50, 16)
    ids = np.arange(100, 150, dtype=np.int64)
    queries = unit_vectors(rng, 5, 16)
    manifest = {"encoder": "enc", "revision": 3, "workspace_id": "w"}
    VectorIndex.build(ids, vectors).save(tmp_path, manifest)

    loaded = VectorIndex.load(tmp_path, manifest)

    assert loaded is not None
    assert (loaded.count, loaded.dim) == (50, 16)
    sims, found = loaded.search(queries, 5)
    expected_sims, expected_ids = brute_force(vectors, ids, queries, 5)
    np.testing.assert_array_equal(found, expected_ids)
    np.testing.assert_allclose(sims, expected_sims, atol=1e-5)
    written = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert written["sha256"] == hashlib.sha256((tmp_path / INDEX_NAME).read_bytes()).hexdigest()
    assert (written["count"], written["dim"], written["encoder"]) == (50, 16, "enc")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(2).bytes(path.stat().st_size))


def _reformat(path: Path) -> None:
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format": 999}))


def _list(path: Path) -> None:
    path.write_text("[1, 2, 3]")


DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "index missing": (INDEX_NAME, Path.unlink),
    "manifest missing": (MANIFEST_NAME, Path.unlink),
    "index truncated": (INDEX_NAME, _truncate),
    "manifest truncated": (MANIFEST_NAME, _truncate),
    "index garbage": (INDEX_NAME, _garbage),
    "manifest garbage": (MANIFEST_NAME, _garbage),
    "manifest of another format": (MANIFEST_NAME, _reformat),
    "manifest not an object": (MANIFEST_NAME, _list),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_load_refuses_a_damaged_cache(tmp_path: Path, damage: str) -> None:
    manifest = {"encoder": "enc", "revision": 1, "workspace_id": "w"}
    VectorIndex.build(np.arange(20), unit_vectors(np.random.default_rng(3), 20, 8)).save(
        tmp_path, manifest
    )
    name, harm = DAMAGE[damage]
    harm(tmp_path / name)
    assert VectorIndex.load(tmp_path, manifest) is None


@pytest.mark.parametrize(
    "changed", [{"encoder": "other"}, {"revision": 2}, {"workspace_id": "another"}]
)
def test_load_refuses_a_cache_made_for_something_else(tmp_path: Path, changed: dict) -> None:
    manifest = {"encoder": "enc", "revision": 1, "workspace_id": "w"}
    VectorIndex.build(np.arange(20), unit_vectors(np.random.default_rng(4), 20, 8)).save(
        tmp_path, manifest
    )
    assert VectorIndex.load(tmp_path, manifest) is not None
    assert VectorIndex.load(tmp_path, {**manifest, **changed}) is None


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


# -- the workspace's cache ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tickets workspace whose index cache exists; tests may damage the cache only."""
    path = tmp_path_factory.mktemp("cache") / "ws"
    with Workspace.create(path) as ws:
        ws.import_file(EXAMPLES / "tickets.csv")
        ws.memory()
    yield path


def _neighbour_ids(ws: Workspace, queries: np.ndarray, k: int = 10) -> list[list[int]]:
    return [[n.id for n in row] for row in ws.memory().neighbors(queries, k)]


def _cache_is_valid(ws: Workspace) -> bool:
    expected = {
        "encoder": ws.encoder.key,
        "revision": ws.store.revision,
        "workspace_id": ws.store.get_setting("workspace_id"),
    }
    return VectorIndex.load(ws.path, expected) is not None


@pytest.fixture(scope="module")
def query_vectors(cached_dir: Path) -> np.ndarray:
    with Workspace.open(cached_dir) as ws:
        return ws.encoder.encode(QUERIES)


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_workspace_rebuilds_a_damaged_cache_with_the_same_neighbours(
    cached_dir: Path, query_vectors: np.ndarray, damage: str
) -> None:
    with Workspace.open(cached_dir) as ws:
        before = _neighbour_ids(ws, query_vectors)
        stored_ids, stored = ws.store.embeddings(ws.encoder.key)
    name, harm = DAMAGE[damage]
    harm(cached_dir / name)

    with Workspace.open(cached_dir) as ws:
        assert not _cache_is_valid(ws)
        after = _neighbour_ids(ws, query_vectors)
        assert _cache_is_valid(ws), "the rebuilt cache was written back"
        ids_after, stored_after = ws.store.embeddings(ws.encoder.key)

    assert after == before
    # and both equal brute force over the embeddings stored in SQLite
    _, expected = brute_force(stored, stored_ids, query_vectors, 10)
    assert after == expected.tolist()
    np.testing.assert_array_equal(ids_after, stored_ids)
    np.testing.assert_array_equal(stored_after, stored)


def test_a_valid_cache_is_reused_not_rebuilt(cached_dir: Path, query_vectors: np.ndarray) -> None:
    with Workspace.open(cached_dir) as ws:
        ws.memory()
    before = [(cached_dir / n).stat() for n in (INDEX_NAME, MANIFEST_NAME)]
    with Workspace.open(cached_dir) as ws:
        _neighbour_ids(ws, query_vectors)
    after = [(cached_dir / n).stat() for n in (INDEX_NAME, MANIFEST_NAME)]
    # an atomic rewrite would give a new inode
    assert [(s.st_ino, s.st_mtime_ns) for s in after] == [(s.st_ino, s.st_mtime_ns) for s in before]


def test_examples_added_by_another_workspace_object_make_the_cache_stale(
    tickets_workspace: Workspace,
) -> None:
    first = tickets_workspace
    assert set(first.classify(["Where is my parcel?"])[0].scores) == {
        "account",
        "refund",
        "shipping",
        "technical",
    }
    with Workspace.open(first.path) as second:
        second.add(["Do you have this jacket in blue?", "Is the red one in stock?"], "stock")

    prediction = first.classify(["Is the green sweater in stock in size M?"], explain=True)[0]

    assert set(prediction.scores) == {"account", "refund", "shipping", "stock", "technical"}
    assert prediction.label == "stock"
    manifest = json.loads((first.path / MANIFEST_NAME).read_text())
    assert manifest["count"] == 26
    assert manifest["revision"] == first.store.revision


def test_a_rebuild_reads_the_stored_embeddings_and_never_re_encodes(
    tickets_workspace: Workspace,
) -> None:
    """Swap two stored vectors: a rebuilt index must show the swap (encoding would undo it)."""
    ws = tickets_workspace
    ws.memory()  # the cache now exists
    key = ws.encoder.key
    ids, vectors = ws.store.embeddings(key)
    a, b = 0, 12  # a refund ticket and an account ticket
    ws.store.put_embeddings(key, [int(ids[a]), int(ids[b])], vectors[[b, a]])
    (ws.path / INDEX_NAME).unlink()

    with Workspace.open(ws.path) as fresh:
        nearest = fresh.memory().neighbors(vectors[[a, b]], 1)
        assert fresh.store.missing_embeddings(key) == []
        assert len(fresh.store.embeddings(key)[0]) == len(ids)

    assert [row[0].id for row in nearest] == [int(ids[b]), int(ids[a])]
    assert nearest[0][0].similarity == pytest.approx(1.0, abs=1e-5)


def test_an_index_made_by_another_encoder_is_rebuilt_from_that_encoders_embeddings(
    tickets_workspace: Workspace, query_vectors: np.ndarray
) -> None:
    """Switch the encoder key (the packaged weights by path) and back.

    The second key's embeddings are computed once and stored beside the first; switching back
    rebuilds the index from the first key's stored rows, which the test tampered with, so an
    index made by re-encoding would not match.
    """
    ws = tickets_workspace
    path = ws.path
    before = _neighbour_ids(ws, query_vectors)
    default_ids, default_vectors = ws.store.embeddings(DEFAULT_MODEL)
    other_key = resolve_model(DEFAULT_MODEL)  # same weights, given as a directory
    ws.store.set_setting("model", other_key)

    with Workspace.open(path) as other:
        assert other.encoder.key == other_key != DEFAULT_MODEL
        assert _neighbour_ids(other, query_vectors) == before
        other_ids, _ = other.store.embeddings(other_key)
    assert json.loads((path / MANIFEST_NAME).read_text())["encoder"] == other_key
    np.testing.assert_array_equal(other_ids, default_ids)

    ws.store.put_embeddings(DEFAULT_MODEL, [int(default_ids[0])], default_vectors[[12]])
    ws.store.set_setting("model", DEFAULT_MODEL)
    with Workspace.open(path) as back:
        nearest = back.memory().neighbors(default_vectors[[12]], 2)[0]
        assert _cache_is_valid(back)
    assert json.loads((path / MANIFEST_NAME).read_text())["encoder"] == DEFAULT_MODEL
    assert {n.id for n in nearest} == {int(default_ids[0]), int(default_ids[12])}
    assert all(n.similarity == pytest.approx(1.0, abs=1e-5) for n in nearest)
