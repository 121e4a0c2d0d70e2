"""Session fixtures for the export tests: real MFCC features from ../shared, a quickly trained
DS-CNN-S base and its int8 export, shared by every test (one onnx2tf conversion per model).

Features: a fixed subset of real recordings (gu digits as the base language; ar digits, lt
commands and bn digits as targets), computed with polykws.datasets' own loader and frontend.
Splits here are by file order, not by speaker: these tests check export mechanics (bytes,
kernels, parity), not accuracy claims - those live in bench/export.py on the datasets layer's
speaker-disjoint splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from polykws.datasets.audio import load_audio
from polykws.datasets.frontend import compute_features_batch, mfcc_frontend

HEAD_SLOTS = 12


@dataclass
class Feats:
    labels: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _load(data: Path, rel: str, words: list[str], per_word: int) -> Feats:
    frontend = mfcc_frontend()
    clips, ys = [], []
    for i, w in enumerate(words):
        files = sorted(p for p in (data / "kws" / rel / w).iterdir() if p.suffix.lower() in (".wav", ".mp3", ".flac"))
        for f in files[:per_word]:
            clips.append(load_audio(f))
            ys.append(i)
    x = compute_features_batch(np.stack(clips), frontend)
    y = np.asarray(ys)
    test = np.arange(len(y)) % 4 == 0
    return Feats(tuple(words), x[~test], y[~test], x[test], y[test])


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 2e-3, params=None, seed: int = 0) -> nn.Module:
    # One thread: on a shared 2-core machine intra-op threads oversubscribe (measured 10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, x, y, epochs, lr, params, seed)
    finally:
        torch.set_num_threads(threads)


def _train(model, x, y, epochs, lr, params, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(params if params is not None else [p for p in model.parameters() if p.requires_grad], lr=lr)
    xt = torch.from_numpy(x)[:, None]
    yt = torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 32):
            idx = perm[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def frontend():
    return mfcc_frontend()


@pytest.fixture(scope="session")
def feats(shared_data) -> dict[str, Feats]:
    return {
        "gu": _load(shared_data, "gu/gujarati_digits", [str(i) for i in range(10)], 40),
        "ar": _load(shared_data, "ar/arabic_digits", ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], 24),
        "lt": _load(shared_data, "lt/lt_speech_commands", ["nulis", "vienas", "du", "trys", "keturi", "penki", "taip", "ne", "labas", "stop", "startas", "pauzė"], 14),
        "bn": _load(shared_data, "bn/bengali_digits", ["sunno", "ek", "dui", "tin", "char", "panch", "choy", "sat"], 24),
    }


@pytest.fixture(scope="session")
def base_model(feats):
    from polykws.training.models import ds_cnn_s

    torch.manual_seed(0)
    f = feats["gu"]
    return train(ds_cnn_s(num_classes=10), f.x_train, f.y_train, epochs=12)


@pytest.fixture(scope="session")
def base_export(base_model, feats, frontend, tmp_path_factory):
    from polykws.export.api import export_base

    f = feats["gu"]
    out = tmp_path_factory.mktemp("export")
    return export_base(base_model, frontend, f.labels, f.x_train, out, parity_x=f.x_test, head_slots=HEAD_SLOTS, meta={"model_name": "ds_cnn_s"})
