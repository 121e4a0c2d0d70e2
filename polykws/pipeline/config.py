"""`polykws run` configuration: one YAML file, validated into frozen dataclasses before anything runs.

Sections that belong to another layer are typed with that layer's own dataclass and parsed
once, by polykws.core.from_dict: `data.split` (datasets.SplitConfig), `base.fit`
(training.config.FitConfig), `adapt.fit` (training.adapt.TransferConfig) and `corpus`
(datasets.synth.SynthConfig). `validate_with_layers()` checks what needs a registry (models,
methods, layouts), so a typo fails at load time with the file and field named, not twenty
minutes into a run.

Paths: `shared:<rel>` resolves against polykws.core.shared_dir() (../shared next to the
checkout); `@corpus` means the folder the `corpus` stage synthesized; a relative path is
relative to the repository root; anything with `://` is an fsspec URI (artifacts only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from polykws.core import ConfigError, from_dict, merge_overrides, read_yaml_mapping
from polykws.core import resolve_path as core_resolve_path
from polykws.core.int8 import HEAD_WEIGHT_BITS, head_weight_bits_error
from polykws.datasets.augment import AugmentConfig
from polykws.datasets.task import TaskOptions, TaskSpec
from polykws.datasets.splits import SpeakerFolds, SplitConfig
from polykws.datasets.synth import SynthConfig
from polykws.export.streaming import FRONTEND_STATES, DetectorConfig
from polykws.training.adapt import TransferConfig
from polykws.training.adapt.mining import MiningConfig
from polykws.training.config import FitConfig

FIRMWARE_MODES = ("auto", "on", "off")
EXECUTORS = ("auto", "serial", "process", "ray")


@dataclass(frozen=True)
class TaskConfig(TaskOptions):
    """One language's keyword task over `<root>/<language>/<source>/<keyword>/`: the datasets
    layer's task options (`TaskOptions`, defined once) plus what the YAML entry adds."""

    keywords: tuple[str, ...] = ()  # class order; empty = every label of the language (sorted) not in unknown_words
    max_per_keyword: int = 0  # 0 = all clips

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_per_keyword < 0:
            raise ConfigError(f"max_per_keyword must be >= 0, got {self.max_per_keyword}")
        if len(set(self.keywords)) != len(self.keywords):
            raise ConfigError(f"keywords repeat: {list(self.keywords)}")
        if not self.keywords and self.unknown and not self.unknown_words:
            raise ConfigError("keywords is empty (= every word) but unknown is on: name unknown_words, or set unknown: false")

    def spec(self, language: str, keywords: tuple[str, ...] = ()) -> TaskSpec:
        """The datasets layer's TaskSpec for `language` (`keywords`, when given, replace the entry's)."""
        return TaskSpec(language, tuple(keywords or self.keywords), **self.task_options())


@dataclass(frozen=True)
class RootConfig:
    """One corpus folder and its layout (polykws.datasets sources: folder, gsc_v2, mswc, or auto-detect)."""

    path: str
    layout: str = "auto"
    languages: tuple[str, ...] = ()  # empty = every task language found there
    # GSC has no language level in its layout: the language its words are filed under.
    gsc_language: str = "en"
    # Training material only (a synthesized corpus): every clip here trains, whatever its speaker;
    # no validation, test or stream ever holds one, and speaker folds never move it.
    train_only: bool = False

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.roots[].path must be set")


@dataclass(frozen=True)
class DataSection:
    root: str = "@corpus"
    # Several corpora (e.g. GSC v2 for the English base plus MSWC for the targets); overrides `root`.
    roots: tuple[RootConfig, ...] = ()
    noise_dir: str = ""
    frontend: str = "mfcc"
    # Speaker-disjoint splits (val_pct, test_pct, mode, ...).
    split: SplitConfig = field(default_factory=SplitConfig)
    # Speaker k-fold for the transfer languages (never the base language): {folds: 5, fold: 0}.
    speaker_folds: SpeakerFolds | None = None
    tasks: Mapping[str, TaskConfig] = field(default_factory=dict)
    # Offline augmented copies of each training clip (time shift, noise) for the base language.
    base_augment_copies: int = 0
    adapt_augment_copies: int = 0
    # What an augmented copy (and a partial keyword) is: offsets, noise SNR range, speed, pitch, gain.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # micro frontend: augmented copies and _silence_ crops are computed by a frontend warmed on
    # this much of their background first, as on a device that never resets it. 0 = fresh.
    frontend_warm_ms: float = 0.0
    cache_dir: str = ".cache/features"

    def __post_init__(self) -> None:
        from polykws.datasets.frontend import FRONTENDS, frontend_by_name

        if self.frontend not in FRONTENDS:
            raise ConfigError(f"data.frontend: unknown frontend {self.frontend!r}; known: {', '.join(sorted(FRONTENDS))}")
        if self.base_augment_copies < 0 or self.adapt_augment_copies < 0:
            raise ConfigError("data.*_augment_copies must be >= 0")
        from polykws.datasets.features import warm_samples_for

        try:
            warm_samples_for(frontend_by_name(self.frontend), self.frontend_warm_ms)
        except ConfigError as exc:
            raise ConfigError(f"data.{exc}") from None
        if not self.tasks:
            raise ConfigError("data.tasks must name at least the base language's task")


