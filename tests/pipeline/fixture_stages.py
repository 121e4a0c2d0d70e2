"""Tiny stage functions for the engine tests (module-level so worker processes and Ray can import them).

Each call appends "<stage name>" to $POLYKWS_TEST_CALLS, so tests can count which stages really ran,
even when they ran in another process.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def _record(ctx) -> None:
    path = os.environ.get("POLYKWS_TEST_CALLS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (ctx.name + "\n").encode())
        finally:
            os.close(fd)


def numbers(ctx):
    _record(ctx)
    n = int(ctx.config["n"])
    (ctx.out / "numbers.json").write_text(json.dumps(list(range(n))))
    return {"count": n}


def power(ctx):
    _record(ctx)
    xs = json.loads((ctx.input("numbers") / "numbers.json").read_text())
    p = int(ctx.config["p"])
    # `label` is in the config but does not change the output: used to test early cut-off.
    (ctx.out / "values.json").write_text(json.dumps([x**p for x in xs]))
    return {"sum": sum(x**p for x in xs)}


def total(ctx):
    _record(ctx)
    s = sum(sum(json.loads((p / "values.json").read_text())) for p in ctx.inputs.values())
    (ctx.out / "total.txt").write_text(str(s))
    return {"total": s, "headline": f"total {s}"}


def fail_if(ctx):
    _record(ctx)
    if ctx.config.get("fail"):
        (ctx.out / "partial.txt").write_text("half-done")
        raise RuntimeError("asked to fail")
    (ctx.out / "ok.txt").write_text("ok")
    return {}


def slow(ctx):
    """Writes a marker, then sleeps: the kill test SIGKILLs the run while this sleeps."""
    _record(ctx)
    saw_partial = (ctx.out / "partial.txt").exists()
    (ctx.out / "partial.txt").write_text("started")
    # The sleep comes from the environment, not the config, so the resumed run has the same key.
    time.sleep(float(os.environ.get("POLYKWS_TEST_SLEEP", "0")))
    (ctx.out / "done.txt").write_text("done")
    return {"saw_partial": saw_partial}


def train_tiny(ctx):
    """A small, real torch training job: the fan-out determinism check compares its weights."""
    import torch

    _record(ctx)
    cfg = ctx.config
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    x = torch.randn(256, 1, 12, 6, generator=g)
    w_true = torch.randn(12 * 6, int(cfg["classes"]), generator=g)
    y = (x.flatten(1) @ w_true).argmax(1)
    torch.manual_seed(int(cfg["seed"]))
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 12 * 6, int(cfg["classes"])),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]))
    for _ in range(int(cfg["steps"])):
        for i in range(0, 256, 32):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    weights = np.concatenate([p.detach().numpy().ravel() for p in model.state_dict().values() if p.dtype.is_floating_point])
    (ctx.out / "weights.bin").write_bytes(weights.astype("<f4").tobytes())
    return {"train_acc": acc, "pid": os.getpid()}


def gather(ctx):
    _record(ctx)
    rows = {name: ctx.summary(name)["train_acc"] for name in sorted(ctx.inputs)}
    (ctx.out / "table.json").write_text(json.dumps(rows, sort_keys=True))
    return {"jobs": len(rows)}


def die(ctx):
    """A worker that dies outright (no Python exception reaches the engine's stage wrapper)."""
    _record(ctx)
    os._exit(3)
