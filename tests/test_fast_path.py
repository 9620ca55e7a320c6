"""The ONNX fast path against the torch reference path: the same vectors, the same labels.

Tolerances: every component of a unit vector within ``TOLERANCE`` (1e-4; measured here the
gap is ~3e-7), a SetFit model's probabilities within 1e-4, and the same label for every
text. The texts are the project's own: examples/, tests/data/ and the SetFit tests' tickets.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT

from fewshot.embed import Encoder, encode_with, resolve_model
from fewshot.onnx_encoder import GRAPH, META, ONNX_ENV, cached_export_dir, pipeline_supported
from fewshot.onnx_export import TOLERANCE
from fewshot.stages.finetune import SetFitConfig, fresh_body, train_model
from fewshot.stages.setfit import ONNX_DIR, SetFitModel
from fewshot.workspace import Workspace

DATA = ROOT / "tests" / "data"
HEAVY = ("torch", "transformers", "sentence_transformers")


def project_texts() -> list[str]:
    """Every text of examples/ and tests/data/ that fewshot would classify (~60)."""
    texts = [row["text"] for row in csv.DictReader((EXAMPLES / "tickets.csv").open())]
    texts += (EXAMPLES / "new_tickets.txt").read_text(encoding="utf-8").splitlines()
    for name in ("queries.csv", "tricky.csv"):
        texts += [row["text"] for row in csv.DictReader((DATA / name).open(encoding="utf-8"))]
    for name in ("queries.jsonl", "tricky.jsonl"):
        lines = (DATA / name).read_text(encoding="utf-8").split("\n")
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    texts += (DATA / "queries.txt").read_text(encoding="utf-8").splitlines()
    texts.append("a very long ticket about a parcel " * 200)  # past the 256-token window
    return [t for t in texts if t.strip()]


def test_the_fast_path_gives_the_reference_vectors() -> None:
    encoder = Encoder("default")
    assert encoder.fast is not None  # made by the conftest, as `init`/`add` make it
    texts = project_texts()
    fast = encoder.encode(texts)
    reference = encode_with(encoder.backend, texts, 64)
    assert fast.shape == reference.shape == (len(texts), 384)
    assert float(np.abs(fast - reference).max()) <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # Batched with others (sorted, padded) or alone, a text gets the same vector.
    alone = np.vstack([encoder.encode([t]) for t in texts[:8]])
    assert float(np.abs(alone - fast[:8]).max()) <= TOLERANCE


def _answers(store: Path, texts: list[str]) -> list[tuple[str, dict[str, float]]]:
    with Workspace.open(store) as ws:
        return [(p.label, p.scores) for p in ws.classify(texts)]


def test_retrieval_answers_the_same_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = project_texts()
    with Workspace.create(tmp_path / "fast", min_per_label=10**6) as ws:
        ws.import_file(EXAMPLES / "tickets.csv")
    fast = _answers(tmp_path / "fast", queries)
    monkeypatch.setenv(ONNX_ENV, "0")  # the whole workspace made and read through torch
    with Workspace.create(tmp_path / "ref", min_per_label=10**6) as ws:
        assert ws.corpus.encoder.fast is None
        ws.import_file(EXAMPLES / "tickets.csv")
    reference = _answers(tmp_path / "ref", queries)
    assert [label for label, _ in fast] == [label for label, _ in reference]
    for (_, ours), (_, theirs) in zip(fast, reference):
        assert ours.keys() == theirs.keys()
        assert max(abs(ours[k] - theirs[k]) for k in ours) < 1e-3
    assert {label for label, _ in fast} == {"account", "refund", "shipping", "technical"}


TRAIN = {
    "billing": ["I was charged twice", "Refund my last invoice", "Extra fee on my bill",
                "The invoice amount is wrong"],
    "shipping": ["My parcel never arrived", "The tracking is stuck", "The courier lost my box",
                 "Ship it to a new address"],
    "login": ["I forgot my password", "My account is locked", "Reset my password",
              "I cannot sign in"],
}  # fmt: skip


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SetFit model trained for 3 steps and saved as a promotion saves it (with ``onnx/``).

    The first step's learning rate is 0 (warm-up); the two after it move the encoder.
    """
    root = tmp_path_factory.mktemp("fast-setfit")
    texts = [t for texts in TRAIN.values() for t in texts]
    labels = [label for label, texts in TRAIN.items() for _ in texts]
    (root / "work").mkdir()
    body = fresh_body(resolve_model("default"))
    model = train_model(
        body, texts, labels, SetFitConfig(max_steps=3, learning_rate=1e-4), root / "work"
    )
    model.save(root / "model", export=True)
    return root / "model"