@dataclass(frozen=True)
class BaseSection:
    language: str = "en"
    model: str = "ds_cnn_s"
    # Reuse a trained base instead of pretraining one: a polykws model file, or "packaged" for the
    # base shipped with the package (`polykws base info`; the default of a config without a
    # `base` section). Empty: pretrain on the base language(s) with `fit`.
    checkpoint: str = ""
    # The command that produces `checkpoint` (shown when the file is missing).
    build_command: str = ""
    # Extra languages pooled into pretraining (their train split only, never val/test speakers).
    pool_languages: tuple[str, ...] = ()
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        if not self.language:
            raise ConfigError("base.language must be set")


BUDGET_UNITS = ("bytes", "params")


def budget_kwargs(unit: str, budget: int | None) -> dict[str, int]:
    """A budgeted method's budget as `method_config` keywords (`budget_bytes` or `budget_params`)."""
    if budget is None:
        return {}
    return {"budget_bytes": int(budget)} if unit == "bytes" else {"budget_params": int(budget)}


@dataclass(frozen=True)
class AdaptSection:
    languages: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("swr",)
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Budgets of the budgeted methods, in `budget_unit`: "bytes" = the body's blob bytes (the
    # product's currency: a ~2.8 KB blob for 2000 with an 11-class 6-bit head), "params" = updated body
    # parameters.
    budgets: tuple[int, ...] = (2000,)
    budget_unit: str = "bytes"
    seeds: tuple[int, ...] = (0,)
    # The (method, budget) whose merged model ships: exported, packed into flash.bin, in the table.
    ship_method: str = "swr"
    ship_budget: int = 2000
    # The transfer recipe; its seed and num_threads come from `seeds` and `threads_per_job`.
    fit: TransferConfig = field(default_factory=TransferConfig)
    # Torch threads per adaptation job (1 keeps jobs bit-identical however they are scheduled).
    threads_per_job: int = 1
    # Hard-negative mining of the shipped job (training/adapt/mining.py): rounds of training
    # negative streams whose firing windows join _unknown_, each followed by a fine-tune.
    mining: MiningConfig = field(default_factory=MiningConfig)

    def __post_init__(self) -> None:
        if not self.languages:
            raise ConfigError("adapt.languages must list at least one language")
        if len(set(self.languages)) != len(self.languages):
            raise ConfigError(f"adapt.languages repeat: {list(self.languages)}")
        if not self.methods:
            raise ConfigError("adapt.methods must list at least one method")
        if any(b <= 0 for b in self.budgets) or not self.budgets:
            raise ConfigError(f"adapt.budgets must be positive integers, got {list(self.budgets)}")
        if self.budget_unit not in BUDGET_UNITS:
            raise ConfigError(f"adapt.budget_unit must be one of {BUDGET_UNITS}, got {self.budget_unit!r}")
        if not self.seeds:
            raise ConfigError("adapt.seeds must list at least one seed")
        if self.ship_method not in self.methods:
            raise ConfigError(f"adapt.ship_method {self.ship_method!r} is not in adapt.methods {list(self.methods)}")
        if self.ship_budget not in self.budgets:
            raise ConfigError(f"adapt.ship_budget {self.ship_budget} is not in adapt.budgets {list(self.budgets)}")
        unknown = set(self.method_options) - set(self.methods)
        if unknown:
            raise ConfigError(f"adapt.method_options names methods not in adapt.methods: {sorted(unknown)}")
        if self.threads_per_job < 1:
            raise ConfigError("adapt.threads_per_job must be >= 1")


