"""The FAISS vector index: a derived, disposable cache of the stored embeddings.

``vectors.faiss`` is written beside a manifest ``vectors.json`` (format, encoder, dimension,
count, the store's identity and revision, and the file's SHA-256). :meth:`VectorIndex.load`
returns None for anything missing, stale, truncated, corrupt or from another encoder, and the
caller rebuilds from SQLite. FAISS's own file format is read, never a pickle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.storage.files import atomic_write_bytes

INDEX_NAME = "vectors.faiss"
MANIFEST_NAME = "vectors.json"
FORMAT = 1


class VectorIndex:
    """Exact inner-product search over unit vectors, keyed by example id."""

    def __init__(self, faiss_index: Any) -> None:
        self._index = faiss_index

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """Build an index of ``vectors`` (n, dim) under the int64 ``ids``."""
        import faiss

        dim = int(vectors.shape[1])
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if len(ids):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
        return cls(index)

    @property
    def count(self) -> int:
        """The number of vectors."""
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self._index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(similarities, ids)``, each (n_queries, min(k, count)), most similar first."""
        k = min(k, self.count)
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        sims, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return sims, ids

    def save(self, directory: Path, manifest: dict[str, Any]) -> None:
        """Write the index and its manifest atomically (index first, manifest last)."""
        import faiss

        data = faiss.serialize_index(self._index).tobytes()
        atomic_write_bytes(directory / INDEX_NAME, data)
        full = {
            **manifest,
            "format": FORMAT,
            "dim": self.dim,
            "count": self.count,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        atomic_write_bytes(directory / MANIFEST_NAME, json.dumps(full, indent=2).encode())

    @classmethod
    def load(cls, directory: Path, expected: dict[str, Any]) -> VectorIndex | None:
        """Load the cached index if it matches ``expected`` and its checksum; else None."""
        import faiss

        try:
            manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
            data = (directory / INDEX_NAME).read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            return None
        if any(manifest.get(key) != value for key, value in expected.items()):
            return None
        if manifest.get("sha256") != hashlib.sha256(data).hexdigest():
            return None
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            return None
        loaded = cls(index)
        if loaded.count != manifest.get("count") or loaded.dim != manifest.get("dim"):
            return None
        return loaded
