"""`polykws export`, `polykws pack`, `polykws apply`.

    polykws export base.pt --features en.npz -o artifacts/export --head-slots 12
    polykws export uk.pt   --features uk.npz -o artifacts/export --lang uk [--scales auto]
    polykws pack artifacts/export --langs uk ar -o artifacts/pack
    polykws apply artifacts/pack/base.tflite artifacts/pack/uk.blob -o uk.tflite [--check uk.tflite]

`--features` is an .npz with `calibration` (N, frames, features: real training features) and
optionally `test_x` / `test_y` (real test features and label indices) for the ONNX parity check
and the float / int8 TFLM accuracy in the artifact's description.

The CLI is the composition root: it loads a model file through training/ and hands export/
the plain nn.Module, its labels and frontend config (export/ never imports training/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polykws.core import PolykwsError
from polykws.core.int8 import HEAD_WEIGHT_BITS, HEAD_WEIGHT_BITS_RANGE


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model to full-int8 TFLite (the shared base, or a language + its blob against the base)",
        description="Without --lang (or with --lang equal to the base's), quantize the shared base. With --lang, build that "
        "language's int8 model on the base's scales (layout-identical, byte-patched) and its weight-diff blob.",
    )
    p.add_argument("model", help="model file (as written by `polykws train` / `polykws adapt`)")
    p.add_argument("--features", required=True, help=".npz with `calibration` and optionally `test_x`, `test_y`")
    p.add_argument("-o", "--out", required=True, help="export folder (the base's files live here too)")
    p.add_argument("--lang", default=None, help="language code of a language export ([a-z0-9_-], up to 8)")
    p.add_argument("--base-name", default="base", help="name of the base's files in the export folder (default: base)")
    p.add_argument("--head-slots", type=int, default=None, help="base only: head rows shared by every language (>= max label count)")
    p.add_argument("--scales", choices=("frozen", "refit", "auto"), default="frozen",
                   help="language only: how touched tensors are quantized (default: frozen base scales)")
    p.add_argument("--head-scales", choices=("frozen", "refit"), default="refit")
    p.add_argument("--head-range", choices=("frozen", "refit"), default="refit")
    p.add_argument("--head-weight-bits", type=int, choices=HEAD_WEIGHT_BITS_RANGE, default=HEAD_WEIGHT_BITS,
                   metavar=f"{HEAD_WEIGHT_BITS_RANGE[0]}..{HEAD_WEIGHT_BITS_RANGE[-1]}",
                   help=f"bits of int8 the re-fitted head uses (default {HEAD_WEIGHT_BITS}; 8: the converter's own)")
    p.add_argument("--calibration-samples", type=int, default=500)
    p.set_defaults(func=export_handler)

    p = subparsers.add_parser(
        "pack",
        help="base + language blobs -> base.tflite, <lang>.blob, manifest.json, flash.bin",
        description="Collect exported models into the shipping set. Every blob is checked to rebuild its language model byte for byte.",
    )
    p.add_argument("export_dir", help="folder written by `polykws export`")
    p.add_argument("--langs", nargs="+", required=True, help="language codes to pack (in flash order)")
    p.add_argument("--base-name", default="base")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.set_defaults(func=pack_handler)

    p = subparsers.add_parser(
        "apply",
        help="base.tflite + <lang>.blob -> <lang>.tflite (byte-identical to the exported language model)",
        description="Apply a language blob to the base. Any refusal (wrong base, bad CRC, truncated, ...) is reported by "
        "name and nothing is written.",
    )
    p.add_argument("base", help="base .tflite")
    p.add_argument("blob", help="language .blob")
    p.add_argument("-o", "--out", required=True, help="output .tflite")
    p.add_argument("--check", help="a .tflite the result must equal byte for byte (e.g. the directly exported model)")
    p.set_defaults(func=apply_handler)


def apply_handler(args: argparse.Namespace) -> int:
    from polykws.core import sha256_bytes
    from polykws.export.blob import decode_blob
    from polykws.export.pack import write_applied_model

    out = write_applied_model(args.base, args.blob, args.out, check_path=args.check)
    blob_bytes = Path(args.blob).read_bytes()
    blob = decode_blob(blob_bytes)
    print(f"{args.out}: {blob.lang} ({len(blob.labels)} labels), {len(out)} bytes, sha256 {sha256_bytes(out)[:16]}..., "
          f"{len(blob.records())} records / {len(blob.stream)} stream bytes in a {len(blob_bytes)}-byte blob"
          + (", identical to " + str(args.check) if args.check else ""))
    return 0


def _load_features(path: str) -> dict:
    import numpy as np

    try:
        with np.load(path) as d:
            feats = {k: d[k] for k in d.files}
    except FileNotFoundError:
        raise PolykwsError(f"{path}: features file not found") from None
    except Exception as exc:
        raise PolykwsError(f"{path}: not a readable .npz ({exc.__class__.__name__}: {exc})") from None
    if "calibration" not in feats:
        raise PolykwsError(f"{path}: needs an array `calibration` (N, frames, features); has {sorted(feats)}")
    if ("test_x" in feats) != ("test_y" in feats):
        raise PolykwsError(f"{path}: `test_x` and `test_y` go together")
    return feats


def export_handler(args: argparse.Namespace) -> int:
    from polykws.export.api import ExportedModel, evaluate_export, export_base, export_language
    from polykws.training.checkpoint import load_model

    loaded = load_model(args.model)
    feats = _load_features(args.features)
    test_x = feats.get("test_x")
    meta = {k: v for k, v in {"model_name": getattr(loaded, "model_name", None), "model_sha256": getattr(loaded, "sha256", None),
                              "model_file": str(args.model)}.items() if v is not None}
    out = Path(args.out)
    if args.lang is None or args.lang == args.base_name:
        ex = export_base(loaded.model, loaded.frontend, loaded.labels, feats["calibration"], None, lang=args.base_name,
                         parity_x=test_x, head_slots=args.head_slots, max_calibration=args.calibration_samples, meta=meta)
    else:
        base = ExportedModel.load(out, args.base_name)
        if loaded.frontend.config_hash() != base.frontend.config_hash():
            raise PolykwsError(f"{args.model}: frontend {loaded.frontend.config_hash()} differs from the base's {base.frontend.config_hash()}")
        ex = export_language(base, loaded.model, loaded.labels, feats["calibration"], None, lang=args.lang, scales=args.scales,
                             head_scales=args.head_scales, head_range=args.head_range,
                             head_weight_bits=args.head_weight_bits, parity_x=test_x,
                             max_calibration=args.calibration_samples, meta=meta)
    if test_x is not None:
        evaluate_export(ex, loaded.model, test_x, feats["test_y"])
    ex.save(out)
    ev = ex.meta.get("eval", {})
    line = f"{out / (ex.lang + '.tflite')}: {len(ex.tflite)} bytes, ops {'/'.join(ex.describe()['ops'])}"
    if ex.blob is not None:
        line += f"; blob {len(ex.blob)} bytes ({100 * len(ex.blob) / len(ExportedModel.load(out, args.base_name).tflite):.2f}% of base)"
    if ev:
        line += f"; float {100 * ev.get('float_acc', float('nan')):.2f}%, int8 TFLM {100 * ev['int8_acc']:.2f}%, arena {ev['arena_bytes']} B"
    print(line)
    return 0


def pack_handler(args: argparse.Namespace) -> int:
    from polykws.export.api import ExportedModel
    from polykws.export.pack import pack

    base = ExportedModel.load(args.export_dir, args.base_name)
    langs = [ExportedModel.load(args.export_dir, lang) for lang in args.langs]
    result = pack(base, langs, args.out)
    m = result.manifest
    print(f"{args.out}: base {m['base']['bytes']} B + " + ", ".join(f"{k} {v['blob_bytes']} B ({v['blob_pct_of_base']:.2f}%)"
                                                                 for k, v in m["languages"].items())
          + f"; flash.bin {m['flash_image']['bytes']} B", file=sys.stdout)
    return 0
