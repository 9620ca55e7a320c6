"""The SetFit head's confidence is tempered by what the gate's held-out answers support.

The temperature divides the head's logits: the answers never change, only how sure they
sound. It is fitted on the first-phase candidate's answers to the held-out texts, pulled
towards a SetFit head's usual temperature when those are few (:mod:`fewshot.calibration`),
saved in ``head.json`` and checked when a model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewshot.calibration import (
    GRID,
    HEAD_PRIOR_TEMPERATURE,
    fit_temperature,
    fit_temperature_towards,
    shrunk,
)
from fewshot.embed import resolve_model
from fewshot.errors import WorkspaceError
from fewshot.stages.finetune import fresh_body
from fewshot.stages.setfit import HEAD_JSON, Head, SetFitModel


def _head(temperature: float = 1.0) -> Head:
    rng = np.random.default_rng(0)
    vectors = np.vstack([rng.normal(1, 1, (20, 4)), rng.normal(-1, 1, (20, 4))])
    head = Head.fit(vectors, ["a"] * 20 + ["b"] * 20, random_state=0)
    return Head(head.coef, head.intercept, head.classes, temperature)


def test_a_temperature_keeps_the_answers_and_moves_the_confidence() -> None:
    x = np.random.default_rng(1).normal(0, 1, (50, 4))
    plain, sharp, soft = (_head(t).predict_proba(x) for t in (1.0, 0.5, 2.0))
    assert (plain.argmax(1) == sharp.argmax(1)).all() and (plain.argmax(1) == soft.argmax(1)).all()
    assert (sharp.max(1) > plain.max(1)).all() and (soft.max(1) < plain.max(1)).all()
    np.testing.assert_allclose(sharp.sum(1), 1.0)


def test_the_fitted_temperature_sharpens_an_under_confident_head() -> None:
    # Answers right 95% of the time at a confidence of 0.6: the fit sharpens them (T < 1),
    # and with few answers the shrinkage keeps most of the way to 1.
    proba = np.tile([0.6, 0.4], (100, 1))
    truth = np.r_[np.zeros(95, dtype=np.int64), np.ones(5, dtype=np.int64)]
    fitted = fit_temperature(proba, truth)
    assert fitted < 0.5
    assert fitted < shrunk(fitted, 100) < shrunk(fitted, 6) < 1.0


def test_the_head_s_temperature_follows_many_answers_and_the_prior_for_few() -> None:
    # A head right 90% of the time at a confidence of 0.9 is calibrated as it is (T = 1).
    # With many such answers the fit says so; five answers (4 right) alone would flatten it
    # (T > 1), but with the prior they land between it and that fit; with none, the prior.
    proba = np.tile([0.9, 0.1], (500, 1))
    truth = np.r_[np.zeros(450, dtype=np.int64), np.ones(50, dtype=np.int64)]
    few = np.r_[0:4, 450]
    assert fit_temperature_towards(proba, truth) == pytest.approx(1.0, rel=0.1)
    alone = fit_temperature(proba[few], truth[few])
    assert alone > 1.0
    assert HEAD_PRIOR_TEMPERATURE < fit_temperature_towards(proba[few], truth[few]) < alone
    assert fit_temperature_towards(proba[:0], truth[:0]) == HEAD_PRIOR_TEMPERATURE
    # Many answers, all wrong, flatten the head, prior or not.
    assert fit_temperature_towards(proba[:100], np.ones(100, dtype=np.int64)) > 1.0


@pytest.fixture(scope="module")
def body() -> object:
    return fresh_body(resolve_model("default"))


def test_the_temperature_is_saved_and_loaded(tmp_path: Path, body: object) -> None:
    SetFitModel(body, _head(0.37)).save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / HEAD_JSON).read_text())["temperature"] == 0.37
    assert SetFitModel.load(tmp_path / "m").head.temperature == 0.37


@pytest.mark.parametrize("bad", [0.0, -1.0, 1e9, "hot", None])
def test_a_damaged_temperature_is_refused(tmp_path: Path, body: object, bad: object) -> None:
    SetFitModel(body, _head()).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / HEAD_JSON).read_text())
    meta["temperature"] = bad
    (tmp_path / "m" / HEAD_JSON).write_text(json.dumps(meta))
    with pytest.raises(WorkspaceError, match=r"expected a temperature between 0\.01 and 100"):
        SetFitModel.load(tmp_path / "m")


def test_a_head_saved_before_calibration_loads_untempered(tmp_path: Path, body: object) -> None:
    SetFitModel(body, _head(0.5)).save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / HEAD_JSON).read_text())
    del meta["temperature"]
    (tmp_path / "m" / HEAD_JSON).write_text(json.dumps(meta))
    assert SetFitModel.load(tmp_path / "m").head.temperature == 1.0


def test_a_training_tempers_its_head_by_the_gate_s_held_out_answers(tmp_path: Path) -> None:
    from conftest import EXAMPLES

    from fewshot.workspace import Workspace

    with Workspace.create(tmp_path / "ws", min_per_label=6) as ws:
        for key, value in (("max_steps", "2"), ("train", "never")):
            ws.config(key, value)
        ws.import_file(EXAMPLES / "tickets.csv")
        report = ws.train(force=True)
        fitted, n = report.metrics["head_temperature_fitted"]
        assert n == report.metrics["held_out"] == 8  # 2 of each label's 6 held out
        # Fitted on those answers: a value of the grid, not the prior it starts from.
        assert fitted == pytest.approx(GRID[np.argmin(np.abs(GRID - fitted))])
        assert fitted != HEAD_PRIOR_TEMPERATURE
        assert report.metrics["head_temperature"] == fitted
        model = ws.registry.load_model(report.version)
        assert model.head.temperature == pytest.approx(fitted)
