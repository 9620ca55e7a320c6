"""The SQLite store: round trips, atomic writes, per-encoder embeddings, refusing bad files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fewshot.errors import WorkspaceError
from fewshot.storage.store import DB_NAME, SCHEMA_VERSION, Store

ROWS = [
    ("I want my money back", "refund"),
    ("Where is my parcel?", "shipping"),
    ('Comma, "quote", new\nline, tab\there, café 📦', "odd, label"),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / DB_NAME


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    store = Store.create(db)
    yield store
    store.close()


def vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_examples_and_embeddings_survive_close_and_reopen(store: Store, db: Path) -> None:
    matrix = vectors(3)
    ids = store.add_examples(ROWS, "test", "enc", matrix)
    store.set_setting("k", 7)
    examples = store.examples()
    store.close()

    reopened = Store.open(db)
    try:
        assert reopened.examples() == examples
        assert [(e.text, e.label, e.source) for e in reopened.examples()] == [
            (text, label, "test") for text, label in ROWS
        ]
        stored_ids, stored = reopened.embeddings("enc")
        assert stored_ids.tolist() == ids
        np.testing.assert_array_equal(stored, matrix)  # float32 bytes, bit for bit
        assert reopened.get_setting("k") == 7
        assert reopened.label_counts() == {"odd, label": 1, "refund": 1, "shipping": 1}
        assert reopened.revision == 1
    finally:
        reopened.close()


def test_the_database_runs_in_wal_mode_with_the_schema_version(store: Store, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_embeddings_are_kept_per_encoder(store: Store) -> None:
    ids = store.add_examples(ROWS[:2], "test", "enc-a", vectors(2, seed=1))
    assert store.missing_embeddings("enc-b") == [(ids[0], ROWS[0][0]), (ids[1], ROWS[1][0])]
    store.put_embeddings("enc-b", ids, vectors(2, dim=6, seed=2))

    a_ids, a = store.embeddings("enc-a")
    b_ids, b = store.embeddings("enc-b")
    assert store.missing_embeddings("enc-b") == []
    assert a.shape == (2, 4) and b.shape == (2, 6)
    np.testing.assert_array_equal(a, vectors(2, seed=1))
    np.testing.assert_array_equal(b, vectors(2, dim=6, seed=2))
    assert a_ids.tolist() == b_ids.tolist() == ids
    empty_ids, empty = store.embeddings("never-used")
    assert len(empty_ids) == 0 and empty.size == 0


def test_a_failed_write_changes_nothing(store: Store) -> None:
    store.add_examples(ROWS[:1], "test", "enc", vectors(1))
    before = (store.examples(), store.revision)
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        # the examples are inserted first; the mismatched vectors must roll them back
        store.add_examples(ROWS[1:], "test", "enc", vectors(1))
    with pytest.raises(WorkspaceError, match="UNIQUE constraint failed"):
        store.add_examples([("new text", "x"), ROWS[0]], "test")  # a stored text: UNIQUE
    assert (store.examples(), store.revision) == before
    assert store.embeddings("enc")[1].shape == (1, 4)


def test_every_change_bumps_the_revision_and_a_no_op_does_not(store: Store) -> None:
    assert store.revision == 0
    ids = store.add_examples(ROWS, "test")
    assert store.revision == 1
    store.add_examples([], "test")
    assert store.revision == 1
    store.add_examples([], "test", relabel=[(ids[0], "billing")])
    assert store.revision == 2
    store.add_examples([], "test", relabel=[(ids[1], "delivery")])
    assert store.revision == 3
    store.delete_example(ids[2])
    assert store.revision == 4
    assert [(e.text, e.label) for e in store.examples()] == [
        (ROWS[0][0], "billing"),
        (ROWS[1][0], "delivery"),
    ]


def test_deleting_an_example_deletes_its_embeddings(store: Store) -> None:
    ids = store.add_examples(ROWS, "test", "enc", vectors(3))
    store.delete_example(ids[1])
    stored_ids, stored = store.embeddings("enc")
    assert stored_ids.tolist() == [ids[0], ids[2]]
    np.testing.assert_array_equal(stored, vectors(3)[[0, 2]])


def test_find_texts_handles_more_texts_than_one_query_takes(store: Store) -> None:
    rows = [(f"text number {i}", f"label {i % 3}") for i in range(1200)]
    store.add_examples(rows, "bulk")
    asked = [f"text number {i}" for i in range(0, 1300, 7)] + ["text number 7"]
    found = store.find_texts(asked)
    assert sorted(found) == sorted({t for t in asked if int(t.rsplit(" ", 1)[1]) < 1200})
    assert all(found[t].label == f"label {int(t.rsplit(' ', 1)[1]) % 3}" for t in found)


def test_status_counts(store: Store) -> None:
    store.add_examples([*ROWS, ("another refund", "refund")], "test")
    assert store.count() == 4
    assert store.label_counts() == {"odd, label": 1, "refund": 2, "shipping": 1}


# -- refusing what is not a workspace --------------------------------------------------------


def test_open_a_missing_database(db: Path) -> None:
    with pytest.raises(WorkspaceError, match="no workspace database here"):
        Store.open(db)
    assert not db.exists()


def test_open_a_file_that_is_not_a_database_changes_nothing(db: Path) -> None:
    garbage = b"this is not SQLite\x00\xff" * 200
    db.write_bytes(garbage)
    with pytest.raises(WorkspaceError, match=r"fewshot\.sqlite: not a fewshot workspace database"):
        Store.open(db)
    assert db.read_bytes() == garbage
    assert [p.name for p in db.parent.iterdir()] == [DB_NAME]


def test_open_an_sqlite_database_of_something_else(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(WorkspaceError, match="an SQLite database, but not a fewshot workspace"):
        Store.open(db)


def test_open_a_database_from_a_newer_fewshot(store: Store, db: Path) -> None:
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(WorkspaceError, match="newer fewshot"):
        Store.open(db)
