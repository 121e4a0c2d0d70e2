"""Structure-aware fuzzing of the pack manifest, export folder, model file and training checkpoint
readers (tests/reliability/filefuzz.py): 20,000 inputs in the default run, each refused with a
named error or read into exactly what its recorded hashes promise. bench/fuzz_files.py runs the
same targets for millions of inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filefuzz  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")

# (examples, inputs per example): 9,000 + 9,000 + 1,000 + 1,000 = 20,000 inputs.
BUDGET = {"pack_manifest": (90, 100), "export_meta": (90, 100), "model_file": (20, 50), "train_state": (20, 50)}


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    marker = tmp_path_factory.mktemp("fuzz") / "code-ran"
    ts = filefuzz.all_targets(marker)
    yield ts
    assert not marker.exists(), "a fuzzed file ran code on load"
    for name, t in ts.items():
        if not t.stats["inputs"]:
            continue  # deselected
        want = BUDGET[name][0] * BUDGET[name][1]
        assert t.stats["inputs"] >= want, (name, t.stats)
        assert t.stats["refused"] > 0 and t.stats["accepted"] > 0, (name, t.stats)  # both outcomes reached


@pytest.mark.parametrize("name", sorted(BUDGET))
def test_reader_refuses_by_name_or_returns_what_the_hashes_promise(targets, name):
    examples, per_example = BUDGET[name]

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def fuzz(seed):
        filefuzz.run(targets[name], seed, per_example)

    fuzz()


def test_pack_with_a_swapped_manifest_model_hash_is_refused(targets, tmp_path):
    # One hand-made case the fuzzer's property rests on: a manifest that names another model.
    import json

    from polykws.core import PolykwsError
    from polykws.firmware.packreader import load_pack

    t = targets["pack_manifest"]
    for name, data in t.files.items():
        (tmp_path / name).write_bytes(data)
    doc = json.loads(t.files["manifest.json"])
    doc["languages"]["lt"]["tflite_sha256"], doc["languages"]["uk"]["tflite_sha256"] = (
        doc["languages"]["uk"]["tflite_sha256"], doc["languages"]["lt"]["tflite_sha256"])
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(PolykwsError, match="differs from manifest.json's lt.tflite_sha256"):
        load_pack(tmp_path)
