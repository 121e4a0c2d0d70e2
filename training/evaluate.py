"""evaluate(model, split) -> EvalReport: top-1, per-class accuracy, confusion matrix, FRR/FAR.

Definitions (what a KWS engineer means by them, stated so the numbers are unambiguous):
- Keyword classes are all labels except the filler classes `_silence_` and `_unknown_`.
- False reject rate of keyword k: the fraction of k's clips NOT predicted as k (predicted as
  another keyword or as a filler class). The overall FRR pools all keyword clips; it is also
  split into `reject_as_filler` (keyword clip -> filler) and `confused_keyword` (-> another
  keyword), because the two fail differently on a device.
- False accept rate of keyword k: the fraction of filler clips predicted as k. The overall FAR
  is the fraction of filler clips predicted as any keyword. With no filler clips in the split
  (e.g. a digits-only task) FAR is undefined and reported as None, never as 0.

Everything is computed on whatever split is passed in; the CLI and benches pass the
speaker-disjoint test split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polykws.core import atomic_path, atomic_write_json, atomic_write_text

FILLER_LABELS = ("_silence_", "_unknown_")


@dataclass
class EvalReport:
    labels: list[str]
    num_samples: int
    top1: float
    per_class_accuracy: dict[str, float | None]
    per_class_count: dict[str, int]
    confusion: list[list[int]]  # rows: true label, columns: predicted label
    keyword_labels: list[str]
    false_reject_rate: float | None
    reject_as_filler_rate: float | None
    confused_keyword_rate: float | None
    false_accept_rate: float | None
    per_keyword_frr: dict[str, float | None]
    per_keyword_far: dict[str, float | None]
    num_keyword_samples: int
    num_filler_samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        lines = [
            f"samples {self.num_samples}  top-1 {pct(self.top1)}",
            f"keywords: FRR {pct(self.false_reject_rate)} (rejected as filler {pct(self.reject_as_filler_rate)}, "
            f"confused with another keyword {pct(self.confused_keyword_rate)}) over {self.num_keyword_samples} clips",
            f"filler: FAR {pct(self.false_accept_rate)} over {self.num_filler_samples} clips",
            "per class:",
        ]
        width = max(len(label) for label in self.labels)
        for label in self.labels:
            lines.append(f"  {label.ljust(width)}  {pct(self.per_class_accuracy[label]):>8}  (n={self.per_class_count[label]})")
        return "\n".join(lines)

    def save(self, out_dir: str | Path, *, title: str = "") -> Path:
        """report.json, report.txt and confusion.png in out_dir (atomic writes)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "report.json", self.to_dict())
        atomic_write_text(out / "report.txt", (title + "\n" if title else "") + self.summary() + "\n")
        plot_confusion(np.asarray(self.confusion), self.labels, out / "confusion.png", title=title or "confusion matrix (test split)")
        return out


@torch.no_grad()
def predict(model: nn.Module, x: Any, *, batch_size: int = 512) -> np.ndarray:
    """Argmax predictions for features (N, frames, features) in eval mode."""
    was_training = model.training
    model.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    preds = []
    for start in range(0, len(xt), batch_size):
        batch = xt[start : start + batch_size]
        if batch.dim() == 3:
            batch = batch.unsqueeze(1)
        preds.append(model(batch).argmax(1).numpy())
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def report_from_predictions(y_true: Any, y_pred: Any, labels: list[str] | tuple[str, ...]) -> EvalReport:
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape} labels vs {y_pred.shape} predictions")
    if len(y_true) == 0:
        raise ValueError("cannot evaluate an empty split")
    k = len(labels)
    if y_true.min() < 0 or y_true.max() >= k or y_pred.min() < 0 or y_pred.max() >= k:
        raise ValueError(f"label ids outside 0..{k - 1}")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    counts = cm.sum(1)
    per_class = {lab: (float(cm[i, i] / counts[i]) if counts[i] else None) for i, lab in enumerate(labels)}
    filler_idx = [i for i, lab in enumerate(labels) if lab in FILLER_LABELS]
    kw_idx = [i for i in range(k) if i not in filler_idx]
    kw_total = int(counts[kw_idx].sum())
    filler_total = int(counts[filler_idx].sum()) if filler_idx else 0

    def ratio(num: float, den: int) -> float | None:
        return float(num / den) if den else None

    kw_correct = int(sum(cm[i, i] for i in kw_idx))
    kw_to_filler = int(cm[np.ix_(kw_idx, filler_idx)].sum()) if filler_idx else 0
    per_kw_frr = {labels[i]: ratio(counts[i] - cm[i, i], int(counts[i])) for i in kw_idx}
    per_kw_far = {labels[i]: ratio(cm[filler_idx, i].sum(), filler_total) if filler_idx else None for i in kw_idx}
    filler_accepted = int(cm[np.ix_(filler_idx, kw_idx)].sum()) if filler_idx else 0
    return EvalReport(
        labels=labels,
        num_samples=int(len(y_true)),
        top1=float((y_true == y_pred).mean()),
        per_class_accuracy=per_class,
        per_class_count={lab: int(counts[i]) for i, lab in enumerate(labels)},
        confusion=cm.tolist(),
        keyword_labels=[labels[i] for i in kw_idx],
        false_reject_rate=ratio(kw_total - kw_correct, kw_total),
        reject_as_filler_rate=ratio(kw_to_filler, kw_total),
        confused_keyword_rate=ratio(kw_total - kw_correct - kw_to_filler, kw_total),
        false_accept_rate=ratio(filler_accepted, filler_total),
        per_keyword_frr=per_kw_frr,
        per_keyword_far=per_kw_far,
        num_keyword_samples=kw_total,
        num_filler_samples=filler_total,
    )


def evaluate(model: nn.Module, split: Any, *, labels: list[str] | tuple[str, ...] | None = None, batch_size: int = 512) -> EvalReport:
    """Score `model` on `split` (a FeatureSplit or anything with x, y and labels)."""
    labels = list(labels if labels is not None else split.labels)
    n_out = getattr(model, "num_classes", len(labels))
    if n_out != len(labels):
        raise ValueError(f"model has {n_out} outputs but the split has {len(labels)} labels")
    return report_from_predictions(split.y, predict(model, split.x, batch_size=batch_size), labels)


def plot_confusion(cm: np.ndarray, labels: list[str], path: str | Path, *, title: str = "") -> Path:
    """Row-normalised confusion matrix as PNG (counts printed in cells when it stays legible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=7 if k > 20 else 9)
    ax.set_yticks(range(k), labels, fontsize=7 if k > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if k <= 24:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6, color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