@dataclass(frozen=True)
class ExportSection:
    enabled: bool = True
    # Representative training features for int8 calibration (per model).
    calibration_samples: int = 300
    # Export every adaptation job (int8 accuracy + blob bytes for the accuracy-vs-bytes plot),
    # not only the shipped one per language.
    all_jobs: bool = True
    # How tensors a delta touched are quantized (export.api.export_language): "frozen" base
    # scales (clamped), "refit" new per-channel scales, or "auto" per channel: the base's scale,
    # re-fitted where the weights would clamp or where the whole channel was rescaled (the
    # re-fitted scale gives back the base's int8 row; export/requant.py). docs/BENCHMARKS.md
    # (Export) measured auto/refit blobs at a third of frozen ones for per-channel deltas.
    scales: str = "auto"
    # Bits of int8 the re-fitted language head uses: its rows' values span +-(2^(bits-1)-1); 8 is
    # the converter's own quantization. The default (HEAD_WEIGHT_BITS, 6) scores as 8 bits do on
    # speaker folds and saves about 170 B per blob (docs/BENCHMARKS.md, "Blob v2").
    head_weight_bits: int = HEAD_WEIGHT_BITS

    def __post_init__(self) -> None:
        if self.calibration_samples < 1:
            raise ConfigError("export.calibration_samples must be >= 1")
        if self.scales not in ("frozen", "refit", "auto"):
            raise ConfigError(f"export.scales must be frozen, refit or auto, got {self.scales!r}")
        if (why := head_weight_bits_error(self.head_weight_bits)) is not None:
            raise ConfigError(f"export.head_weight_bits {why}")

    def language_options(self) -> dict[str, Any]:
        """How a language export stage quantizes (its stage config: part of its cache key)."""
        return {"scales": self.scales, "head_weight_bits": self.head_weight_bits}


@dataclass(frozen=True)
class FirmwareSection:
    # auto: build and bench when the arm toolchain, QEMU and TFLM_DIR are present, otherwise the
    # stage records why it was skipped. on: missing pieces are an error. off: recorded as off.
    # YAML's `true`/`false` (and on/off, yes/no, which YAML reads as booleans) mean on/off.
    enabled: bool | str = "auto"
    boards: tuple[str, ...] = ("mps2-an386",)
    kernels: tuple[str, ...] = ("cmsis-nn",)
    bench_samples: int = 50

    def __post_init__(self) -> None:
        if isinstance(self.enabled, bool):
            object.__setattr__(self, "enabled", "on" if self.enabled else "off")
        if self.enabled not in FIRMWARE_MODES:
            raise ConfigError(f"firmware.enabled must be one of {FIRMWARE_MODES}, got {self.enabled!r}")


@dataclass(frozen=True)
class StreamingSection:
    """How languages are scored on streams and how their shipped thresholds are chosen."""

    # On: every shipped language is scored on streams after export, and its blob carries the
    # thresholds chosen on validation streams (the report shows FRR at 1 FA/h beside clip accuracy).
    enabled: bool = False
    target_fa_per_hour: float = 1.0
    snrs_db: tuple[float, ...] = (20.0, 10.0, 5.0, 0.0)
    # Negative audio per SNR (unknown words, other languages' words, noise alone); 4 x 900 s is
    # an hour of negatives per language.
    test_negative_s_per_snr: float = 900.0
    val_negative_s_per_snr: float = 300.0
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    # warm: one frontend over the whole stream, as on the device; reset: a host-only measurement
    # that gives every inference the per-clip features of its second of audio.
    frontend_state: str = "warm"
    seed: int = 0
    # Softmax temperatures 2**k the thresholds may be chosen at, on the validation streams with
    # them; the chosen one ships in the blob, folded into the head (polykws.export.posterior).
    log2_temperatures: tuple[int, ...] = (0,)
    # Also score a logit-margin posterior beside them (a host-side measurement; never shipped).
    compare_margin: bool = False
    # Also score the keyword-vs-rest posterior at each temperature (host-side; never shipped).
    compare_rest: bool = False
    # One threshold per keyword (export.streaming.per_keyword_thresholds: the validation false
    # accepts the target allows, shared out over the keywords) ships instead of one for all; the
    # one threshold's figures stay in the row beside them.
    per_keyword_thresholds: bool = False

    def __post_init__(self) -> None:
        from polykws.export.posterior import MAX_LOG2_TEMPERATURE

        object.__setattr__(self, "snrs_db", tuple(float(s) for s in self.snrs_db))
        object.__setattr__(self, "log2_temperatures", tuple(int(k) for k in self.log2_temperatures))
        if not self.log2_temperatures or any(not 0 <= k <= MAX_LOG2_TEMPERATURE for k in self.log2_temperatures) \
                or len(set(self.log2_temperatures)) != len(self.log2_temperatures):
            raise ConfigError(f"streaming.log2_temperatures must be distinct integers in [0, {MAX_LOG2_TEMPERATURE}], got {self.log2_temperatures!r}")
        if not self.target_fa_per_hour > 0:
            raise ConfigError(f"streaming.target_fa_per_hour must be > 0, got {self.target_fa_per_hour!r}")
        if self.test_negative_s_per_snr < 0 or self.val_negative_s_per_snr < 0:
            raise ConfigError("streaming.*_negative_s_per_snr must be >= 0")
        if self.frontend_state not in FRONTEND_STATES:
            raise ConfigError(f"streaming.frontend_state must be one of {FRONTEND_STATES}, got {self.frontend_state!r}")

    def stream_config(self, split: str):
        from polykws.datasets.streams import StreamConfig

        neg = self.val_negative_s_per_snr if split == "val" else self.test_negative_s_per_snr
        return StreamConfig(snrs_db=self.snrs_db, negative_s_per_snr=neg, seed=self.seed)


