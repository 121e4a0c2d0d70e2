"""fit(): learning on a generated fixture, determinism, resume == uninterrupted, run-folder artifacts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from polykws.datasets.frontend import mfcc_frontend
from polykws.training.checkpoint import load_model
from polykws.datasets import SpecAugmentConfig
from polykws.training.config import FitConfig, OptimConfig
from polykws.training.data import TaskLoaders, make_loader
from polykws.training.fit import evaluate_loss_acc, fit
from polykws.training.models import ds_cnn_s
from polykws.core import PolykwsError, seed_everything

LABELS = ("_silence_", "_unknown_", "yes", "no")


def make_fixture(n_train: int = 384, n_val: int = 128, seed: int = 0):
    """Four classes of 49x10 'feature maps': a class-specific pattern under heavy noise.

    Hard enough that an untrained net is at chance, easy enough that one epoch moves it.
    """
    g = np.random.default_rng(seed)
    protos = g.normal(size=(len(LABELS), 49, 10)).astype(np.float32) * 2.0

    def draw(n):
        y = g.integers(0, len(LABELS), n)
        x = protos[y] + g.normal(size=(n, 49, 10)).astype(np.float32) * 3.0
        return x.astype(np.float32), y.astype(np.int64)

    return draw(n_train), draw(n_val)


def loaders(fixture, batch_size=32):
    (x, y), (xv, yv) = fixture
    return TaskLoaders(
        train=make_loader(x, y, batch_size=batch_size, shuffle=True, seed=0),
        val=make_loader(xv, yv, batch_size=256, shuffle=False),
        labels=LABELS,
    )


def small_cfg(**kw) -> FitConfig:
    base = dict(
        epochs=3,
        batch_size=32,
        seed=0,
        optim=OptimConfig(lr=3e-3, warmup_epochs=0.5),
        spec_augment=SpecAugmentConfig(enabled=False),
        progress=False,
        # One intra-op thread: on the shared 2-core machine two spinning OpenMP threads per
        # test run several times slower than one.
        num_threads=1,
    )
    base.update(kw)
    return FitConfig(**base)


def run(run_dir, fixture, cfg, **kw):
    seed_everything(cfg.seed)
    model = ds_cnn_s(num_classes=len(LABELS))
    return model, fit(model, loaders(fixture), cfg, run_dir=run_dir, frontend=mfcc_frontend(), **kw)


@pytest.fixture(scope="module")
def fixture():
    return make_fixture()


def test_one_epoch_decreases_loss(tmp_path, fixture):
    seed_everything(0)
    model = ds_cnn_s(num_classes=len(LABELS))
    ld = loaders(fixture, batch_size=16)
    val_loss_before, val_acc_before = evaluate_loss_acc(model, ld.val)
    result = fit(
        model,
        ld,
        small_cfg(epochs=1, batch_size=16, optim=OptimConfig(lr=1e-2, schedule="constant", warmup_epochs=0)),
        run_dir=tmp_path / "run",
        frontend=mfcc_frontend(),
    )
    epoch = result.history[0]
    assert epoch.val_loss < val_loss_before - 0.1, (val_loss_before, epoch.val_loss)
    assert epoch.val_acc > val_acc_before + 0.1
    # The epoch's mean training loss is already below the untrained model's loss.
    assert np.isfinite(epoch.train_loss) and epoch.train_loss < val_loss_before


def test_run_folder_is_complete_and_self_describing(tmp_path, fixture):
    _, result = run(tmp_path / "run", fixture, small_cfg(epochs=2), meta={"purpose": "test"})
    run_dir = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "best.pt", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["fit"]["epochs"] == 2 and cfg["fit"]["optim"]["schedule"] == "cosine"
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert (run_dir / "metrics.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    loaded = load_model(run_dir / "best.pt")
    assert loaded.labels == LABELS and loaded.sha256 == result.best_sha256
    assert loaded.meta["epoch"] == result.best_epoch and loaded.meta["purpose"] == "test"
    assert loaded.frontend == mfcc_frontend()
    # Best really is the best validation accuracy in the history.
    assert result.best_val_acc == max(h.val_acc for h in result.history)
    assert evaluate_loss_acc(loaded.model, loaders(fixture).val)[1] == pytest.approx(result.best_val_acc)


def test_same_seed_gives_identical_metrics_and_weights(tmp_path, fixture):
    cfg = small_cfg(spec_augment=SpecAugmentConfig(enabled=True), label_smoothing=0.1)
    _, a = run(tmp_path / "a", fixture, cfg)
    _, b = run(tmp_path / "b", fixture, cfg)
    strip = lambda h: [(m.epoch, m.lr, m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in h]
    assert strip(a.history) == strip(b.history)
    assert a.final_sha256 == b.final_sha256
    # ...and a different seed really changes the run (the check above can fail).
    _, c = run(tmp_path / "c", fixture, small_cfg(seed=1, spec_augment=SpecAugmentConfig(enabled=True), label_smoothing=0.1))
    assert c.final_sha256 != a.final_sha256


def test_resume_after_interruption_equals_uninterrupted(tmp_path, fixture):
    cfg = small_cfg(epochs=4, spec_augment=SpecAugmentConfig(enabled=True))
    _, full = run(tmp_path / "full", fixture, cfg)

    def interrupt_after_epoch_2(m):
        if m.epoch == 2:
            raise KeyboardInterrupt  # what Ctrl-C does mid-run

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", fixture, cfg, callbacks=[interrupt_after_epoch_2])
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    # A fresh process would build a fresh model: different init weights must not matter.
    seed_everything(123)
    model = ds_cnn_s(num_classes=len(LABELS))
    resumed = fit(model, loaders(fixture), cfg, run_dir=tmp_path / "cut", frontend=mfcc_frontend(), resume=True)
    assert resumed.resumed_from_epoch == 2
    assert resumed.final_sha256 == full.final_sha256
    assert resumed.best_sha256 == full.best_sha256
    assert [h.val_acc for h in resumed.history] == [h.val_acc for h in full.history]
    assert (tmp_path / "cut" / "metrics.csv").read_text().count("\n") == 5  # header + 4 epochs, no duplicates


def test_resume_refuses_a_changed_config_and_fresh_runs_refuse_to_clobber(tmp_path, fixture):
    run(tmp_path / "r", fixture, small_cfg(epochs=1))
    with pytest.raises(PolykwsError, match="already holds a training checkpoint"):
        run(tmp_path / "r", fixture, small_cfg(epochs=1))
    with pytest.raises(PolykwsError, match="different config"):
        run(tmp_path / "r", fixture, small_cfg(epochs=2, optim=OptimConfig(lr=1e-3)), resume=True)
    with pytest.raises(PolykwsError, match="no training checkpoint"):
        run(tmp_path / "nothing", fixture, small_cfg(epochs=1), resume=True)


def test_step_schedule_and_label_smoothing_run(tmp_path, fixture):
    cfg = small_cfg(epochs=2, label_smoothing=0.1, optim=OptimConfig(schedule="step", step_epochs=1, step_gamma=0.5, warmup_epochs=0))
    _, r = run(tmp_path / "s", fixture, cfg)
    lrs = [h.lr for h in r.history]
    assert lrs == pytest.approx([3e-3, 1.5e-3])


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    sys.path.insert(0, {tests_dir!r})
    from test_fit import make_fixture, loaders, small_cfg, LABELS
    from polykws.training.fit import fit
    from polykws.training.models import ds_cnn_s
    from polykws.datasets.frontend import mfcc_frontend
    from polykws.core import seed_everything
    import time
    cfg = small_cfg(epochs=4)
    seed_everything(0)
    model = ds_cnn_s(num_classes=len(LABELS))
    def slow(m):
        print("EPOCH", m.epoch, flush=True)
        time.sleep(30)  # parked after a checkpoint so the parent can SIGKILL us here
    fit(model, loaders(make_fixture()), cfg, run_dir={run_dir!r}, frontend=mfcc_frontend(), resume={resume}, callbacks=[slow])
    """
)


def test_sigkilled_process_resumes_to_the_same_weights(tmp_path, fixture):
    """A hard kill (no Python cleanup at all) after epoch 1, then `resume` in a new process."""
    run_dir = str(tmp_path / "killed")
    script = KILL_SCRIPT.format(tests_dir=str(Path(__file__).parent), run_dir=run_dir, resume=False)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    try:
        line = proc.stdout.readline()
        assert line.strip() == "EPOCH 1", line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    leftovers = [p.name for p in Path(run_dir).iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    _, full = run(tmp_path / "full", fixture, small_cfg(epochs=4))
    seed_everything(7)
    resumed = fit(ds_cnn_s(num_classes=len(LABELS)), loaders(fixture), small_cfg(epochs=4), run_dir=run_dir, frontend=mfcc_frontend(), resume=True)
    assert resumed.resumed_from_epoch == 1
    assert resumed.final_sha256 == full.final_sha256
