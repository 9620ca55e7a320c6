"""The labeled set and its vectors: add, dedupe, remove, and the cache of the vector index.

A text is stored once. Adding a text already labeled the same way changes nothing
(``unchanged``); with another label it is an error unless ``relabel`` is given. Vectors are
stored per encoder in SQLite, so the FAISS index (``vectors.faiss``, a derived cache) is
rebuilt without encoding again whenever it is missing or stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fewshot.dataio import check_one_label_per_text, clean_text, read_labeled
from fewshot.embed import Encoder
from fewshot.errors import DataError
from fewshot.stages.retrieval import Memory
from fewshot.storage.index import VectorIndex
from fewshot.storage.store import Store
from fewshot.values import AddResult, Example

Row = tuple[str, str, str]
"""A labeled row to add: ``(text, label, where)``; ``where`` names it in errors."""


def labeled_rows(texts: Sequence[str], labels: str | Sequence[str]) -> list[Row]:
    """Return cleaned ``(text, label, where)`` rows for :meth:`Workspace.add_rows`.

    Raises:
        DataError: If the counts differ or a text or label is blank.
    """
    label_list = [labels] * len(texts) if isinstance(labels, str) else list(labels)
    if len(label_list) != len(texts):
        raise DataError(f"got {len(texts)} texts but {len(label_list)} labels.")
    return [
        (clean_text(t, "text", f"text {i}"), clean_text(lab, "label", f"text {i}"), f"text {i}")
        for i, (t, lab) in enumerate(zip(texts, label_list), start=1)
    ]


def file_rows(path: Path, text_field: str = "text", label_field: str = "label") -> list[Row]:
    """Read and check a labeled CSV / TSV / JSONL file into rows for :meth:`Workspace.add_rows`."""
    return [
        (text, label, f"{path}, line {line}")
        for text, label, line in read_labeled(path, text_field, label_field)
    ]


class Corpus:
    """The labeled examples of one workspace and their embeddings.

    Args:
        path: The workspace directory (the FAISS cache is written there).
        store: The workspace's store.
        encoder: The workspace's base encoder.
    """

    def __init__(self, path: Path, store: Store, encoder: Encoder) -> None:
        self.path = path
        self.store = store
        self.encoder = encoder
        self._memory: tuple[int, Memory] | None = None

    def examples(self) -> list[Example]:
        """Return every labeled example, oldest first."""
        return self.store.examples()

    def count(self) -> int:
        """Return the number of labeled examples."""
        return self.store.count()

    def label_counts(self) -> dict[str, int]:
        """Return ``{label: examples}``, labels sorted by name."""
        return self.store.label_counts()

    def find(self, texts: Sequence[str]) -> dict[str, Example]:
        """Return the stored examples whose text is one of ``texts``, keyed by text."""
        return self.store.find_texts(texts)

    def add(
        self, rows: Sequence[Row], source: str, relabel: bool = False, progress: bool = False
    ) -> AddResult:
        """Add cleaned rows in one transaction: all of them, or none when any is refused.

        Raises:
            DataError: If a text has two labels among ``rows``, or is stored with another
                label and ``relabel`` is not given.
        """
        check_one_label_per_text(rows)
        stored = self.find([text for text, _, _ in rows])
        new: dict[str, str] = {}
        changes: dict[int, str] = {}
        seen: set[str] = set()
        unchanged = 0
        for text, label, where in rows:
            if text in seen:
                continue
            seen.add(text)
            old = stored.get(text)
            if old is None:
                new[text] = label
            elif old.label == label:
                unchanged += 1
            elif relabel:
                changes[old.id] = label
            else:
                raise DataError(
                    f"{where}: this text is already labeled '{old.label}' in the workspace, "
                    f"not '{label}'; pass --relabel to change its label. Nothing was added."
                )
        vectors = self.encoder.encode(list(new), progress=progress) if new else None
        self.store.add_examples(
            list(new.items()), source, self.encoder.key, vectors, relabel=list(changes.items())
        )
        return AddResult(added=len(new), unchanged=unchanged, relabeled=len(changes))

    def remove(self, texts: Sequence[str]) -> int:
        """Delete the examples with these texts (and their embeddings); return how many.

        Texts that are not stored are ignored.
        """
        found = self.find(list(texts))
        for example in found.values():
            self.store.delete_example(example.id)
        return len(found)

    def memory(self, progress: bool = False) -> Memory:
        """Return the labeled set as vectors: the FAISS cache, rebuilt if it is stale."""
        revision = self.store.revision
        if self._memory is not None and self._memory[0] == revision:
            return self._memory[1]
        key = self.encoder.key
        self._embed_missing(key, lambda texts: self.encoder.encode(texts, progress=progress))
        ids, vectors = self.store.embeddings(key)
        expected = {
            "encoder": key,
            "revision": revision,
            "workspace_id": self.store.get_setting("workspace_id"),
        }
        index = VectorIndex.load(self.path, expected)
        if index is None:
            index = VectorIndex.build(ids, vectors)
            index.save(self.path, expected)
        memory = self._memory_of(index, ids, vectors)
        self._memory = (revision, memory)
        return memory

    def memory_under(self, key: str, encode: Callable[[list[str]], np.ndarray]) -> Memory:
        """Return the labeled set under another encoder (``setfit:v2``), stored under ``key``.

        Examples with no embedding under ``key`` yet are encoded with ``encode`` and stored.
        """
        self._embed_missing(key, encode)
        ids, vectors = self.store.embeddings(key)
        return self._memory_of(VectorIndex.build(ids, vectors), ids, vectors)

    def vectors(self, examples: Sequence[Example]) -> np.ndarray:
        """Return the base encoder's vectors of ``examples``, in order (missing ones made)."""
        self.memory()  # embeds any example that has no stored embedding yet
        ids, matrix = self.store.embeddings(self.encoder.key)
        row = {int(i): r for r, i in enumerate(ids)}
        return matrix[[row[e.id] for e in examples]]

    def _embed_missing(self, key: str, encode: Callable[[list[str]], np.ndarray]) -> None:
        missing = self.store.missing_embeddings(key)
        if missing:
            self.store.put_embeddings(key, [i for i, _ in missing], encode([t for _, t in missing]))

    def _memory_of(self, index: VectorIndex, ids: np.ndarray, vectors: np.ndarray) -> Memory:
        examples = {e.id: (e.text, e.label) for e in self.store.examples()}
        return Memory(index, examples, vectors, ids)


__all__ = ["Corpus", "Row", "file_rows", "labeled_rows"]
