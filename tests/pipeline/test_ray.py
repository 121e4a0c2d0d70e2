"""Fan-out on a real local Ray cluster with 2 workers gives the serial path's artifacts, byte for byte."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (the 'scale' extra)")

from test_engine import fanout_stages, run  # noqa: E402

from polykws.pipeline.engine import RayExecutor, SerialExecutor  # noqa: E402


@pytest.mark.ray
def test_ray_fanout_equals_serial(tmp_path, calls):
    serial = run(fanout_stages(n_jobs=4), tmp_path / "serial", executor=SerialExecutor())
    calls.reset()
    with RayExecutor(workers=2) as ex:
        assert ex.workers == 2
        assert ray.cluster_resources().get("CPU") == 2
        par = run(fanout_stages(n_jobs=4), tmp_path / "ray", executor=ex)
    assert not ray.is_initialized(), "the executor must shut down the cluster it started"
    assert sorted(calls.read()) == sorted([f"job/{i}" for i in range(4)] + ["gather"])
    hashes = lambda r: {n: o.manifest["content_hash"] for n, o in r.outcomes.items()}  # noqa: E731
    assert hashes(par) == hashes(serial)
    for i in range(4):
        assert (par[f"job/{i}"].path / "weights.bin").read_bytes() == (serial[f"job/{i}"].path / "weights.bin").read_bytes()
    worker_pids = {par[f"job/{i}"].summary["pid"] for i in range(4)}
    assert os.getpid() not in worker_pids, "jobs must run in Ray workers, not the driver"
