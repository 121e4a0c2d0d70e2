"""`attach(model, cfg) -> DeltaModel` and the self-describing delta file.

A DeltaModel owns a deep copy of the base in which every targeted site is wrapped by its
family's delta layer. All base parameters are frozen; BatchNorm statistics stay frozen too
(they are running estimates of the *base's* activations; re-estimating them while learning
per-channel scales was measured to cancel the scales out). The language head is chosen by
`head`:

- "frozen": the base head is kept as is (a delta may target `head`, e.g. lowrank);
- "new":    a new nn.Linear(embedding, num_classes) is trained in full (a new language has
            its own labels). Its parameters are part of the language's cost (`cost().head`);
- "train":  the base head is trained in full (same labels as the base).
"""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from polykws.training.checkpoint import state_sha256
from polykws.training.deltas.base import HEAD_SITE, AttachContext, DeltaConfig, DeltaLayer, candidate_sites, match_sites
from polykws.training.deltas.grid import WEIGHT_GRIDS, Int8Grid, fold_factor
from polykws.training.deltas.registry import get_delta
from polykws.core import ConfigError, PolykwsError, atomic_write_bytes

DELTA_FORMAT = "polykws-delta"
DELTA_FORMAT_VERSION = 1
HEAD_MODES = ("frozen", "new", "train")


@dataclass(frozen=True)
class DeltaState:
    """The trainable, language-specific tensors and how many parameters they hold."""

    tensors: dict[str, torch.Tensor]
    num_params: int


@dataclass(frozen=True)
class Cost:
    """Updated parameters a language stores: `body` (deltas off the head) and `head`."""

    body: int
    head: int

    @property
    def total(self) -> int:
        return self.body + self.head


