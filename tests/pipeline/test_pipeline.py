"""`polykws run` end to end on a generated corpus: real scan, features, fit, adapt, report.

The default test disables export (TensorFlow makes it minutes); the slow one runs every stage,
including int8 export, blobs, flash image and host TFLM evaluation, through worker processes.
"""

from __future__ import annotations

import json

import pytest
import yaml
from corpus_fixture import make_corpus, pipeline_config

from polykws.pipeline.config import load_config
from polykws.pipeline.engine import SerialExecutor
from polykws.pipeline.schedule import run_pipeline
from polykws.pipeline.run import build_stages, publish
from polykws.pipeline.store import ArtifactStore
from polykws.core import ConfigError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _load(tmp_path, raw: dict, name="fixture.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return load_config(p)


def _run(cfg):
    result = run_pipeline(build_stages(cfg, progress=False), ArtifactStore(cfg.artifacts_uri), SerialExecutor(), show_progress=False)
    publish(cfg, result, result.wall_s)
    return result


def test_run_reuse_and_dependent_reruns(tmp_path, corpus):
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    first = _run(_load(tmp_path, raw))
    assert first.reused() == []
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert [r["lang"] for r in report["languages"]] == ["bb", "cc"]
    import numpy as np
    import torch

    from polykws.pipeline.splitio import load_splits
    from polykws.training.checkpoint import load_model

    for r in report["languages"]:
        assert r["labels"][-2:] == ["_silence_", "_unknown_"] and r["test_clips"] > 0
        assert r["int8_acc"] is None  # export disabled: not measured, not invented
        # The reported float accuracy is recomputed here from the shipped model and the stored
        # test split, independently of the stage's evaluator.
        model = load_model(first[f"adapt/{r['lang']}/head_only/s0"].path / "model.pt").model.eval()
        test = load_splits(first[f"features/{r['lang']}"].path)["test"]
        with torch.no_grad():
            pred = model(torch.from_numpy(np.asarray(test.x))[:, None]).argmax(1).numpy()
        assert r["test_clips"] == len(test) and r["float_acc"] == pytest.approx(float(np.mean(pred == test.y)), abs=1e-6)
    assert report["firmware"]["status"] == "skipped" and "export is disabled" in report["firmware"]["reason"]
    assert (tmp_path / "run" / "report" / "index.html").exists()
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(run_json["stages"]) == set(first.outcomes)

    second = _run(_load(tmp_path, raw))
    assert second.ran() == [], "an unchanged config must reuse every stage"

    # Determinism: the same config in a fresh store, adaptation jobs in 2 worker processes,
    # gives byte-identical artifacts (the report differs only by its build time stamps).
    from polykws.pipeline.engine import ProcessExecutor

    cfg_b = _load(tmp_path, {**raw, "artifacts": str(tmp_path / "store_b"), "output": str(tmp_path / "run_b")})
    with ProcessExecutor(2) as ex:
        par = run_pipeline(build_stages(cfg_b, progress=False), ArtifactStore(cfg_b.artifacts_uri), ex, show_progress=False)
    assert {n for n, o in par.outcomes.items() if o.manifest["pid"] != first[n].manifest["pid"]} >= {"adapt/bb/head_only/s0"}
    for name, o in par.outcomes.items():
        if name != "report":
            assert o.key == first[name].key and o.manifest["content_hash"] == first[name].manifest["content_hash"], name

    # Adaptation recipe changed: only the adaptation jobs and the report re-run.
    raw["adapt"]["fit"]["epochs"] = 3
    third = _run(_load(tmp_path, raw))
    assert sorted(third.ran()) == ["adapt/bb/head_only/s0", "adapt/cc/head_only/s0", "report"]

    # One language's task changed: its features and adaptation re-run, the other language's do not.
    raw["data"]["tasks"]["cc"]["keywords"] = ["zwei", "ein", "drei"]
    fourth = _run(_load(tmp_path, raw))
    assert sorted(fourth.ran()) == ["adapt/cc/head_only/s0", "features/cc", "report"]
    assert fourth["features/cc"].summary["labels"][:3] == ["zwei", "ein", "drei"]


def test_given_base_checkpoint_is_reused_verified_and_explained(tmp_path, corpus):
    """base.checkpoint: the file is copied in (keyed by its hash, not its path) and adapted from;
    a missing file names the command that builds it."""
    import shutil

    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    trained = _run(_load(tmp_path, raw))
    given = tmp_path / "elsewhere" / "base.pt"
    given.parent.mkdir()
    shutil.copyfile(trained["base"].path / "base.pt", given)

    raw_g = {**raw, "artifacts": str(tmp_path / "store_g"), "output": str(tmp_path / "run_g"),
             "base": {**raw["base"], "checkpoint": str(given), "build_command": "polykws train base --config x.yaml"}}
    res = _run(_load(tmp_path, raw_g))
    base = res["base"].summary
    assert base["given"] is True and base["state_sha256"] == trained["base"].summary["state_sha256"]
    assert res["adapt/bb/head_only/s0"].summary["test_clips"] > 0

    moved = tmp_path / "moved" / "base.pt"  # same file elsewhere: same key, stage reused
    moved.parent.mkdir()
    shutil.copyfile(given, moved)
    raw_m = {**raw_g, "base": {**raw_g["base"], "checkpoint": str(moved)}}
    assert "base" not in _run(_load(tmp_path, raw_m)).ran()

    raw_missing = {**raw_g, "base": {**raw_g["base"], "checkpoint": str(tmp_path / "nope.pt")}}
    with pytest.raises(ConfigError, match=r"nope\.pt does not exist; build it with: polykws train base --config x\.yaml"):
        _load(tmp_path, raw_missing)


def test_packaged_base_is_the_shipped_file(tmp_path, corpus):
    """base.checkpoint: packaged is the package's base, keyed by its verified file hash and adapted from."""
    from polykws.core.assets import shipped_base

    sb = shipped_base()
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw = {**raw, "base": {**raw["base"], "checkpoint": "packaged"}}
    del raw["data"]["frontend"]  # a config that names no frontend takes the shipped base's
    cfg = _load(tmp_path, raw)
    assert cfg.data.frontend == sb.manifest["frontend"]["kind"]
    stage = next(s for s in build_stages(cfg, progress=False) if s.name == "base")
    assert stage.runtime["checkpoint"] == str(sb.checkpoint)
    assert stage.config["checkpoint_sha256"] == sb.manifest["files"]["base.pt"]["sha256"]
    res = _run(cfg)
    assert res["base"].summary["given"] is True and res["base"].summary["state_sha256"] == sb.state_sha256
    assert res["base"].summary["labels"] == list(sb.labels)
    assert res["adapt/bb/head_only/s0"].summary["test_clips"] > 0


@pytest.mark.slow
def test_packaged_base_exports_with_its_head_slots(tmp_path, corpus):
    """The shipped base keeps its 24 head slots through the pipeline's export: the same layout and
    size as the shipped base.tflite, and every language blob names it."""
    from polykws.core.assets import shipped_base

    sb = shipped_base()
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", export=True)
    raw = {**raw, "base": {**raw["base"], "checkpoint": "packaged"}}
    raw["data"]["frontend"] = sb.manifest["frontend"]["kind"]
    res = _run(_load(tmp_path, raw))
    ex = res["export_base"].summary
    assert ex["head_slots"] == sb.head_slots == 24 and ex["tflite_bytes"] == sb.manifest["files"]["base.tflite"]["bytes"]
    manifest = json.loads((res["pack"].path / "manifest.json").read_text())
    assert {e["base_id"] for e in manifest["languages"].values()} == {manifest["base"]["sha256"][:8]}


def test_config_errors_name_the_file_and_field(tmp_path, corpus):
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw["adapt"]["fit"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"bad\.yaml: adapt\.fit.*epochs"):
        _load(tmp_path, raw, "bad.yaml")
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw["adapt"]["methods"] = ["nope"]
    raw["adapt"]["ship_method"] = "nope"
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        _load(tmp_path, raw)
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw["base"]["pool_languages"] = ["bb"]
    with pytest.raises(ConfigError, match="must not hear a target language"):
        _load(tmp_path, raw)
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw["adapt"]["typo"] = 1
    with pytest.raises(ConfigError, match=r"adapt: unknown key\(s\) \['typo'\]"):
        _load(tmp_path, raw)


def test_mining_fine_tunes_the_shipped_job_and_ships_it(tmp_path, corpus):
    """adapt.mining.rounds > 0 adds mine/<job> after the shipped adaptation: its model is what
    the report shows and export would ship; the stage reruns alone when only mining changes."""
    import torch

    from polykws.training.checkpoint import load_model

    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", methods=("swr",))
    raw["adapt"]["languages"] = ["bb"]
    raw["adapt"]["mining"] = {"rounds": 1, "negative_s_per_snr": 30.0, "min_score": 0.2, "epochs": 1}
    raw["streaming"] = {"snrs_db": [10.0, 0.0]}
    first = _run(_load(tmp_path, raw))
    mine = first["mine/bb/swr/b300/s0"]
    rounds = json.loads((mine.path / "mining.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [1]
    r = rounds[0]
    # Two SNRs of 30 s of training negatives (the streams end with room for a late detection).
    assert 60 / 3600 <= r["negative_hours"] < 70 / 3600 and r["windows_scored"] > 0
    assert 0 < r["mined"] <= r["fired"], "an undertrained fixture model fires on noise and other words"
    from polykws.pipeline.splitio import load_splits

    train = load_splits(first["features/bb"].path)["train"]
    assert r["unknown_rows"] == int((train.y == list(train.labels).index("_unknown_")).sum()) + r["mined"]
    adapted = load_model(first["adapt/bb/swr/b300/s0"].path / "model.pt").model.state_dict()
    mined = load_model(mine.path / "model.pt").model.state_dict()
    assert any(not torch.equal(adapted[k], mined[k]) for k in adapted)
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    [lang] = report["languages"]
    assert lang["float_acc"] == mine.summary["test_acc"] and lang["method"] == "swr"
    # Only the mining changed: the adaptation is reused, mining and the report rerun.
    raw["adapt"]["mining"]["epochs"] = 2
    second = _run(_load(tmp_path, raw))
    assert sorted(second.ran()) == ["mine/bb/swr/b300/s0", "report"]


@pytest.mark.slow
def test_full_pipeline_with_export_through_workers(tmp_path, corpus, capsys):
    from polykws.pipeline.engine import ProcessExecutor

    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", export=True, methods=("head_only", "bn_only"))
    raw["streaming"] = {"enabled": True, "snrs_db": [10.0], "val_negative_s_per_snr": 20.0, "test_negative_s_per_snr": 20.0,
                        "detector": {"stride_ms": 100, "average_window_ms": 200, "refractory_ms": 600},
                        "log2_temperatures": [2], "compare_margin": True, "per_keyword_thresholds": True}
    cfg = _load(tmp_path, raw)
    # A pack's blobs carry their temperature already: evaluating the pack again chooses among
    # no further ones.
    raw["streaming"]["log2_temperatures"], raw["streaming"]["compare_margin"] = [0], False
    _load(tmp_path, raw, name="fixture_pack.yaml")
    with ProcessExecutor(2) as ex:
        result = run_pipeline(build_stages(cfg, progress=False), ArtifactStore(cfg.artifacts_uri), ex, show_progress=False)
    publish(cfg, result, result.wall_s)
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    pack = result["pack"].path
    assert (pack / "flash.bin").exists() and (pack / "bb.blob").exists() and (pack / "manifest.json").exists()
    for r in report["languages"]:
        assert r["int8_acc"] is not None and r["blob_bytes"] > 0
        # int8 and float disagree on at most 2 test clips (+-1 LSB rounding flips a near tie;
        # a broken requantization flips many).
        assert abs(r["int8_acc"] - r["float_acc"]) * r["test_clips"] <= 2 + 1e-9, r
    assert report["flash"]["base_bytes"] == len((pack / "base.tflite").read_bytes())
    # Streams: each shipped blob carries the thresholds its streaming stage chose on validation
    # streams (one byte per label, _silence_/_unknown_ 255), and the report shows FRR at 1 FA/h.
    from polykws.export.blob import decode_blob

    manifest = json.loads((pack / "manifest.json").read_text())
    for r in report["languages"]:
        row = json.loads((result[f"streaming/{r['lang']}"].path / "streaming.json").read_text())
        chosen = row["thresholds"]["thresholds"]
        blob = decode_blob((pack / f"{r['lang']}.blob").read_bytes())
        assert list(blob.thresholds) == [255 if lb in ("_silence_", "_unknown_") else chosen[lb] for lb in blob.labels]
        assert manifest["languages"][r["lang"]]["thresholds"] == list(blob.thresholds)
        # Per-keyword thresholds ship; the one threshold's figures stay beside them.
        assert row["one_threshold"]["thresholds"]["labels"] == row["thresholds"]["labels"]
        assert set(row["one_threshold"]["by_snr"]) == set(row["by_snr"]) == {"10"}
        assert r["streaming"]["frr_at_1_fa_per_hour"] == (row["oracle"]["1.0"] or {}).get("frr")
        assert r["streaming"]["test_keywords"] > 0
        # The posterior is chosen with the thresholds; a temperature ships folded into the head.
        from polykws.export.blob import apply_blob
        from polykws.export.posterior import head_temperature

        k = row["posterior"]["log2_temperature"]
        # One candidate, so it ships: the pack and tflm_eval carry the tempered model.
        assert row["posterior"] == {"kind": "softmax", "log2_temperature": 2} and k == 2
        assert [c["name"] for c in row["posteriors_compared"]] == ["softmax T=4", "logit margin"]
        export_tflite = (result[row["model"].rsplit("/", 1)[0]].path / f"{r['lang']}.tflite").read_bytes()
        assert apply_blob((pack / "base.tflite").read_bytes(), (pack / f"{r['lang']}.blob").read_bytes()) == head_temperature(export_tflite, k)
    assert "FRR @1 FA/h" in (tmp_path / "run" / "report" / "report.md").read_text()
    assert (tmp_path / "run" / "report" / "streaming_det.png").exists()
    # `polykws eval --streaming` on the pack, with the same config, is the stages' evaluation:
    # the same streams, curve, thresholds and operating points.
    from polykws.cli import main as cli_main

    assert cli_main(["eval", "--streaming", "--config", str(tmp_path / "fixture_pack.yaml"), "--pack", str(pack),
                     "--out", str(tmp_path / "eval_streaming")]) == 0
    for row in json.loads((tmp_path / "eval_streaming" / "streaming.json").read_text()):
        stage_row = json.loads((result[f"streaming/{row['language']}"].path / "streaming.json").read_text())
        for key in ("det", "thresholds", "oracle", "at_val_threshold", "test_keywords", "by_snr"):
            assert row[key] == stage_row[key], (row["language"], key)
    assert len(report["sweep"]) == 4 and all(s["blob_bytes"] for s in report["sweep"])
    # `firmware bench` reads the pack's own host TFLM figure from its manifest (its "pack's TFLM
    # acc" column) and the vectors `polykws run --write-vectors` writes (README, Firmware).
    import numpy as np

    from polykws.firmware.packreader import load_bench_sets, load_pack
    from polykws.cli import main
    from polykws.pipeline.splitio import load_splits

    fp = load_pack(pack)
    # The README's command: a second run reuses every stage and writes the vectors.
    assert main(["run", "--config", str(tmp_path / "fixture.yaml"), "--executor", "serial", "--no-progress",
                 "--write-vectors", str(tmp_path / "vectors.npz")]) == 0
    assert f"test vectors: {tmp_path / 'vectors.npz'} (aa " in capsys.readouterr().out
    sets = {b.lang: b for b in load_bench_sets(tmp_path / "vectors.npz", fp, per_lang=1000)}
    base_test = load_splits(result["features/aa"].path)["test"]
    assert fp.export_accuracy["aa"] == {"int8_acc": result["export_base"].summary["int8_acc"], "test_clips": len(base_test.y)}
    for r in report["languages"]:
        test = load_splits(result[f"features/{r['lang']}"].path)["test"]
        assert fp.export_accuracy[r["lang"]] == {"int8_acc": r["int8_acc"], "test_clips": len(test.y)}
        assert np.array_equal(sets[r["lang"]].labels, test.y)


def _gsc_mswc_raw(tmp_path, gsc, mswc, store):
    raw = pipeline_config(gsc, store, tmp_path / "run")
    raw["data"].pop("root")
    raw["data"]["roots"] = [{"path": str(gsc), "layout": "gsc_v2"}, {"path": str(mswc), "layout": "mswc", "languages": ["de"]}]
    raw["data"]["tasks"] = {"en": {"keywords": ["yes", "no", "up"]}, "de": {"keywords": ["eins", "zwei", "drei"]}}
    raw["base"]["language"] = "en"
    raw["adapt"]["languages"] = ["de"]
    return raw


def _scan_and_features(tmp_path, raw):
    cfg = _load(tmp_path, raw)
    stages = [s for s in build_stages(cfg, progress=False) if s.kind in ("scan", "features")]
    return run_pipeline(stages, ArtifactStore(cfg.artifacts_uri), SerialExecutor(), show_progress=False)


@pytest.fixture(scope="module")
def gsc_mswc_runs(tmp_path_factory):
    """The GSC + MSWC fixture scanned in place and again after moving the data elsewhere."""
    import shutil

    from corpus_fixture import make_gsc_mswc

    tmp = tmp_path_factory.mktemp("gsc_mswc")
    gsc, mswc = make_gsc_mswc(tmp / "data")
    first = _scan_and_features(tmp, _gsc_mswc_raw(tmp, gsc, mswc, tmp / "store"))
    shutil.copytree(tmp / "data", tmp / "moved")
    moved = _scan_and_features(tmp, _gsc_mswc_raw(tmp, tmp / "moved" / "gsc", tmp / "moved" / "mswc", tmp / "store2"))
    return first, moved


def test_gsc_and_mswc_roots_scan_into_one_manifest(gsc_mswc_runs):
    """Two corpora (GSC v2 layout for the base, MSWC for a target) feed one run; the manifest
    holds root-relative paths, so moving the data gives the same scan artifact."""
    from polykws.datasets.manifest import read_manifest

    res, moved = gsc_mswc_runs
    rows = read_manifest(res["scan"].path / "manifest.jsonl")
    assert {(r.path.split("/")[0], r.language) for r in rows if not r.is_noise} == {("0", "en"), ("1", "de")}
    de = [r for r in rows if r.language == "de"]
    assert {r.split for r in de if r.speaker_id.endswith("spk1")} == {"test"}  # MSWC's official split kept
    en_test = {r.path for r in rows if r.language == "en" and r.split == "test"}
    assert en_test == {f"0/{w}/00000001_nohash_{k}.wav" for w in ("yes", "no", "up", "cat") for k in (0, 1)}  # GSC's list
    assert res["features/de"].summary["labels"] == ["eins", "zwei", "drei", "_silence_", "_unknown_"]
    assert res["features/en"].summary["counts"]["test"] > 0
    assert moved["scan"].manifest["content_hash"] == res["scan"].manifest["content_hash"]


def test_features_do_not_depend_on_where_the_data_lives(gsc_mswc_runs):
    res, moved = gsc_mswc_runs
    for name in ("features/en", "features/de"):
        assert moved[name].manifest["content_hash"] == res[name].manifest["content_hash"], name


def test_a_training_only_root_adds_training_clips_and_nothing_else(gsc_mswc_runs, tmp_path):
    """A third root (synthesized-corpus layout) marked train_only: every clip of it is a training
    row of its word's class, its noise is left out with a warning, and the validation and test
    features are the ones the run without it made."""
    import numpy as np
    import soundfile as sf

    from polykws.datasets.manifest import read_manifest
    from polykws.pipeline.splitio import load_splits

    first, _ = gsc_mswc_runs
    extra = tmp_path / "synth"
    rng = np.random.default_rng(3)
    for wi, word in enumerate(["eins", "zwei", "katze"]):
        for s in range(4):
            t = np.arange(12000) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (300 + 70 * wi + 11 * s) * t) * np.hanning(t.size) + 0.01 * rng.standard_normal(t.size)
            (extra / "de" / "espeak" / word).mkdir(parents=True, exist_ok=True)
            sf.write(extra / "de" / "espeak" / word / f"v{s:02d}_0.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
    (extra / "_background_noise_").mkdir()
    sf.write(extra / "_background_noise_" / "hum.wav", (0.05 * rng.standard_normal(32000)).astype(np.float32), 16000)
    from corpus_fixture import make_gsc_mswc

    gsc, mswc = make_gsc_mswc(tmp_path / "data")  # the fixture's corpora again, byte for byte (same seed)
    raw = _gsc_mswc_raw(tmp_path, gsc, mswc, tmp_path / "store")
    raw["data"]["roots"].append({"path": str(extra), "languages": ["de"], "train_only": True})
    res = _scan_and_features(tmp_path, raw)
    rows = read_manifest(res["scan"].path / "manifest.jsonl")
    mine = [r for r in rows if r.path.startswith("2/")]
    assert len(mine) == 12 and all(r.train_only and r.split == "train" and not r.is_noise for r in mine)
    assert any("root 2 is training-only: its 1 background-noise files are left out" in w for w in res["scan"].summary["warnings"])
    with_extra, without = load_splits(res["features/de"].path), load_splits(first["features/de"].path)
    for split in ("val", "test"):
        assert np.array_equal(with_extra[split].x, without[split].x) and np.array_equal(with_extra[split].y, without[split].y)
    labels = list(with_extra["train"].labels)
    gained = np.bincount(with_extra["train"].y, minlength=len(labels)) - np.bincount(without["train"].y, minlength=len(labels))
    # 4 clips each of eins and zwei; katze is no keyword and joins _unknown_ (which grows with the keywords).
    assert gained[labels.index("eins")] == gained[labels.index("zwei")] == 4 and gained[labels.index("drei")] == 0


def test_stream_evaluation_outside_the_pipeline_skips_training_only_roots(corpus, tmp_path):
    """`config_records` (polykws eval --streaming, the benches) builds streams from a config's
    corpora: a training-only root, a folder or the synthesized corpus, is not one of them."""
    import shutil

    from polykws.pipeline.streameval import config_records

    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    plain = config_records(_load(tmp_path, raw))
    extra = tmp_path / "extra"
    shutil.copytree(corpus, extra)
    raw["data"]["root"] = "@corpus"
    raw["data"]["roots"] = [{"path": str(corpus)}, {"path": str(extra), "train_only": True},
                            {"path": "@corpus", "languages": ["en"], "train_only": True}]
    raw["corpus"] = {"languages": ["en"], "speakers": 2}
    assert config_records(_load(tmp_path, raw)) == plain and plain
    # Pseudo-words (`mul`) in a recorded root are training-only rows, whichever root holds them.
    shutil.copytree(corpus / "aa", extra / "mul")
    raw["data"]["roots"] = [{"path": str(extra), "languages": ["aa", "bb", "cc", "mul"]}]
    rows = config_records(_load(tmp_path, raw))
    mul = [r for r in rows if r.language == "mul"]
    assert mul and all(r.train_only and r.split == "train" for r in mul)
    assert not any(r.train_only for r in rows if r.language != "mul")


def test_firmware_stage_records_why_it_was_skipped(tmp_path, corpus, monkeypatch):
    """Without TFLM the firmware stage is still in the graph and writes its reason (never silent)."""
    from polykws.pipeline.stages.device import firmware_stage
    from polykws.pipeline.engine import StageContext

    for var in ("TFLM_DIR", "CMSIS_NN_DIR", "FLATBUFFERS_DIR", "GEMMLOWP_DIR"):
        monkeypatch.delenv(var, raising=False)
    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run", export=True)
    raw["firmware"] = {"enabled": "auto"}
    fw = next(s for s in build_stages(_load(tmp_path, raw), progress=False) if s.name == "firmware")
    assert any("TFLM_DIR (unset)" in m for m in fw.config["missing"])
    out = tmp_path / "fw"
    out.mkdir()
    summary = firmware_stage(StageContext("firmware", "firmware", "k", fw.config, out, {}, {}))
    assert summary["status"] == "skipped" and "TFLM_DIR (unset)" in summary["reason"]
    assert json.loads((out / "firmware.json").read_text())["status"] == "skipped"
    raw["firmware"] = {"enabled": "on"}
    with pytest.raises(ConfigError, match="firmware.enabled is on but"):
        build_stages(_load(tmp_path, raw), progress=False)


def test_a_given_base_on_another_clip_length_is_refused(tmp_path, corpus):
    """The base's whole frontend must be the config's, not only its kind: the packaged base hears
    1 s clips, and a config over 1.5 s clips of the same micro frontend is refused by file name."""
    from polykws.pipeline.engine import StageFailed

    raw = pipeline_config(corpus, tmp_path / "store", tmp_path / "run")
    raw = {**raw, "base": {**raw["base"], "checkpoint": "packaged"}, "data": {**raw["data"], "frontend": "micro_1500ms"}}
    with pytest.raises(StageFailed, match=r"base\.pt: base uses frontend .*'clip_duration_ms': 1000.*'micro_1500ms' is .*'clip_duration_ms': 1500"):
        _run(_load(tmp_path, raw))
