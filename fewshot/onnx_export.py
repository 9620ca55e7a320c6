"""Exporting a loaded sentence-transformers model to an ONNX directory (needs torch).

:func:`export` traces the model's transformer with torch's TorchScript-based exporter,
optimises the graph once with ONNX Runtime, writes the tokenizer as ``tokenizer.json`` and
checks the result against the torch model on probe texts before it moves the directory into
place, so a wrong export is never kept. Only the pipeline ``Transformer -> mean Pooling
[-> Normalize]`` is exported (what the packaged all-MiniLM-L6-v2 and its fine-tuned bodies
are); any other model keeps the torch path (:func:`exportable` says why).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fewshot.onnx_encoder import FORMAT, GRAPH, META, TOKENIZER, load_export

TOLERANCE = 1e-4  # the largest difference of a vector component an export may show
PROBES = (
    "where is my parcel?",
    "I was charged twice for the same order, please refund one of the payments.",
    "ok",
    "Das Passwort funktioniert nicht mehr, seit gestern.",
    "words " * 300,  # past the window: truncation must match
)


def exportable(backend: Any) -> str:
    """Return why ``backend`` (a SentenceTransformer) cannot be exported, or ``""``."""
    names = [type(module).__name__ for module in backend]
    if names not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        return f"its pipeline is {' -> '.join(names)}, not Transformer -> Pooling"
    mode = getattr(backend[1], "pooling_mode", None)
    modes = (mode,) if isinstance(mode, str) else tuple(mode or ())
    if modes != ("mean",):
        return f"its pooling is {'+'.join(map(str, modes)) or 'unknown'}, not mean"
    if getattr(backend.tokenizer, "backend_tokenizer", None) is None:
        return "its tokenizer has no tokenizers.Tokenizer (not a fast tokenizer)"
    return ""


def _wrap(model: Any, inputs: list[str]) -> Any:
    """Wrap the Hugging Face model so the traced graph returns its token embeddings."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(inputs, tensors))).last_hidden_state

    return Wrapped()


def _trace(backend: Any, path: Path) -> list[str]:
    """Write the transformer's ONNX graph to ``path``; return the names of its inputs."""
    import torch

    # A batch with padding, so the exported graph keeps the attention mask.
    features = backend.tokenizer(
        ["a short probe", "a longer probe text that pads the first one"],
        padding=True,
        return_tensors="pt",
    )
    inputs = [
        name for name in ("input_ids", "attention_mask", "token_type_ids") if name in features
    ]
    model = backend[0].auto_model
    training = model.training
    wrapped = _wrap(model, inputs).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "token_embeddings"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings are about shapes we keep dynamic
        torch.onnx.export(
            wrapped,
            tuple(features[name] for name in inputs),
            str(path),
            input_names=inputs,
            output_names=["token_embeddings"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    model.train(training)
    return inputs


def _optimise(raw: Path, out: Path) -> None:
    """Write ``raw`` as optimised by ONNX Runtime to ``out`` (so loading skips that step)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])


def export(backend: Any, directory: Path) -> None:
    """Export ``backend`` (a loaded SentenceTransformer) into ``directory``, replacing it.

    Raises:
        ValueError: If the model cannot be exported or the export does not match it.
        OSError: If the directory cannot be written.
    """
    why = exportable(backend)
    if why:
        raise ValueError(why)
    directory.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{directory.name}.export-", dir=directory.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the export is as readable as its parent
    try:
        inputs = _trace(backend, work / "raw.onnx")
        _optimise(work / "raw.onnx", work / GRAPH)
        (work / "raw.onnx").unlink()
        backend.tokenizer.backend_tokenizer.save(str(work / TOKENIZER))
        meta = {
            "format": FORMAT,
            "max_seq_length": int(backend.max_seq_length),
            "dim": int(backend[0].auto_model.config.hidden_size),
            "inputs": inputs,
            "pipeline": "Transformer -> mean Pooling -> Normalize",
            "sha256": hashlib.sha256((work / GRAPH).read_bytes()).hexdigest(),
        }
        (work / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        expected = backend.encode(
            list(PROBES), batch_size=8, normalize_embeddings=True, convert_to_numpy=True
        )  # the probes are shorter than the window: fewshot.embed.window would keep them
        _check(backend, work, np.asarray(expected, dtype=np.float32))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(work, directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(backend: Any, work: Path, expected: np.ndarray) -> None:
    """Raise ValueError unless the export in ``work`` encodes the probes as ``backend`` does."""
    encoder, why = load_export(work)
    if encoder is None:
        raise ValueError(f"the export cannot be read back: {why}")
    gap = float(np.abs(encoder.encode(list(PROBES), 8) - expected).max())
    if gap > TOLERANCE:
        raise ValueError(f"the export differs from the model by {gap:.2e} (> {TOLERANCE})")


__all__ = ["PROBES", "TOLERANCE", "export", "exportable"]
