"""The base shipped as package data: every file verified on load, the recorded facts true of the files."""

from __future__ import annotations

import json
import shutil
import tomllib
from fnmatch import fnmatch

import pytest

from polykws.core import repo_root, sha256_file
from polykws.core.assets import SHIPPED_FILES, ShippedBaseError, shipped_base, shipped_base_dir


def _copy(tmp_path):
    dst = tmp_path / "base"
    shutil.copytree(shipped_base_dir(), dst)
    return dst


def test_shipped_files_match_the_manifest():
    sb = shipped_base()
    assert sb.folder == repo_root() / "polykws" / "assets" / "base"
    for name in SHIPPED_FILES:
        path = sb.folder / name
        assert sb.manifest["files"][name] == {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    # A few hundred KB at most: every device and every install carries it.
    assert sum(p.stat().st_size for p in sb.folder.iterdir()) < 300_000


def test_the_checkpoint_is_the_manifests_model():
    from polykws.pipeline.tasks import load_language_task
    from polykws.training.checkpoint import load_base
    from polykws.training.profile import count_params_macs

    sb = shipped_base()
    base = load_base()
    assert base.sha256 == sb.state_sha256 and base.labels == sb.labels
    # The head is the English task of the real-data config, in its label order.
    en = load_language_task("configs/shared-real.yaml", "en").task
    assert list(base.labels) == [*en.keywords, "_silence_", "_unknown_"]
    assert base.meta["head_slots"] == sb.head_slots == 24
    prof = count_params_macs(base.model)
    assert (prof.total_params, prof.total_macs) == (sb.manifest["params"], sb.manifest["macs"])


def test_the_int8_base_has_the_recorded_head_slots_and_frontend():
    from polykws.export.tflite_graph import TfliteGraph

    sb = shipped_base()
    g = TfliteGraph(sb.tflite.read_bytes(), "shipped base")
    assert g.output_tensor().shape == (1, sb.head_slots) and g.output_tensor().type_name == "INT8"
    fe = sb.manifest["frontend"]
    assert g.input_tensor().shape[1:3] == (49, fe["num_features"])


@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_an_edited_file_is_refused_by_name(tmp_path, name):
    folder = _copy(tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ShippedBaseError, match=rf"{name}: SHA-256 .* does not match .* recorded in base\.json"):
        shipped_base(folder)


def test_a_missing_file_or_manifest_is_refused_by_name(tmp_path):
    folder = _copy(tmp_path)
    (folder / "base.tflite").unlink()
    with pytest.raises(ShippedBaseError, match=r"base\.tflite: missing from the shipped base"):
        shipped_base(folder)
    (folder / "base.json").unlink()
    with pytest.raises(ShippedBaseError, match=r"base\.json: the shipped base's manifest is missing"):
        shipped_base(folder)


def test_a_manifest_without_a_files_hash_is_refused(tmp_path):
    folder = _copy(tmp_path)
    m = json.loads((folder / "base.json").read_text())
    del m["files"]["base.pt"]
    (folder / "base.json").write_text(json.dumps(m))
    with pytest.raises(ShippedBaseError, match=r"base\.json: 'files' must record base\.pt"):
        shipped_base(folder)


def test_load_base_checks_the_weights_hash_too(tmp_path, monkeypatch):
    import polykws.core.assets as assets
    from polykws.training.checkpoint import load_base

    folder = _copy(tmp_path)
    m = json.loads((folder / "base.json").read_text())
    m["state_sha256"] = "0" * 64
    (folder / "base.json").write_text(json.dumps(m))
    monkeypatch.setattr(assets, "shipped_base_dir", lambda: folder)
    with pytest.raises(ShippedBaseError, match=r"base\.pt: weights .* differ from the manifest's 0000"):
        load_base()


def test_package_data_carries_every_shipped_file():
    # What `pip install` copies: pyproject's package-data patterns for polykws.assets.
    cfg = tomllib.loads((repo_root() / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = cfg["package-data"]["polykws.assets"]
    for path in shipped_base_dir().iterdir():
        rel = path.relative_to(shipped_base_dir().parent).as_posix()
        assert any(fnmatch(rel, p) for p in patterns), f"{rel} is not package data"


@pytest.mark.shared
def test_recorded_english_accuracies_are_remeasured(shared_data):
    # The manifest's (and the model card's) English figures, measured again from the shipped files
    # on the real-data config's speaker-disjoint en test split.
    import numpy as np
    import torch

    from polykws.export.evaluate import evaluate_tflm
    from polykws.pipeline.tasks import load_language_splits
    from polykws.training.checkpoint import load_base

    sb = shipped_base()
    base = load_base()
    test = load_language_splits("en", base.frontend, config=sb.manifest["config"], seed=0)["test"]
    assert tuple(test.labels) == sb.labels and len(test.y) == sb.manifest["eval"]["clips"]
    with torch.no_grad():
        pred = base.model(torch.from_numpy(np.asarray(test.x))[:, None]).argmax(1).numpy()
    assert float(np.mean(pred == test.y)) == pytest.approx(sb.manifest["eval"]["float_acc"], abs=1e-9)
    r = evaluate_tflm(sb.tflite.read_bytes(), test.x, test.y, num_labels=len(sb.labels))
    # One clip of slack for int8 alone: on a Sapphire Rapids host one more clip is wrong than on
    # the host that recorded the figure (496 against 497 of 637), while float stays exact and
    # TFLM and tf.lite BUILTIN_REF agree there. With the model file fixed by its hash and both
    # runtimes integer-only, the int8 inputs differ in their last bits between the hosts; the cause
    # is not yet found (docs/BENCHMARKS.md, "Shipped base").
    assert abs(r.accuracy - sb.manifest["eval"]["int8_tflm_acc"]) <= 1.0 / len(test.y) + 1e-9


def _card_rows() -> dict[str, str]:
    """The model card's file table: file name -> its row."""
    rows = {}
    for line in (shipped_base_dir() / "MODEL_CARD.md").read_text().splitlines():
        if line.startswith("| `"):
            rows[line.split("`")[1]] = line
    return rows


def test_the_model_card_names_every_shipped_file_by_hash():
    # Any change to a shipped file without the card fails here.
    rows = _card_rows()
    shipped = sorted(p.name for p in shipped_base_dir().iterdir() if p.name != "MODEL_CARD.md")
    assert sorted(rows) == shipped
    for name in shipped:
        path = shipped_base_dir() / name
        cells = [c.strip(" `") for c in rows[name].split("|")]
        assert sha256_file(path) in cells and f"{path.stat().st_size:,}" in cells, f"{name}: card row out of date"
    card = (shipped_base_dir() / "MODEL_CARD.md").read_text()
    assert shipped_base().state_sha256 in card


def test_the_model_card_quotes_the_manifests_figures():
    sb = shipped_base()
    card = " ".join((sb.folder / "MODEL_CARD.md").read_text().split())
    ev = sb.manifest["eval"]
    assert f"float {100 * ev['float_acc']:.1f} %, int8 (host TFLM) {100 * ev['int8_tflm_acc']:.1f} %" in card
    assert f"{ev['clips']} clips" in card
    assert f"{sb.manifest['files']['base.tflite']['bytes']:,} B" in card
    assert f"{sb.manifest['source']['int8_tflite_bytes']:,} B" in card
    assert f"{sb.manifest['params']:,} params, {sb.manifest['macs']:,} MACs" in card
    assert " ".join(sb.labels[:10]) in card


def test_the_docs_card_is_the_packaged_card():
    assert (repo_root() / "docs" / "MODEL_CARD.md").read_bytes() == (shipped_base_dir() / "MODEL_CARD.md").read_bytes()


def test_base_info_prints_the_card_and_verifies(capsys):
    from polykws.cli import main

    assert main(["base", "info", "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Model card: the polykws shipped base")
    for name in SHIPPED_FILES:
        assert f"sha256 {sha256_file(shipped_base_dir() / name)}  ok" in out


def test_base_info_refuses_a_damaged_install(tmp_path, monkeypatch, capsys):
    import polykws.core.assets as assets
    from polykws.cli import main

    folder = _copy(tmp_path)
    (folder / "base.pt").write_bytes((folder / "base.pt").read_bytes()[:-1])
    monkeypatch.setattr(assets, "shipped_base_dir", lambda: folder)
    assert main(["base", "info"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "base.pt: SHA-256" in captured.err and "--base" in captured.err


@pytest.mark.slow
@pytest.mark.shared
def test_the_recorded_build_command_rebuilds_the_shipped_files(shared_data, tmp_path):
    # The manifest's build command, run again into a scratch folder, gives the same bytes
    # (about 40 s: head fitting, two int8 exports, TFLM scoring).
    import shlex

    from polykws.cli import main

    sb = shipped_base()
    argv = shlex.split(sb.manifest["build_command"])[1:]
    source = repo_root() / argv[argv.index("--from") + 1]
    if not source.is_file():
        pytest.skip(f"{source}: the pretrained source base is not here (build it with `polykws train base --config configs/base.yaml`)")
    argv[argv.index("--from") + 1] = str(source)
    argv[argv.index("--out") + 1] = str(tmp_path)
    assert main(argv) == 0
    for name in SHIPPED_FILES:
        assert (tmp_path / name).read_bytes() == (sb.folder / name).read_bytes(), name
