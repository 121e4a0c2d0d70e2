"""RECAST template banks: fitted once per base ("neural mimicry"), shared by every language.

Mimicry objective (Tasnim & Plummer 2025, Sec. 3.2): choose templates T (K per weight shape)
and base coefficients α⁰ so that every row block B_{l,g} of every same-shaped base layer l is
reproduced, minimising Σ ‖B_{l,g} − Σₖ α⁰_{l,g,k} Tₖ‖². The paper fits this by gradient
descent; for this purely weight-space objective the global optimum is known in closed form
(Eckart–Young): the top-K right singular vectors of the stacked blocks. We therefore solve it
with one SVD in float64, which is exact, deterministic and takes milliseconds. Where K exceeds
the blocks' rank, the bank is completed with further orthonormal directions (deterministic
Gram–Schmidt on the standard basis), so every template is a usable delta direction.

Each template is rescaled so its entries have the RMS of the base blocks: one unit of α then
moves the weights by about one base-weight magnitude, which keeps the coefficients' learning
rate in the same range as the `scale` family's.

Where a bank lives: it is a base-level artifact like the base weights (never per language).
It is a pure function of (base weights, groups, num_templates), cached in memory per process
and, given `bank_dir`, in a file `recast-<base sha[:16]>-g<G>-k<K>.pt` next to the base. Delta
files record the bank's SHA-256 and refuse to load against a different bank.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from polykws.training.deltas.base import candidate_sites
from polykws.core import PolykwsError, atomic_write_bytes

BANK_FORMAT_VERSION = 1
_MEMORY: dict[tuple[str, int, int], "TemplateBank"] = {}


def shape_key(weight_shape) -> str:
    return "x".join(str(int(s)) for s in weight_shape)


@dataclass(frozen=True)
class TemplateBank:
    base_sha256: str
    groups: int
    num_templates: int
    templates: dict[str, torch.Tensor]  # shape key -> (K_eff, block numel), float32
    residual: dict[str, float]  # relative Frobenius error of the mimicry fit per shape
    sha256: str

    def to_payload(self) -> dict:
        return {
            "format": "polykws-recast-bank",
            "format_version": BANK_FORMAT_VERSION,
            "base_sha256": self.base_sha256,
            "groups": self.groups,
            "num_templates": self.num_templates,
            "templates": self.templates,
            "residual": self.residual,
            "sha256": self.sha256,
        }


def _bank_sha(base_sha: str, groups: int, k: int, templates: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(f"{base_sha}:{groups}:{k}".encode())
    for key in sorted(templates):
        h.update(key.encode())
        h.update(templates[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _complete_basis(vh: torch.Tensor, k: int) -> torch.Tensor:
    """Extend orthonormal rows `vh` (r, d) to k rows by Gram–Schmidt over e_0, e_1, …"""
    rows = [r for r in vh]
    d = vh.shape[1]
    for i in range(d):
        if len(rows) >= k:
            break
        v = torch.zeros(d, dtype=vh.dtype)
        v[i] = 1.0
        for _ in range(2):  # twice for numerical orthogonality
            for r in rows:
                v = v - (v @ r) * r
        n = v.norm()
        if n > 1e-6:
            rows.append(v / n)
    return torch.stack(rows[:k])


@torch.no_grad()
def fit_bank(base_model: nn.Module, base_sha256: str, groups: int, num_templates: int) -> TemplateBank:
    by_shape: dict[str, list[torch.Tensor]] = {}
    for module in candidate_sites(base_model).values():
        w = module.weight.detach()
        if w.shape[0] % groups:
            continue
        by_shape.setdefault(shape_key(w.shape), []).append(w.to(torch.float64).reshape(groups, -1))
    templates: dict[str, torch.Tensor] = {}
    residual: dict[str, float] = {}
    for key in sorted(by_shape):
        blocks = torch.cat(by_shape[key])  # (layers·groups, d)
        d = blocks.shape[1]
        k = min(num_templates, d)
        _, s, vh = torch.linalg.svd(blocks, full_matrices=False)
        # Keep only directions the base actually uses; the rest come from the completion.
        rank = int((s > s.max() * 1e-10).sum()) if s.numel() else 0
        vh = vh[: min(k, rank)]
        # Sign convention: the largest-magnitude entry of each template is positive.
        signs = torch.sign(vh.gather(1, vh.abs().argmax(dim=1, keepdim=True)))
        vh = vh * torch.where(signs == 0, torch.ones_like(signs), signs)
        if vh.shape[0] < k:
            vh = _complete_basis(vh, k)
        recon = (blocks @ vh.T) @ vh
        residual[key] = float((blocks - recon).norm() / blocks.norm().clamp_min(1e-30))
        rms = blocks.pow(2).mean().sqrt().clamp_min(1e-12)
        templates[key] = (vh * rms * d**0.5).to(torch.float32).contiguous()
    sha = _bank_sha(base_sha256, groups, num_templates, templates)
    return TemplateBank(base_sha256, groups, num_templates, templates, residual, sha)


def bank_path(bank_dir: str | Path, base_sha256: str, groups: int, num_templates: int) -> Path:
    return Path(bank_dir) / f"recast-{base_sha256[:16]}-g{groups}-k{num_templates}.pt"


def save_bank(bank: TemplateBank, path: str | Path) -> Path:
    buf = io.BytesIO()
    torch.save(bank.to_payload(), buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_bank(path: str | Path) -> TemplateBank:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PolykwsError(f"{path}: template bank not found") from None
    except Exception as exc:
        raise PolykwsError(f"{path}: not a readable template bank ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != "polykws-recast-bank":
        raise PolykwsError(f"{path}: not a polykws recast template bank")
    if payload.get("format_version") != BANK_FORMAT_VERSION:
        raise PolykwsError(f"{path}: bank format version {payload.get('format_version')} is not supported (want {BANK_FORMAT_VERSION})")
    sha = _bank_sha(payload["base_sha256"], payload["groups"], payload["num_templates"], payload["templates"])
    if sha != payload["sha256"]:
        raise PolykwsError(f"{path}: template bank does not match its recorded SHA-256 (file corrupt?)")
    return TemplateBank(
        payload["base_sha256"], payload["groups"], payload["num_templates"], payload["templates"], payload["residual"], sha
    )


def get_bank(base_model: nn.Module, base_sha256: str, groups: int, num_templates: int, *, bank_dir: str | Path | None = None) -> TemplateBank:
    """The bank for this base and config: memory cache, else `bank_dir` file, else fit (and save)."""
    key = (base_sha256, groups, num_templates)
    if key in _MEMORY:
        return _MEMORY[key]
    path = bank_path(bank_dir, base_sha256, groups, num_templates) if bank_dir is not None else None
    if path is not None and path.exists():
        bank = load_bank(path)
        if (bank.base_sha256, bank.groups, bank.num_templates) != key:
            raise PolykwsError(
                f"{path}: bank was fitted for base {bank.base_sha256[:12]} g{bank.groups} k{bank.num_templates}, "
                f"not base {base_sha256[:12]} g{groups} k{num_templates}"
            )
    else:
        bank = fit_bank(base_model, base_sha256, groups, num_templates)
        if path is not None:
            save_bank(bank, path)
    _MEMORY[key] = bank
    return bank
