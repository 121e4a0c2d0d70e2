"""Stage engine: keys, reuse, dependent-only re-runs, failures, kills, fsspec stores, fan-out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fixture_stages as fx
import pytest

from polykws.pipeline.engine import ProcessExecutor, SerialExecutor, Stage, StageFailed, stage_key, toposort
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.store import ArtifactStore
from polykws.core import PolykwsError


def diamond(n=5, p_a=2, p_b=3, label="x"):
    """numbers -> (pow_a, pow_b) -> total."""
    return [
        Stage("numbers", "numbers", fx.numbers, {"n": n}),
        Stage("pow_a", "power", fx.power, {"p": p_a, "label": label}, deps=("numbers",)),
        Stage("pow_b", "power", fx.power, {"p": p_b}, deps=("numbers",)),
        Stage("total", "total", fx.total, {}, deps=("pow_a", "pow_b")),
    ]


def run(stages, root, **kw):
    return run_pipeline(stages, ArtifactStore(root), show_progress=False, **kw)


def test_second_run_reuses_every_stage(tmp_path, calls):
    first = run(diamond(), tmp_path / "a")
    assert sorted(first.ran()) == ["numbers", "pow_a", "pow_b", "total"]
    assert first["total"].summary["total"] == sum(x**2 + x**3 for x in range(5))
    calls.reset()
    second = run(diamond(), tmp_path / "a")
    assert second.reused() == list(second.outcomes) and calls.read() == []
    assert {n: o.key for n, o in second.outcomes.items()} == {n: o.key for n, o in first.outcomes.items()}


def test_config_change_reruns_only_dependent_stages(tmp_path, calls):
    run(diamond(), tmp_path / "a")
    calls.reset()
    res = run(diamond(p_b=4), tmp_path / "a")
    # pow_a and numbers untouched; pow_b changed and total depends on it.
    assert sorted(calls.read()) == ["pow_b", "total"]
    assert res["numbers"].status == res["pow_a"].status == "reused"
    assert res["total"].summary["total"] == sum(x**2 + x**4 for x in range(5))
    calls.reset()
    # Changing the root config re-runs everything downstream of it.
    run(diamond(n=6, p_b=4), tmp_path / "a")
    assert sorted(calls.read()) == ["numbers", "pow_a", "pow_b", "total"]


def test_rerun_with_identical_output_does_not_cascade(tmp_path, calls):
    run(diamond(), tmp_path / "a")
    calls.reset()
    # `label` changes pow_a's key but not its files: total is keyed by content, so it is reused.
    res = run(diamond(label="y"), tmp_path / "a")
    assert calls.read() == ["pow_a"]
    assert res["total"].status == "reused"


def test_version_and_function_are_part_of_the_key(tmp_path):
    a = Stage("s", "numbers", fx.numbers, {"n": 1}, version="1")
    b = Stage("s", "numbers", fx.numbers, {"n": 1}, version="2")
    c = Stage("s", "numbers", fx.power, {"n": 1}, version="1")  # another function, other imports
    assert len({stage_key(a, {}), stage_key(b, {}), stage_key(c, {})}) == 3


def test_stage_manifest_describes_the_artifact(tmp_path):
    res = run(diamond(), tmp_path / "a")
    o = res["pow_a"]
    manifest = json.loads((o.path / "stage.json").read_text())
    assert manifest["key"] == o.key and manifest["config"] == {"p": 2, "label": "x"}
    assert manifest["inputs"]["numbers"]["key"] == res["numbers"].key
    assert set(manifest["files"]) == {"values.json"}
    assert o.path == tmp_path / "a" / "power" / o.key
    assert not list((tmp_path / "a").rglob(".work-*")), "work folders must be gone after success"


def test_failure_keeps_finished_stages_and_resumes(tmp_path, calls):
    stages = lambda fail: [  # noqa: E731
        Stage("numbers", "numbers", fx.numbers, {"n": 3}),
        Stage("flaky", "flaky", fx.fail_if, {"fail": fail}, deps=("numbers",)),
    ]
    with pytest.raises(StageFailed, match="flaky failed: RuntimeError: asked to fail"):
        run(stages(True), tmp_path / "a")
    assert not list((tmp_path / "a" / "flaky").glob("[!.]*")), "a failed stage must not be published"
    calls.reset()
    res = run(stages(False), tmp_path / "a")
    assert calls.read() == ["flaky"] and res["numbers"].status == "reused"


def test_killed_run_resumes(tmp_path, calls):
    """SIGKILL a real run mid-stage; the next run reuses finished stages and rebuilds the torn one."""
    root = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(Path(fx.__file__).parent)!r})
        import fixture_stages as fx
        from polykws.pipeline.engine import Stage
        from polykws.pipeline.schedule import run_pipeline
        from polykws.pipeline.store import ArtifactStore
        stages = [Stage("numbers", "numbers", fx.numbers, {{"n": 3}}),
                  Stage("slow", "slow", fx.slow, {{}}, deps=("numbers",), resumable=True)]
        res = run_pipeline(stages, ArtifactStore({str(root)!r}), show_progress=False)
        print("STATUS", res["numbers"].status, res["slow"].status, res["slow"].summary["saw_partial"])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "POLYKWS_TEST_SLEEP": "120"})
    deadline = time.time() + 120
    while time.time() < deadline and not list(root.glob("slow/.work-*/partial.txt")):
        time.sleep(0.1)
    assert list(root.glob("slow/.work-*/partial.txt")), "the slow stage never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [p for p in (root / "slow").iterdir() if not p.name.startswith(".")], "killed stage was published"
    assert calls.read() == ["numbers", "slow"]
    calls.reset()
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "POLYKWS_TEST_SLEEP": "0"},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert calls.read() == ["slow"], "only the killed stage re-runs"
    # numbers reused; slow ran and found its work folder from the killed run (resumable=True).
    assert "STATUS reused ran True" in out.stdout
    done = [p for p in (root / "slow").iterdir() if not p.name.startswith(".")]
    assert len(done) == 1 and (done[0] / "done.txt").read_text() == "done"


def test_non_resumable_stage_starts_clean(tmp_path, calls):
    root = tmp_path / "store"
    stage = Stage("slow", "slow", fx.slow, {})
    store = ArtifactStore(root)
    key = stage_key(stage, {})
    (store.work_dir("slow", key) / "partial.txt").write_text("torn")
    res = run([stage], root)
    assert res["slow"].summary["saw_partial"] is False


def test_force_rebuilds_a_finished_stage(tmp_path, calls):
    run(diamond(), tmp_path / "a")
    calls.reset()
    res = run(diamond(), tmp_path / "a", force=["power"])
    assert sorted(calls.read()) == ["pow_a", "pow_b"]
    assert res["total"].status == "reused"  # same content


def test_fsspec_object_store_root(tmp_path, calls):
    """Any fsspec URI works as the artifact root (here the in-memory filesystem)."""
    import fsspec

    uri = f"memory://polykws-test-{os.getpid()}-{time.time_ns()}"
    try:
        first = run_pipeline(diamond(), ArtifactStore(uri, cache_dir=tmp_path / "cache1"), show_progress=False)
        assert first["total"].uri.startswith("memory://")
        fs = fsspec.filesystem("memory")
        assert fs.exists(first["total"].uri + "/stage.json") and fs.exists(first["total"].uri + "/total.txt")
        calls.reset()
        # A second machine (empty local cache) reuses everything and can read the files.
        second = run_pipeline(diamond(), ArtifactStore(uri, cache_dir=tmp_path / "cache2"), show_progress=False)
        assert calls.read() == [] and second.reused() == list(second.outcomes)
        assert (second["total"].path / "total.txt").read_text() == first["total"].summary["total"].__str__()
    finally:
        fsspec.filesystem("memory").rm(uri.removeprefix("memory://"), recursive=True)


def fanout_stages(n_jobs=4, steps=3):
    jobs = [
        Stage(f"job/{i}", "job", fx.train_tiny, {"seed": i, "classes": 3, "lr": 0.01, "steps": steps}, fanout=True, threads=1)
        for i in range(n_jobs)
    ]
    return jobs + [Stage("gather", "gather", fx.gather, {}, deps=tuple(j.name for j in jobs))]


def test_process_fanout_equals_serial(tmp_path, calls):
    serial = run(fanout_stages(), tmp_path / "serial", executor=SerialExecutor())
    with ProcessExecutor(2) as ex:
        par = run(fanout_stages(), tmp_path / "par", executor=ex)
    assert {n: o.manifest["content_hash"] for n, o in par.outcomes.items()} == {
        n: o.manifest["content_hash"] for n, o in serial.outcomes.items()
    }
    pids = {par[f"job/{i}"].summary["pid"] for i in range(4)}
    assert os.getpid() not in pids, "fan-out jobs must run in worker processes"
    assert (par["job/0"].path / "log.txt").exists()


def test_a_dead_worker_fails_its_stage_by_name(tmp_path, calls):
    # The pool breaks without a StageFailed from the stage wrapper; the error still names the stage.
    stages = [Stage("dies", "dies", fx.die, {}, fanout=True)]
    with ProcessExecutor(2) as ex, pytest.raises(StageFailed, match="stage dies failed: BrokenProcessPool") as info:
        run(stages, tmp_path / "a", executor=ex)
    assert info.value.stage == "dies"


def test_graph_errors():
    with pytest.raises(PolykwsError, match="unknown stage"):
        toposort([Stage("a", "a", fx.numbers, deps=("nope",))])
    with pytest.raises(PolykwsError, match="cycle"):
        toposort([Stage("a", "a", fx.numbers, deps=("b",)), Stage("b", "b", fx.numbers, deps=("a",))])
    with pytest.raises(PolykwsError, match="duplicate"):
        toposort([Stage("a", "a", fx.numbers), Stage("a", "a", fx.numbers)])
    with pytest.raises(PolykwsError, match="JSON"):
        Stage("a", "a", fx.numbers, {"x": object()})


def test_plan_reports_reuse_run_and_downstream(tmp_path, calls):
    from polykws.pipeline.schedule import plan

    store = ArtifactStore(tmp_path / "a")
    assert [s for _, s, _ in plan(diamond(), store)] == ["run", "after upstream", "after upstream", "after upstream"]
    run(diamond(), tmp_path / "a")
    assert [s for _, s, _ in plan(diamond(), store)] == ["reuse"] * 4
    status = {st.name: s for st, s, _ in plan(diamond(p_b=5), store)}
    assert status == {"numbers": "reuse", "pow_a": "reuse", "pow_b": "run", "total": "after upstream"}
    assert calls.read().count("total") == 1  # planning runs nothing
