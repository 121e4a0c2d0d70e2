"""evaluate(): top-1, per-class accuracy, confusion PNG, FRR/FAR against hand-counted cases."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from polykws.training.evaluate import evaluate, report_from_predictions

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def test_rates_on_a_hand_counted_case():
    # true:  sil sil unk unk unk yes yes yes yes no  no
    # pred:  sil yes unk no  unk yes yes unk no  no  no
    y_true = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    y_pred = [0, 2, 1, 3, 1, 2, 2, 1, 3, 3, 3]
    r = report_from_predictions(y_true, y_pred, LABELS)
    assert r.num_samples == 11
    assert r.top1 == pytest.approx(7 / 11)
    assert r.per_class_accuracy == pytest.approx({"_silence_": 0.5, "_unknown_": 2 / 3, "yes": 0.5, "no": 1.0})
    assert r.confusion[2] == [0, 1, 2, 1]  # 'yes' row: 1 -> unknown, 2 right, 1 -> 'no'
    assert r.keyword_labels == ["yes", "no"]
    # 6 keyword clips: 'yes' lost 2 (one to _unknown_, one to 'no'), 'no' lost none.
    assert r.num_keyword_samples == 6
    assert r.false_reject_rate == pytest.approx(2 / 6)
    assert r.reject_as_filler_rate == pytest.approx(1 / 6)
    assert r.confused_keyword_rate == pytest.approx(1 / 6)
    assert r.per_keyword_frr == pytest.approx({"yes": 0.5, "no": 0.0})
    # 5 filler clips: one silence -> 'yes', one unknown -> 'no'.
    assert r.num_filler_samples == 5
    assert r.false_accept_rate == pytest.approx(2 / 5)
    assert r.per_keyword_far == pytest.approx({"yes": 1 / 5, "no": 1 / 5})


def test_no_filler_classes_means_far_is_undefined_not_zero():
    r = report_from_predictions([0, 1, 1], [0, 1, 0], ["one", "two"])
    assert r.false_accept_rate is None and r.num_filler_samples == 0
    assert r.false_reject_rate == pytest.approx(1 / 3)
    assert r.reject_as_filler_rate == 0.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        report_from_predictions([], [], LABELS)
    with pytest.raises(ValueError, match="outside"):
        report_from_predictions([0, 7], [0, 1], LABELS)


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]


class FirstFeature(nn.Module):
    """Predicts class = round(mean of feature 0): a model whose predictions we know exactly."""

    num_classes = 4

    def forward(self, x):
        v = x[:, 0, :, 0].mean(1).round().clamp(0, 3).long()
        return nn.functional.one_hot(v, 4).float()


def test_evaluate_runs_the_model_and_saves_png_and_json(tmp_path):
    y = np.array([0, 1, 2, 3, 3, 2])
    pred = np.array([0, 1, 2, 3, 2, 2])
    x = np.zeros((6, 49, 10), dtype=np.float32)
    x[:, :, 0] = pred[:, None]
    report = evaluate(FirstFeature(), Split(x, y, tuple(LABELS)), batch_size=4)
    assert report.top1 == pytest.approx(5 / 6)
    assert report.per_class_accuracy["no"] == 0.5
    out = report.save(tmp_path / "eval", title="unit")
    png = (out / "confusion.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    data = json.loads((out / "report.json").read_text())
    assert data["top1"] == pytest.approx(5 / 6) and data["confusion"][3] == [0, 0, 1, 1]
    assert "top-1 83.33%" in (out / "report.txt").read_text()
    with pytest.raises(ValueError, match="4 outputs but the split has 3"):
        evaluate(FirstFeature(), Split(x, y, ("a", "b", "c")))
