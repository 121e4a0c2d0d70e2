"""Pipeline config loading: YAML habits (booleans for switches) are accepted, mistakes are named
errors (unknown key, missing key, a list at the top), and each section is parsed into its layer's
own dataclass."""

from __future__ import annotations

import pytest
import yaml
from corpus_fixture import pipeline_config

from polykws.core import ConfigError, from_dict, resolve_path, shared_dir
from polykws.datasets import SpecAugmentConfig
from polykws.datasets.splits import SplitConfig
from polykws.pipeline.config import FirmwareSection, load_config
from polykws.training.adapt import TransferConfig
from polykws.training.config import FitConfig


def _write(tmp_path, raw, name="p.yaml"):
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True))
    return p


def _raw(tmp_path):
    return pipeline_config(tmp_path / "corpus", tmp_path / "store", tmp_path / "run")


@pytest.mark.parametrize("value, mode", [(False, "off"), (True, "on"), ("auto", "auto"), ("off", "off")])
def test_firmware_switch_takes_yaml_booleans(tmp_path, value, mode):
    raw = _raw(tmp_path)
    raw["firmware"] = {"enabled": value}
    assert load_config(_write(tmp_path, raw)).firmware.enabled == mode


def test_firmware_switch_still_refuses_other_values(tmp_path):
    with pytest.raises(ConfigError, match="firmware.enabled must be one of"):
        FirmwareSection(enabled="maybe")
    raw = _raw(tmp_path)
    raw["firmware"] = {"enabled": 3}
    with pytest.raises(ConfigError, match=r"p\.yaml: firmware\.enabled: expected bool or str, got 3"):
        load_config(_write(tmp_path, raw))


def test_unknown_key_fails_loudly(tmp_path):
    raw = _raw(tmp_path)
    raw["firmware"] = {"enabeld": False}
    with pytest.raises(ConfigError, match=r"p\.yaml: firmware: unknown key\(s\) \['enabeld'\]"):
        load_config(_write(tmp_path, raw))


def test_missing_required_key_is_named(tmp_path):
    raw = _raw(tmp_path)
    del raw["adapt"]
    with pytest.raises(ConfigError, match=r"p\.yaml: missing required key\(s\): adapt$"):
        load_config(_write(tmp_path, raw))
    raw = _raw(tmp_path)
    raw["data"]["roots"] = [{"layout": "folder"}]
    with pytest.raises(ConfigError, match=r"missing required key\(s\): data\.roots\[0\]\.path"):
        load_config(_write(tmp_path, raw))


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just words\n", "str")])
def test_top_level_that_is_not_a_mapping_is_named(tmp_path, text, kind):
    with pytest.raises(ConfigError, match=rf"p\.yaml: the top level must be a mapping.*got a {kind}"):
        load_config(_write(tmp_path, text))


def test_sections_are_typed_with_each_layers_dataclass(tmp_path):
    raw = _raw(tmp_path)
    raw["adapt"]["fit"]["spec_augment"] = {"enabled": True, "time_masks": 1}
    cfg = load_config(_write(tmp_path, raw))
    assert isinstance(cfg.base.fit, FitConfig) and cfg.base.fit.epochs == 2
    assert cfg.base.fit.spec_augment == SpecAugmentConfig(enabled=False)
    assert isinstance(cfg.adapt.fit, TransferConfig) and cfg.adapt.fit.probe_epochs == 3
    assert cfg.adapt.fit.spec_augment == SpecAugmentConfig(time_masks=1)
    assert isinstance(cfg.data.split, SplitConfig) and cfg.data.split.val_pct == 10.0
    raw["adapt"]["fit"]["spec_time_masks"] = 2  # the one SpecAugment schema: no flat fields
    with pytest.raises(ConfigError, match=r"adapt\.fit: unknown key\(s\) \['spec_time_masks'\]"):
        load_config(_write(tmp_path, raw))


def test_reserved_transfer_fields_are_refused(tmp_path):
    raw = _raw(tmp_path)
    raw["adapt"]["fit"]["seed"] = 3
    with pytest.raises(ConfigError, match="adapt.fit.seed: set by the pipeline"):
        load_config(_write(tmp_path, raw))


def test_one_path_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYKWS_SHARED", str(tmp_path))
    assert resolve_path("shared:data/kws") == tmp_path / "data" / "kws" == shared_dir() / "data" / "kws"
    assert resolve_path("/abs/x") .as_posix() == "/abs/x"
    assert resolve_path("configs/demo.yaml").is_file()  # relative to the checkout, not the cwd
    monkeypatch.chdir(tmp_path)
    assert resolve_path("configs/demo.yaml").is_file()


def test_from_dict_union_takes_the_first_fitting_alternative():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Switch:
        mode: bool | str = "auto"
        count: int | None = None

    assert from_dict(Switch, {"mode": False}).mode is False
    assert from_dict(Switch, {"mode": "on", "count": None}) == Switch("on", None)
    with pytest.raises(ConfigError, match=r"count: expected an integer, got 'x'"):
        from_dict(Switch, {"count": "x"})


def test_a_task_entry_carries_every_taskspec_option_with_the_same_default():
    # The YAML task entry and the datasets layer's TaskSpec must not drift apart: every TaskSpec
    # option is an entry field with TaskSpec's default, and spec() hands all of them over.
    import dataclasses

    from polykws.datasets.task import TaskSpec
    from polykws.pipeline.config import TaskConfig

    entry = {f.name: f for f in dataclasses.fields(TaskConfig)}
    for f in dataclasses.fields(TaskSpec):
        if f.name in ("language", "keywords"):
            continue
        assert f.name in entry and entry[f.name].default == f.default, f.name
    t = TaskConfig(keywords=("a", "b"), unknown=False, sources=("s",), silence_fraction=0.5)
    assert t.spec("xx") == TaskSpec("xx", ("a", "b"), unknown=False, sources=("s",), silence_fraction=0.5)
    assert t.spec("xx", ("c",)).keywords == ("c",)


