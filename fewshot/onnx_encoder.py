"""The fast encoder: an ONNX export of a sentence-transformers model, run by ONNX Runtime.

An export is a directory of data, never code: ``model.onnx`` (the transformer's graph,
already optimised by ONNX Runtime), ``tokenizer.json`` (read by ``tokenizers``) and
``export.json`` (format, window, dimension, the graph's inputs and its SHA-256). Encoding is
tokenise, run the graph, mean-pool over the attention mask and L2-normalise in numpy: the
pipeline sentence-transformers runs for ``all-MiniLM-L6-v2`` (Transformer, mean Pooling,
Normalize). Neither torch nor transformers is imported here; an export is made by
:mod:`fewshot.onnx_export`, which needs torch.

:func:`load_export` returns None with the reason for anything missing, damaged or from
another format, and the caller uses the torch reference path instead (:func:`say_once`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
GRAPH = "model.onnx"
TOKENIZER = "tokenizer.json"
META = "export.json"
ONNX_ENV = "FEWSHOT_ONNX"  # "0" / "off": always the torch reference path
CACHE_ENV = "FEWSHOT_CACHE_DIR"
_SAID: set[str] = set()


def enabled() -> bool:
    """Return whether the fast path may be used (``FEWSHOT_ONNX`` is not 0/off/false/no)."""
    return os.environ.get(ONNX_ENV, "").strip().lower() not in ("0", "off", "false", "no")


def say_once(message: str) -> None:
    """Write ``fewshot: message`` to stderr, once per process for each message."""
    if message not in _SAID:
        _SAID.add(message)
        print(f"fewshot: {message}", file=sys.stderr)


def cache_root() -> Path:
    """Return the per-user cache: ``$FEWSHOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fewshot``."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fewshot"


_SOURCE_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
)


def fingerprint(location: str) -> str:
    """Return a key of the model directory ``location``: its path and its files' sizes and mtimes.

    Any change to the weights, the tokenizer or the pipeline gives another key (and so a new
    export); reading the key costs a few ``stat`` calls, not a hash of 90 MB.
    """
    root = Path(location)
    parts: list[Any] = [str(root.resolve())]
    for name in _SOURCE_FILES:
        try:
            stat = (root / name).stat()
        except OSError:
            parts.append([name, None])
            continue
        parts.append([name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def cached_export_dir(location: str) -> Path:
    """Return where the per-user cache keeps the export of the model directory ``location``."""
    return cache_root() / "onnx" / fingerprint(location)


def _threads() -> int:
    """ONNX Runtime's intra-op threads: ``$OMP_NUM_THREADS`` when set, else its own choice."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


class OnnxEncoder:
    """Encodes texts with an export directory: unit float32 vectors, as the reference does.

    Args:
        directory: The export (see the module docstring).
        meta: Its ``export.json`` (``model.onnx`` already checked against its SHA-256).
    """

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = directory
        self.max_seq_length = int(meta["max_seq_length"])
        self.dim = int(meta["dim"])
        self.inputs = [str(name) for name in meta["inputs"]]
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._counter = tokenizer
        self._tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.inter_op_num_threads = 1
        # model.onnx was optimised at export time; optimising it again costs ~0.3 s a start.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        # From the path, not from bytes: ONNX Runtime then holds one copy of the weights.
        graph = str(directory / GRAPH)
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` has, special tokens left out (for :func:`window`)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dim)`` float32 array of unit vectors, in order.

        Texts are sorted by length so each batch pads to a similar length, as
        sentence-transformers does; the results are put back in the given order.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        starts: Any = range(0, len(order), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="Batches")
        for start in starts:
            chosen = order[start : start + batch_size]
            out[chosen] = self._run([encodings[i] for i in chosen])
        return out

    def _run(self, batch: list[Any]) -> np.ndarray:
        """Run the graph on tokenised texts; return their pooled, normalised vectors."""
        width = max(len(e.ids) for e in batch)
        arrays = {name: np.zeros((len(batch), width), dtype=np.int64) for name in self.inputs}
        for row, encoding in enumerate(batch):
            n = len(encoding.ids)
            arrays["input_ids"][row, :n] = encoding.ids
            arrays["attention_mask"][row, :n] = 1
            if "token_type_ids" in arrays:
                arrays["token_type_ids"][row, :n] = encoding.type_ids
        tokens = self._session.run(None, arrays)[0]
        mask = arrays["attention_mask"][:, :, None].astype(np.float32)
        pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)


_PIPELINE = ("Transformer", "Pooling", "Normalize")


def pipeline_supported(location: str) -> bool:
    """Whether the model directory ``location`` is ``Transformer -> mean Pooling [-> Normalize]``.

    Read from its ``modules.json`` and pooling config, without loading it; False for a hub
    name or anything unreadable (the reference path then serves, and nothing is said).
    """
    try:
        modules = json.loads((Path(location) / "modules.json").read_text(encoding="utf-8"))
        kinds = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
        pooling_dir = Path(location) / str(modules[1]["path"])
        pooling = json.loads((pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    if tuple(kinds) not in (_PIPELINE, _PIPELINE[:2]):
        return False
    modes = {key for key, value in pooling.items() if key.startswith("pooling_mode") and value}
    mean = pooling.get("pooling_mode") == "mean" or modes == {"pooling_mode_mean_tokens"}
    return mean and modes <= {"pooling_mode_mean_tokens", "pooling_mode"}


def read_meta(directory: Path) -> dict[str, Any]:
    """Return ``export.json`` of ``directory``; raise ValueError or OSError if unusable."""
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"expected export format {FORMAT}")
    inputs = meta.get("inputs")
    if not isinstance(inputs, list) or not {"input_ids", "attention_mask"} <= set(inputs):
        raise ValueError("export.json names no input_ids/attention_mask inputs")
    return meta


def load_export(directory: Path) -> tuple[OnnxEncoder | None, str]:
    """Return ``(encoder, "")``, or ``(None, why)`` when the export is missing or damaged.

    The graph is checked against the SHA-256 in ``export.json`` before ONNX Runtime reads
    it, so a truncated or altered file is not run.
    """
    if not (directory / META).is_file():
        return None, "missing"
    try:
        meta = read_meta(directory)
        if _sha256(directory / GRAPH) != meta.get("sha256"):
            return None, f"damaged ({GRAPH} does not match its checksum)"
        return OnnxEncoder(directory, meta), ""
    except Exception as err:  # onnxruntime and tokenizers raise many kinds; all mean unusable
        return None, f"damaged ({type(err).__name__}: {err})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def load_cached(directory: Path) -> tuple[OnnxEncoder | None, str]:
    """:func:`load_export`, loaded once per process for each state of ``export.json``."""
    try:
        stat = (directory / META).stat()
    except OSError:
        return None, "missing"
    return _load_once(str(directory), stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=8)
def _load_once(directory: str, mtime_ns: int, inode: int) -> tuple[OnnxEncoder | None, str]:
    return load_export(Path(directory))


__all__ = [
    "OnnxEncoder",
    "cache_root",
    "cached_export_dir",
    "enabled",
    "fingerprint",
    "load_cached",
    "load_export",
    "pipeline_supported",
    "say_once",
]
