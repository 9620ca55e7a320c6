"""The labeled set and its vectors: add, dedupe, remove, and the cache of the vector index.

A text is stored once. Adding a text already labeled the same way changes nothing
(``unchanged``); with another label it is an error unless ``relabel`` is given. Vectors are
stored per encoder in SQLite, so the FAISS index (``vectors.faiss``, a derived cache) is
rebuilt without encoding again whenever it is missing or stale. An add checks the stored
texts again inside its write transaction, so two adds at once end as if one ran after the
other. A read-only workspace is read as it is: missing vectors are made in memory, no cache
is written. The declared labels' priors (:mod:`fewshot.stages.priors`) join the memory the
same way: their vectors are stored per encoder (``storage.labels``), made once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fewshot.dataio import check_one_label_per_text, clean_text, read_labeled
from fewshot.embed import Encoder
from fewshot.errors import ConflictError, DataError
from fewshot.stages.priors import Priors, prior_text
from fewshot.stages.retrieval import Memory
from fewshot.storage.index import VectorIndex
from fewshot.storage.labels import DeclaredLabel, LabelTable
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

    def label_names(self) -> list[str]:
        """Return every label, carried by examples or declared, by name."""
        return sorted({*self.label_counts(), *(d.name for d in self.declared())})

    def declared(self) -> list[DeclaredLabel]:
        """Return the declared labels (``fewshot label-add``), by name."""
        return LabelTable(self.store).declared()

    def priors(self, key: str, encode: Callable[[list[str]], np.ndarray]) -> Priors | None:
        """Return the declared labels' priors under encoder ``key`` (None: none declared).

        A prior whose vector is not stored under ``key`` for its current text is encoded
        with ``encode`` and stored (kept in memory only when the workspace is read-only).
        """
        table = LabelTable(self.store)
        wanted = {d.name: prior_text(d.name, d.description) for d in table.declared()}
        if not wanted:
            return None
        stored = table.vectors(key)
        todo = [(name, text) for name, text in wanted.items() if stored.get(name, ("",))[0] != text]
        if todo:
            made = np.asarray(encode([text for _, text in todo]), dtype=np.float32)
            if not self.store.read_only:
                table.put_vectors(key, todo, made)
            stored.update({name: (text, v) for (name, text), v in zip(todo, made)})
        names = list(wanted)
        vectors = np.stack([stored[name][1] for name in names])
        return Priors.make(names, [wanted[name] for name in names], vectors)

    def find(self, texts: Sequence[str]) -> dict[str, Example]:
        """Return the stored examples whose text is one of ``texts``, keyed by text."""
        return self.store.find_texts(texts)

    def add(
        self, rows: Sequence[Row], source: str, relabel: bool = False, progress: bool = False
    ) -> AddResult:
        """Add cleaned rows in one transaction: all of them, or none when any is refused.

        The stored texts are compared before encoding (so a refused add costs no encoding)
        and again inside the write transaction, so two adds at once end as if one had run
        after the other: the second finds the first's texts ``unchanged``, or refuses them.
        The encoding runs outside the write lock.

        Raises:
            DataError: If a text has two labels among ``rows``, or is stored with another
                label and ``relabel`` is not given.
            WorkspaceError: If the workspace is read-only.
        """
        check_one_label_per_text(rows)
        self.store.check_writable()
        unique: dict[str, tuple[str, str]] = {}
        for text, label, where in rows:
            unique.setdefault(text, (label, where))
        plan = _plan(unique, self.find(list(unique)), relabel)
        encoded: dict[str, np.ndarray] = {}
        if plan.new:
            texts = list(plan.new)
            encoded = dict(zip(texts, self.encoder.encode(texts, progress=progress)))
        with self.store.transaction() as conn:
            plan = _plan(unique, self.find(list(unique)), relabel)  # under the write lock
            have = [(t, lab) for t, lab in plan.new.items() if t in encoded]
            vectors = np.array([encoded[t] for t, _ in have]) if have else None
            key = self.encoder.key
            self.store.add_examples(have, source, key, vectors, list(plan.changes.items()), conn)
            # Texts deleted by another process meanwhile: their vectors are made on next use.
            late = [(t, lab) for t, lab in plan.new.items() if t not in encoded]
            self.store.add_examples(late, source, conn=conn)
        return AddResult(added=len(plan.new), unchanged=plan.unchanged, relabeled=len(plan.changes))

    def remove(self, texts: Sequence[str]) -> int:
        """Delete the examples with these texts (and their embeddings); return how many.

        Texts that are not stored are ignored.
        """
        found = self.find(list(texts))
        for example in found.values():
            self.store.delete_example(example.id)
        return len(found)

    def memory(self, progress: bool = False) -> Memory:
        """Return the labeled set as vectors: the FAISS cache, rebuilt if it is stale.

        The cache is read only when its manifest matches the store's state, and written
        (atomically) only when the workspace is writable.
        """
        if self._memory is not None and self._memory[0] == self.store.revision:
            return self._memory[1]
        state = self._read(self.encoder.key, lambda t: self.encoder.encode(t, progress=progress))
        priors = self.priors(self.encoder.key, lambda t: self.encoder.encode(t))
        if len(state.ids) == 0 and priors is not None:  # labels declared, no example yet
            state = replace(state, vectors=np.zeros((0, priors.vectors.shape[1]), np.float32))
        expected = {
            "encoder": self.encoder.key,
            "revision": state.revision,
            "workspace_id": state.workspace_id,
        }
        index = VectorIndex.load(self.path, expected)
        if index is None:
            index = VectorIndex.build(state.ids, state.vectors)
            if not self.store.read_only:
                with contextlib.suppress(OSError):  # a cache: a failed write only costs time
                    index.save(self.path, expected)
        memory = Memory(index, state.examples, state.vectors, state.ids, priors)
        self._memory = (state.revision, memory)
        return memory

    def memory_under(self, key: str, encode: Callable[[list[str]], np.ndarray]) -> Memory:
        """Return the labeled set under another encoder (``setfit:v2``), stored under ``key``.

        Examples with no embedding under ``key`` yet are encoded with ``encode`` and stored
        (kept in memory only when the workspace is read-only).
        """
        state = self._read(key, encode)
        index = VectorIndex.build(state.ids, state.vectors)
        return Memory(index, state.examples, state.vectors, state.ids)

    def vectors(self, examples: Sequence[Example]) -> np.ndarray:
        """Return the base encoder's vectors of ``examples``, in order (missing ones made)."""
        state = self._read(self.encoder.key, lambda texts: self.encoder.encode(texts))
        row = {int(i): r for r, i in enumerate(state.ids)}
        return state.vectors[[row[e.id] for e in examples]]

    def _read(self, key: str, encode: Callable[[list[str]], np.ndarray]) -> _State:
        """Read the examples and their vectors under ``key`` from one state of the store.

        Missing embeddings are made and stored first; those still missing in the state read
        (a read-only workspace, or rows added meanwhile) are made in memory.
        """
        if not self.store.read_only:
            missing = self.store.missing_embeddings(key)
            if missing:
                made = encode([t for _, t in missing])
                self.store.put_embeddings(key, [i for i, _ in missing], made)
        with self.store.snapshot():
            revision = self.store.revision
            workspace_id = self.store.get_setting("workspace_id")
            ids, vectors = self.store.embeddings(key)
            missing = self.store.missing_embeddings(key)
            examples = {e.id: (e.text, e.label) for e in self.store.examples()}
        if missing:
            made = np.asarray(encode([t for _, t in missing]), dtype=np.float32)
            more = np.array([i for i, _ in missing], dtype=np.int64)
            ids = np.concatenate([ids, more]) if len(ids) else more
            vectors = np.vstack([vectors, made]) if len(ids) > len(more) else made
        return _State(revision, workspace_id, ids, vectors, examples)


@dataclass(frozen=True)
class _State:
    revision: int
    workspace_id: object
    ids: np.ndarray
    vectors: np.ndarray
    examples: dict[int, tuple[str, str]]


@dataclass
class _Plan:
    new: dict[str, str] = field(default_factory=dict)
    changes: dict[int, str] = field(default_factory=dict)
    unchanged: int = 0


def _plan(unique: dict[str, tuple[str, str]], stored: dict[str, Example], relabel: bool) -> _Plan:
    """Say what adding ``{text: (label, where)}`` over the ``stored`` examples does."""
    plan = _Plan()
    for text, (label, where) in unique.items():
        old = stored.get(text)
        if old is None:
            plan.new[text] = label
        elif old.label == label:
            plan.unchanged += 1
        elif relabel:
            plan.changes[old.id] = label
        else:
            raise ConflictError(
                f"{where}: this text is already labeled '{old.label}' in the workspace, "
                f"not '{label}'; pass --relabel to change its label. Nothing was added."
            )
    return plan


__all__ = ["Corpus", "Row", "file_rows", "labeled_rows"]