@dataclass(frozen=True)
class ExecutorSection:
    kind: str = "auto"
    workers: int = 0  # 0 = CPU count
    ray_address: str = ""

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"executor.kind must be one of {EXECUTORS}, got {self.kind!r}")
        if self.workers < 0:
            raise ConfigError("executor.workers must be >= 0")


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    data: DataSection
    base: BaseSection
    adapt: AdaptSection
    corpus: SynthConfig | None = None  # present = synthesize the corpus
    export: ExportSection = field(default_factory=ExportSection)
    firmware: FirmwareSection = field(default_factory=FirmwareSection)
    executor: ExecutorSection = field(default_factory=ExecutorSection)
    streaming: StreamingSection = field(default_factory=StreamingSection)
    artifacts: str = "artifacts/store"
    output: str = ""  # default runs/<name>
    seed: int = 0
    title: str = ""
    notes: tuple[str, ...] = ()
    source_path: str = ""  # the YAML file (filled by load_config)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ConfigError(f"name must be a non-empty word without slashes or spaces, got {self.name!r}")
        langs = [self.base.language, *self.adapt.languages]
        missing = [lang for lang in langs if lang not in self.data.tasks]
        if missing and not self.base.checkpoint:
            raise ConfigError(f"data.tasks has no task for {missing}")
        if self.base.language in self.adapt.languages:
            raise ConfigError(f"adapt.languages includes the base language {self.base.language!r}")
        missing = [lang for lang in self.adapt.languages if lang not in self.data.tasks]
        if missing:
            raise ConfigError(f"data.tasks has no task for adapt languages {missing}")
        if self.data.roots and self.data.root != "@corpus":
            raise ConfigError("give data.root or data.roots, not both")
        if any(r.path == "@corpus" for r in self.data.roots) and self.corpus is None:
            raise ConfigError("data.roots uses @corpus but there is no corpus section to synthesize it")
        if not self.data.roots and self.data.root == "@corpus" and self.corpus is None:
            raise ConfigError("data.root is @corpus but there is no corpus section to synthesize it")
        if self.streaming.enabled and not self.export.enabled:
            raise ConfigError("streaming.enabled needs export.enabled: streams are scored on the exported int8 models")
        for lang in self.base.pool_languages:
            if lang in self.adapt.languages:
                raise ConfigError(
                    f"base.pool_languages includes target language {lang!r}: the base must not hear a target language"
                    " (pool only non-target languages)")

    @property
    def output_dir(self) -> Path:
        return resolve_path(self.output or f"runs/{self.name}")

    @property
    def artifacts_uri(self) -> str:
        return self.artifacts if "://" in self.artifacts else str(resolve_path(self.artifacts))