def test_budgets_are_blob_bytes_by_default_and_reach_the_method_as_such(tmp_path):
    from polykws.pipeline.config import budget_kwargs
    from polykws.pipeline.run import build_stages
    from polykws.training.adapt import method_config

    raw = _raw(tmp_path)
    raw["adapt"].update(methods=["swr", "head_only"], ship_method="swr")
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.adapt.budget_unit == "bytes"
    (tmp_path / "corpus").mkdir()
    adapt = [s for s in build_stages(cfg, progress=False) if s.kind == "adapt" and s.config["method"] == "swr"]
    assert adapt and all(s.config["budget_unit"] == "bytes" for s in adapt)
    swr = method_config("swr", **budget_kwargs("bytes", 300))
    assert swr.budget_bytes == 300 and swr.budget_params is None
    assert method_config("swr", **budget_kwargs("params", 300)).budget_params == 300


def test_a_bad_budget_unit_is_named(tmp_path):
    raw = _raw(tmp_path)
    raw["adapt"]["budget_unit"] = "kilobytes"
    with pytest.raises(ConfigError, match="budget_unit"):
        load_config(_write(tmp_path, raw))


def test_head_weight_bits_reach_every_language_export_stage(tmp_path):
    from polykws.pipeline.run import build_stages

    raw = _raw(tmp_path)
    raw["export"] = {"head_weight_bits": 6}
    cfg = load_config(_write(tmp_path, raw))
    (tmp_path / "corpus").mkdir(exist_ok=True)
    exports = [s for s in build_stages(cfg, progress=False) if s.kind == "export"]
    assert exports and all(s.config["head_weight_bits"] == 6 for s in exports)
    for bad in (9, 1, True, "6"):
        raw["export"] = {"head_weight_bits": bad}
        with pytest.raises(ConfigError, match="head_weight_bits"):
            load_config(_write(tmp_path, raw))


def test_a_config_without_a_base_section_uses_the_shipped_base(tmp_path):
    raw = _raw(tmp_path)
    assert load_config(_write(tmp_path, raw)).base.checkpoint == ""  # a base section without checkpoint pretrains
    del raw["base"]
    raw["data"]["tasks"].pop("aa")  # the shipped base needs no base-language task
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.base.checkpoint == "packaged" and cfg.base.language == "en"
    cfg = load_config(_write(tmp_path, raw), {"base.checkpoint": "elsewhere.pt"}, check_files=False)
    assert cfg.base.checkpoint == "elsewhere.pt"


def test_streaming_section_is_typed_and_checked(tmp_path):
    from polykws.export.streaming import DetectorConfig

    raw = _raw(tmp_path)
    raw["export"]["enabled"] = True
    raw["streaming"] = {"enabled": True, "snrs_db": [10], "detector": {"stride_ms": 100, "average_window_ms": 300}}
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.streaming.snrs_db == (10.0,) and cfg.streaming.detector == DetectorConfig(stride_ms=100, average_window_ms=300)
    raw["export"]["enabled"] = False
    with pytest.raises(ConfigError, match="streaming.enabled needs export.enabled"):
        load_config(_write(tmp_path, raw))
    raw["export"]["enabled"] = True
    raw["streaming"]["frontend_state"] = "cold"
    with pytest.raises(ConfigError, match="frontend_state must be one of"):
        load_config(_write(tmp_path, raw))
    raw["streaming"] = {"enabled": True, "detector": {"stride_ms": 200, "average_window_ms": 500}}
    with pytest.raises(ConfigError, match="multiple of stride_ms"):
        load_config(_write(tmp_path, raw))


def test_streams_are_built_on_the_same_speaker_folds_as_the_features(tmp_path):
    """With data.speaker_folds, a language's streaming stage re-splits its rows as its features
    stage does, so test streams never hold a speaker the fold trained on."""
    from polykws.pipeline.run import build_stages

    raw = _raw(tmp_path)
    (tmp_path / "corpus").mkdir()
    raw["export"]["enabled"] = True
    raw["data"]["speaker_folds"] = {"folds": 5, "fold": 2}
    raw["streaming"] = {"enabled": True}
    stages = {s.name: s for s in build_stages(load_config(_write(tmp_path, raw)), progress=False)}
    for lang in raw["adapt"]["languages"]:
        folds = stages[f"features/{lang}"].config["speaker_folds"]
        assert folds == {"folds": 5, "fold": 2} and stages[f"streaming/{lang}"].config["speaker_folds"] == folds


def test_a_tasks_negatives_do_not_depend_on_which_languages_a_run_adapts(tmp_path):
    """A language named in a task's unknown_languages is scanned even when the run adapts only
    that task: its _unknown_ words and its streams' other-language words stay the same."""
    from polykws.pipeline.run import build_stages

    raw = _raw(tmp_path)
    for lang in ("aa", "bb", "cc"):
        (tmp_path / "corpus" / lang).mkdir(parents=True)
    raw["data"]["tasks"]["bb"]["unknown_languages"] = ["cc"]
    raw["adapt"]["languages"] = ["bb"]
    stages = {s.name: s for s in build_stages(load_config(_write(tmp_path, raw)), progress=False)}
    [root] = stages["scan"].config["roots"]
    assert root["languages"] == ["aa", "bb", "cc"] and "features/cc" not in stages
    raw["data"]["tasks"]["bb"]["unknown_languages"] = []
    [root] = {s.name: s for s in build_stages(load_config(_write(tmp_path, raw)), progress=False)}["scan"].config["roots"]
    assert root["languages"] == ["aa", "bb"]