def _set_submodule(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _as_configs(cfg: DeltaConfig | Sequence[DeltaConfig]) -> tuple[DeltaConfig, ...]:
    configs = (cfg,) if isinstance(cfg, DeltaConfig) else tuple(cfg)
    for c in configs:
        if not isinstance(c, DeltaConfig):
            raise ConfigError(f"attach() takes DeltaConfig objects, got {type(c).__name__}")
    return configs


class DeltaModel(nn.Module):
    def __init__(
        self,
        base_model: nn.Module,
        configs: DeltaConfig | Sequence[DeltaConfig] = (),
        *,
        head: str = "frozen",
        num_classes: int | None = None,
        freeze_bn_stats: bool = True,
        bank_dir: str | Path | None = None,
        cache: dict | None = None,
        weight_grid: str = "float",
    ):
        super().__init__()
        if weight_grid not in WEIGHT_GRIDS:
            raise ConfigError(f"weight_grid must be one of {WEIGHT_GRIDS}, got {weight_grid!r}")
        self.weight_grid = weight_grid
        if head not in HEAD_MODES:
            raise ConfigError(f"head must be one of {HEAD_MODES}, got {head!r}")
        self.configs = _as_configs(configs)
        self.head_mode = head
        self.freeze_bn_stats = freeze_bn_stats
        self.base_sha256 = state_sha256(base_model)
        self.base_model_name = getattr(base_model, "model_name", None)
        model = copy.deepcopy(base_model)
        for p in model.parameters():
            p.requires_grad_(False)
        base_head = getattr(model, HEAD_SITE, None)
        if head != "frozen" and not isinstance(base_head, nn.Linear):
            raise ConfigError(f"head={head!r} needs a model with a Linear `{HEAD_SITE}`")
        if head == "new":
            n = int(num_classes if num_classes is not None else base_head.out_features)
            if n < 2:
                raise ConfigError(f"num_classes must be >= 2, got {n}")
            new_head = nn.Linear(base_head.in_features, n, bias=base_head.bias is not None)
            setattr(model, HEAD_SITE, new_head.to(base_head.weight.device, base_head.weight.dtype))
            if hasattr(model, "num_classes"):
                model.num_classes = n
        elif num_classes is not None and base_head is not None and num_classes != base_head.out_features:
            raise ConfigError(f"num_classes={num_classes} differs from the base head ({base_head.out_features}); use head='new'")
        if head in ("new", "train"):
            for p in getattr(model, HEAD_SITE).parameters():
                p.requires_grad_(True)
        self.num_classes = getattr(model, HEAD_SITE).out_features if base_head is not None else None

        context = AttachContext(base_model, self.base_sha256, bank_dir=None if bank_dir is None else str(bank_dir), cache=cache)
        sites = candidate_sites(model)
        self._groups: list[tuple[DeltaConfig, list[str]]] = []
        claimed: dict[str, str] = {}
        for cfg in self.configs:
            family = get_delta(cfg.family)
            names = match_sites(cfg.resolved_targets, sites)
            for name in names:
                if name in claimed:
                    raise ConfigError(f"site {name!r} is targeted by both {claimed[name]!r} and {cfg.family!r}; one delta per site")
                if name == HEAD_SITE and head != "frozen":
                    raise ConfigError(f"site {HEAD_SITE!r} is trained in full (head={head!r}); drop it from the {cfg.family!r} targets")
                claimed[name] = cfg.family
                layer = family.layer_cls(sites[name], cfg, site=name, context=context)
                _set_submodule(model, name, layer)
            self._groups.append((cfg, names))
        self.model = model
        if weight_grid == "int8":
            for name, layer in self.delta_layers().items():
                layer.set_grid(site_grid(model, name, layer.base_layer))
        self.train(False)

    # ---- structure ---------------------------------------------------------------------------
    def delta_layers(self) -> dict[str, DeltaLayer]:
        return {name: m for name, m in self.model.named_modules() if isinstance(m, DeltaLayer)}

    def groups(self) -> list[tuple[DeltaConfig, list[DeltaLayer]]]:
        layers = self.delta_layers()
        return [(cfg, [layers[n] for n in names]) for cfg, names in self._groups]

    @property
    def needs_finalize(self) -> bool:
        return any(layer.needs_finalize for layer in self.delta_layers().values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def train(self, mode: bool = True) -> "DeltaModel":
        super().train(mode)
        if self.freeze_bn_stats:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ---- parameters and cost -------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def delta_state(self) -> DeltaState:
        """Only the trainable, language-specific parameters (deltas and a trained head)."""
        tensors = {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}
        return DeltaState(tensors, sum(t.numel() for t in tensors.values()))

    def cost(self) -> Cost:
        """Parameters a language stores. A trained head counts in full; deltas at their family cost."""
        body = head = 0
        for cfg, layers in self.groups():
            on_head = [layer for layer in layers if layer.site == HEAD_SITE]
            off_head = [layer for layer in layers if layer.site != HEAD_SITE]
            layer_cls = get_delta(cfg.family).layer_cls
            if off_head:
                body += layer_cls.group_cost(off_head, cfg)
            if on_head:
                head += layer_cls.group_cost(on_head, cfg)
        if self.head_mode in ("new", "train"):
            head += sum(p.numel() for p in getattr(self.model, HEAD_SITE).parameters())
        return Cost(int(body), int(head))

    def regularization(self) -> torch.Tensor:
        terms = [layer.regularization() for layer in self.delta_layers().values()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def finalize(self) -> None:
        """End a search phase: each family finalizes its sites (diff_prune projects to k nonzeros)."""
        for cfg, layers in self.groups():
            if layers:
                get_delta(cfg.family).layer_cls.finalize_group(layers, cfg)

    # ---- merging -----------------------------------------------------------------------------
    def merge(self) -> None:
        for layer in self.delta_layers().values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in self.delta_layers().values():
            layer.unmerge()

    @torch.no_grad()
    def merge_and_unload(self) -> nn.Module:
        """A plain model of the base's class with every delta folded into its weights.

        It has the base's module names and parameter shapes (a new head has the language's
        class count), hence exactly the base's MACs. This DeltaModel is left unchanged.
        """
        plain = copy.deepcopy(self.model)
        for name, module in list(plain.named_modules()):
            if isinstance(module, DeltaLayer):
                module.merge()
                _set_submodule(plain, name, module.base_layer)
        for p in plain.parameters():
            p.requires_grad_(True)
        plain.train(False)
        return plain

    # ---- delta files ---------------------------------------------------------------------------
    def save(self, path: str | Path, *, labels: Sequence[str] | None = None, meta: dict[str, Any] | None = None) -> Path:
        """Write a self-describing delta file (atomically): configs, base SHA-256, format version,
        per-site delta tensors, the trained head and the cost."""
        if any(layer.merged for layer in self.delta_layers().values()):
            raise PolykwsError("unmerge() the DeltaModel before saving it")
        sites = {}
        for cfg_index, (cfg, names) in enumerate(self._groups):
            for name in names:
                layer = self.model.get_submodule(name)
                sites[name] = {
                    "family": cfg.family,
                    "config_index": cfg_index,
                    "state": layer.get_delta_state(),
                    "meta": layer.file_meta(),
                }
        head_state = None
        if self.head_mode in ("new", "train"):
            head_state = {k: v.detach().clone() for k, v in getattr(self.model, HEAD_SITE).state_dict().items()}
        cost = self.cost()
        payload = {
            "format": DELTA_FORMAT,
            "format_version": DELTA_FORMAT_VERSION,
            "base_sha256": self.base_sha256,
            "base_model_name": self.base_model_name,
            "head_mode": self.head_mode,
            "num_classes": self.num_classes,
            "freeze_bn_stats": self.freeze_bn_stats,
            "weight_grid": self.weight_grid,
            "configs": [cfg.to_dict() for cfg in self.configs],
            "sites": sites,
            "head_state": head_state,
            "cost": {"body": cost.body, "head": cost.head, "total": cost.total},
            "labels": list(labels) if labels is not None else None,
            "meta": dict(meta or {}),
        }
        payload["delta_sha256"] = _payload_sha(payload)
        buf = io.BytesIO()
        torch.save(payload, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path, base_model: nn.Module, *, bank_dir: str | Path | None = None) -> "DeltaModel":
        """Rebuild a DeltaModel from a delta file and the base it was trained on.

        Refuses (PolykwsError) a file for another base, an unknown format version or a file
        whose tensors do not match its recorded hash.
        """
        payload = read_delta_file(path)
        base_sha = state_sha256(base_model)
        if payload["base_sha256"] != base_sha:
            raise PolykwsError(
                f"{path}: this delta was trained on base {payload['base_sha256'][:16]}…, but the given base is "
                f"{base_sha[:16]}… (load it with the base model it was made for)"
            )
        configs = [DeltaConfig.from_dict(d) for d in payload["configs"]]
        dm = cls(
            base_model,
            configs,
            head=payload["head_mode"],
            num_classes=payload["num_classes"],
            freeze_bn_stats=payload["freeze_bn_stats"],
            bank_dir=bank_dir,
            weight_grid=payload.get("weight_grid", "float"),
        )
        layers = dm.delta_layers()
        if set(layers) != set(payload["sites"]):
            raise PolykwsError(f"{path}: sites {sorted(payload['sites'])} do not match the attached sites {sorted(layers)}")
        for name, record in payload["sites"].items():
            layer = layers[name]
            if layer.family != record["family"]:
                raise PolykwsError(f"{path}: site {name!r} is {record['family']!r} in the file but {layer.family!r} here")
            layer.check_file_meta(record["meta"], str(path))
            try:
                layer.set_delta_state(record["state"])
            except ConfigError as exc:
                raise PolykwsError(f"{path}: {exc}") from None
        if payload["head_state"] is not None:
            getattr(dm.model, HEAD_SITE).load_state_dict(payload["head_state"])
        return dm


def site_grid(model: nn.Module, site: str, base_layer: nn.Module) -> Int8Grid | None:
    """The base's int8 grid for a body site. The head has none: the exporter re-fits its scales."""
    if site == HEAD_SITE:
        return None
    return Int8Grid(base_layer.weight, fold_factor(model, site))


def _payload_sha(payload: dict) -> str:
    """SHA-256 over the file's tensors and configs (in a fixed order), to detect corruption."""
    h = hashlib.sha256()
    h.update(repr(payload["configs"]).encode())
    h.update(payload["base_sha256"].encode())
    for name in sorted(payload["sites"]):
        for key, t in sorted(payload["sites"][name]["state"].items()):
            h.update(f"{name}.{key}".encode())
            h.update(t.detach().contiguous().numpy().tobytes())
    for key, t in sorted((payload["head_state"] or {}).items()):
        h.update(f"head.{key}".encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_delta_file(path: str | Path) -> dict:
    """Parse and integrity-check a delta file (no base needed); errors name the file."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PolykwsError(f"{path}: delta file not found") from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise PolykwsError(f"{path}: not a readable delta file ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != DELTA_FORMAT:
        raise PolykwsError(f"{path}: not a polykws delta file")
    if payload.get("format_version") != DELTA_FORMAT_VERSION:
        raise PolykwsError(
            f"{path}: delta format version {payload.get('format_version')!r} is not supported (want {DELTA_FORMAT_VERSION})"
        )
    if _payload_sha(payload) != payload.get("delta_sha256"):
        raise PolykwsError(f"{path}: delta tensors do not match their recorded SHA-256 (file corrupt?)")
    return payload


def attach(
    model: nn.Module,
    cfg: DeltaConfig | Sequence[DeltaConfig] = (),
    *,
    head: str = "frozen",
    num_classes: int | None = None,
    freeze_bn_stats: bool = True,
    bank_dir: str | Path | None = None,
    weight_grid: str = "float",
) -> DeltaModel:
    """Wrap the sites `cfg` targets with their delta layers (on a copy; `model` is untouched).
    `weight_grid="int8"` trains every body delta on the base's frozen int8 grid (deltas/grid.py)."""
    return DeltaModel(model, cfg, head=head, num_classes=num_classes, freeze_bn_stats=freeze_bn_stats, bank_dir=bank_dir,
                      weight_grid=weight_grid)


def load_delta(path: str | Path, base_model: nn.Module, *, bank_dir: str | Path | None = None) -> DeltaModel:
    return DeltaModel.load(path, base_model, bank_dir=bank_dir)


def iter_site_costs(model: nn.Module, configs: Iterable[DeltaConfig]) -> dict[str, dict[str, int]]:
    """{site: {family: cost}} for the given configs on `model` (without attaching anything)."""
    sites = candidate_sites(model)
    out: dict[str, dict[str, int]] = {name: {} for name in sites}
    for cfg in configs:
        layer_cls = get_delta(cfg.family).layer_cls
        for name, module in sites.items():
            if layer_cls.supports(module, cfg):
                out[name][cfg.family] = layer_cls.cost(module, cfg)
    return out