def test_a_promoted_setfit_model_answers_the_same_on_both_paths(
    saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (saved_model / ONNX_DIR / GRAPH).is_file()
    fast = SetFitModel.load(saved_model)
    assert type(fast.body).__name__ == "OnnxEncoder"
    texts = project_texts() + [t for texts in TRAIN.values() for t in texts]
    monkeypatch.setenv(ONNX_ENV, "0")
    reference = SetFitModel.load(saved_model)
    assert type(reference.body).__name__ == "SentenceTransformer"
    fast_vectors, reference_vectors = fast.encode(texts), reference.encode(texts)
    assert float(np.abs(fast_vectors - reference_vectors).max()) <= TOLERANCE
    # The body is the fine-tuned one, not the packaged encoder it started from.
    assert float(np.abs(fast_vectors - Encoder("default").encode(texts)).max()) > 1e-2
    ours = fast.head.predict_proba(fast_vectors)
    theirs = reference.head.predict_proba(reference_vectors)
    np.testing.assert_allclose(fast.predict_proba(texts[:4]), ours[:4], atol=1e-6)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_a_damaged_export_falls_back_says_so_once_and_is_made_again(
    saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    graph = model / ONNX_DIR / GRAPH
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the weights: still a loadable graph
    graph.write_bytes(bytes(data))
    expected = SetFitModel.load(saved_model).predict_proba(["where is my parcel"])
    loaded = SetFitModel.load(model)
    assert type(loaded.body).__name__ == "SentenceTransformer"  # the reference path answers
    np.testing.assert_allclose(loaded.predict_proba(["where is my parcel"]), expected, atol=1e-4)
    said = capsys.readouterr().err
    assert said.count("its ONNX export is damaged (model.onnx does not match its checksum)") == 1
    SetFitModel.load(model)
    assert "ONNX" not in capsys.readouterr().err  # once
    again = SetFitModel.load(model)  # exported again by the first load
    assert type(again.body).__name__ == "OnnxEncoder"


def test_a_missing_base_export_is_made_by_the_reference_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE_DIR", str(tmp_path / "cache"))
    directory = cached_export_dir(resolve_model("default"))
    assert directory.is_relative_to(tmp_path / "cache")
    encoder = Encoder("default")
    assert encoder.fast is None
    vectors = encoder.encode(["where is my parcel?"])
    assert "is missing; encoding with torch (slower) and exporting it" in capsys.readouterr().err
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    assert meta["max_seq_length"] == 256 and meta["dim"] == 384
    assert encoder.fast is not None
    assert float(np.abs(encoder.encode(["where is my parcel?"]) - vectors).max()) <= TOLERANCE


SCRIPT = """
import json, sys
from fewshot.cli import main
sys.argv = ["fewshot", "--store", sys.argv[1], "classify", "--format", "jsonl", sys.argv[2]]
try:
    main()
except SystemExit as done:
    assert not done.code, done.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print("HEAVY " + json.dumps(heavy))
""".replace("HEAVY)", f"{HEAVY!r})")


def _classify_in_fresh_process(store: Path, text: str) -> tuple[dict[str, object], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(store), text],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer, heavy = done.stdout.rsplit("HEAVY ", 1)
    return json.loads(answer), json.loads(heavy)


def test_classify_on_the_fast_path_imports_no_torch(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws", min_per_label=10**6) as ws:
        ws.import_file(EXAMPLES / "tickets.csv")
    answer, heavy = _classify_in_fresh_process(tmp_path / "ws", "where is my parcel?")
    assert (answer["label"], answer["stage"]) == ("shipping", "retrieval")
    assert heavy == []


def test_classify_by_a_serving_setfit_model_imports_no_torch(
    saved_model: Path, tmp_path: Path
) -> None:
    with Workspace.create(tmp_path / "ws", min_per_label=10**6) as ws:
        for label, texts in TRAIN.items():
            ws.add(texts, label)
        ws.registry.directory.mkdir()
        shutil.copytree(saved_model, ws.registry.directory / "1")
        ws.registry.record(1, list(TRAIN), 12, {"gate": "test"}, promoted=True)
    answer, heavy = _classify_in_fresh_process(tmp_path / "ws", "my parcel is lost")
    assert (answer["label"], answer["stage"]) == ("shipping", "setfit")
    assert heavy == []


def test_only_a_mean_pooled_pipeline_takes_the_fast_path(tmp_path: Path) -> None:
    packaged = Path(resolve_model("default"))
    assert pipeline_supported(str(packaged))
    model = tmp_path / "cls-model"
    shutil.copytree(packaged, model, ignore=shutil.ignore_patterns("*.safetensors"))
    pooling = json.loads((model / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert not pipeline_supported(str(model))  # CLS pooling: torch answers, nothing exported
    assert Encoder(str(model)).fast is None
    assert not pipeline_supported("sentence-transformers/some-hub-model")  # not a directory
