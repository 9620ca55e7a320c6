"""Helpers shared by the benchmark scripts: data, support sets, embedding cache, machine."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
DEFAULT_CACHE = HERE / ".cache" / "accuracy"
SETFIT_DATASETS = ("sst5", "amazon_counterfactual_en", "cr", "emotion", "enron_spam", "ag_news")
ALL_DATASETS = (*SETFIT_DATASETS, "sst2", "trec6", "subj", "mr")


def read_split(data_dir: Path, name: str, split: str) -> tuple[list[str], list[str]]:
    """Return (texts, labels) of ``data_dir/name/split.jsonl``."""
    path = data_dir / name / f"{split}.jsonl"
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist; pass --data-dir (see --help).")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [str(r["text"]) for r in rows], [str(r["label"]) for r in rows]


def sample_support(
    texts: Sequence[str], labels: Sequence[str], n: int, seed: int
) -> tuple[list[str], list[str]]:
    """Return ``n`` examples per label drawn from (texts, labels) with ``seed``.

    Labels are visited in sorted order and each draws from its own seeded permutation, so
    the set for (dataset, n, seed) is the same for every method and every run. A label with
    fewer than ``n`` examples gives all of them. The result is shuffled (seeded) so no
    method sees the examples grouped by label.
    """
    rng = np.random.default_rng(seed)
    label_array = np.asarray(labels)
    chosen: list[int] = []
    for label in sorted(set(labels)):
        members = np.flatnonzero(label_array == label)
        chosen.extend(int(i) for i in rng.permutation(members)[:n])
    order = rng.permutation(len(chosen))
    picked = [chosen[i] for i in order]
    return [texts[i] for i in picked], [labels[i] for i in picked]


def digest(parts: Iterable[str]) -> str:
    """Return a short SHA-256 of ``parts`` joined by NUL bytes."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:20]


def source_fingerprint(paths: Iterable[Path]) -> str:
    """Return a short hash of the contents of ``paths`` (the code a result depends on)."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def package_fingerprint() -> str:
    """Hash of every ``fewshot/**/*.py``: changes whenever the pipeline's code changes."""
    return source_fingerprint((ROOT / "fewshot").rglob("*.py"))


def retrieval_fingerprint() -> str:
    """Hash of the modules the retrieval stage (``knn``) depends on."""
    names = ("stages/retrieval.py", "storage/index.py", "embed.py")
    return source_fingerprint(ROOT / "fewshot" / name for name in names)


class EmbeddingCache:
    """Encoder embeddings on disk, keyed by the model and the exact texts.

    Each entry is ``<key>.npy`` plus ``<key>.json`` holding the encoding's seconds per text,
    so a cached throughput is still a measured one. Within a process every vector is also
    kept by text, so a support set whose texts were all seen (N = 8 is a prefix of N = 64
    for the same seed) costs no encoding; its seconds are then the per-text rate measured
    when those texts were encoded.
    """

    def __init__(self, directory: Path, model: str) -> None:
        self.directory = directory
        self.model = model
        self._vectors: dict[str, np.ndarray] = {}
        self._rate: dict[str, float] = {}

    def _remember(self, texts: Sequence[str], vectors: np.ndarray, rate: float) -> None:
        for text, vector in zip(texts, vectors):
            self._vectors[text] = vector
            self._rate[text] = rate

    def encode(self, texts: Sequence[str], use_cache: bool = True) -> tuple[np.ndarray, float]:
        """Return (unit vectors, seconds the encoding of ``texts`` took)."""
        from fewshot.embed import Encoder

        key = digest([self.model, *texts])
        vectors_path = self.directory / f"{key}.npy"
        meta_path = self.directory / f"{key}.json"
        if use_cache and vectors_path.exists() and meta_path.exists():
            rate = float(json.loads(meta_path.read_text())["seconds_per_text"])
            vectors = np.load(vectors_path)
            self._remember(texts, vectors, rate)
            return vectors, rate * len(texts)
        if not (use_cache and all(t in self._vectors for t in texts)):
            encoder = Encoder(self.model)
            _ = encoder.dim  # the model load is not part of the encoding time
            todo = sorted({t for t in texts if not use_cache or t not in self._vectors})
            start = time.perf_counter()
            fresh = encoder.encode(todo)
            rate = (time.perf_counter() - start) / max(len(todo), 1)
            self._remember(todo, fresh, rate)
        vectors = np.stack([self._vectors[t] for t in texts]).astype(np.float32)
        rate = float(np.mean([self._rate[t] for t in texts]))
        self.directory.mkdir(parents=True, exist_ok=True)
        np.save(vectors_path, vectors)
        meta_path.write_text(json.dumps({"seconds_per_text": rate, "n": len(texts)}))
        return vectors, rate * len(texts)


def machine() -> str:
    """Return the CPU model and core count (and the GPU, if torch sees one).

    e.g. ``AMD EPYC, 2 cores``.
    """
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = ""
    if "torch" in sys.modules:  # training (setfit, fewshot) uses a GPU whenever torch sees one
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return f"{model}, {cores} cores{gpu}"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