def resolve_path(p: str, corpus_dir: Path | None = None) -> Path:
    """polykws.core.resolve_path plus the pipeline's `@corpus` (the corpus stage's folder)."""
    if p == "@corpus" or p.startswith("@corpus/"):
        if corpus_dir is None:
            raise ConfigError(f"{p}: needs the corpus stage's output")
        return corpus_dir / p[len("@corpus"):].lstrip("/")
    return core_resolve_path(p)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None, *, check_files: bool = True) -> PipelineConfig:
    """The validated config of `path`. `check_files=False` skips what only a run needs to
    exist (the given base checkpoint), for readers that want a task or the data section."""
    path = Path(path)
    raw = read_yaml_mapping(path, "name, data, base, adapt, ...")
    if "base" not in raw:
        # A config that does not mention the base adapts from the one every device flashes; a
        # `base` section without `checkpoint` pretrains one (base.fit).
        raw = {**raw, "base": {"checkpoint": PACKAGED_BASE}}
    raw = merge_overrides({"name": path.stem, **raw, "source_path": str(path)}, overrides or {})
    data = raw.get("data")
    if isinstance(data, Mapping) and "frontend" not in data and isinstance(raw.get("base"), Mapping) \
            and raw["base"].get("checkpoint") == PACKAGED_BASE:
        # Features must be the base's: a config that names no frontend takes the shipped base's.
        from polykws.core.assets import shipped_base_frontend

        raw = {**raw, "data": {**data, "frontend": shipped_base_frontend()}}
    try:
        _check_reserved(raw)
        cfg = from_dict(PipelineConfig, raw)
        validate_with_layers(cfg)
        if check_files:
            _check_files(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg


def _check_reserved(raw: Mapping[str, Any]) -> None:
    adapt = raw.get("adapt")
    fit = adapt.get("fit") if isinstance(adapt, Mapping) else None
    for reserved in ("seed", "num_threads"):
        if isinstance(fit, Mapping) and reserved in fit:
            raise ConfigError(f"adapt.fit.{reserved}: set by the pipeline (adapt.seeds, adapt.threads_per_job)")


def validate_with_layers(cfg: PipelineConfig) -> None:
    """Check the names other layers register (models, methods, layouts) and build each task's
    TaskSpec (fail before running)."""
    from polykws.datasets.sources import SOURCES
    from polykws.training.adapt import get_method, method_config
    from polykws.training.models import list_models

    if cfg.base.model not in list_models():
        raise ConfigError(f"base.model: unknown model {cfg.base.model!r}; registered: {', '.join(list_models())}")
    for m in cfg.adapt.methods:
        try:
            spec = get_method(m)
            budget = budget_kwargs(cfg.adapt.budget_unit, cfg.adapt.budgets[0] if spec.budgeted else None)
            method_config(m, **budget, **dict(cfg.adapt.method_options.get(m, {})))
        except ConfigError as exc:
            raise ConfigError(f"adapt.methods: {exc}") from None
    for r in cfg.data.roots:
        if r.layout != "auto" and r.layout not in SOURCES:
            raise ConfigError(f"data.roots: unknown layout {r.layout!r}; known: {', '.join(SOURCES)}")
    for lang, t in cfg.data.tasks.items():
        if t.keywords:
            try:
                t.spec(lang)
            except ConfigError as exc:
                raise ConfigError(f"data.tasks.{lang}: {exc}") from None


PACKAGED_BASE = "packaged"


def base_checkpoint_path(base: BaseSection) -> Path:
    """The file `base.checkpoint` names: the shipped base (verified) for "packaged", else the path."""
    if base.checkpoint == PACKAGED_BASE:
        from polykws.core.assets import shipped_base

        return shipped_base().checkpoint
    return resolve_path(base.checkpoint)


def _check_files(cfg: PipelineConfig) -> None:
    if cfg.base.checkpoint == PACKAGED_BASE:
        base_checkpoint_path(cfg.base)  # ShippedBaseError names a missing or damaged file
        return
    if cfg.base.checkpoint and not resolve_path(cfg.base.checkpoint).is_file():
        # Say how to get one: a base is a `polykws train base` output, never downloaded.
        hint = f"; build it with: {cfg.base.build_command}" if cfg.base.build_command else ""
        raise ConfigError(f"base.checkpoint: {resolve_path(cfg.base.checkpoint)} does not exist{hint}")


def task_spec_options(t: TaskOptions) -> dict[str, Any]:
    """TaskSpec keyword arguments from a task entry."""
    return t.task_options()


def data_roots(d: DataSection) -> list[RootConfig]:
    """The corpora to scan, in order (`root` is shorthand for one auto-detected folder)."""
    return list(d.roots) if d.roots else [RootConfig(d.root)]
