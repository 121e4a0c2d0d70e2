"""`polykws add-language`: a folder of recordings -> a language blob in a pack or flash image.

    polykws add-language --data my_recordings --lang xx --into my_pack            # <keyword>/<file> folders; pack folder (created if new)
    polykws add-language --data my_recordings --lang xx --into my_pack/flash.bin
    polykws add-language --data clips --lang xx --into flash.bin --speaker-regex '^([a-z]+)_'

Runs the data check (printed as a table; errors stop here), adapts the shipped base with SWR at
its default byte budget, exports the int8 model and its blob, and adds the blob to the pack
(base and the other languages' bytes unchanged). The work folder (--out, default
runs/add-language/<lang>) gets the model, the export, report.json and a one-page report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("add-language", help="your own recordings -> data check, SWR blob against the shipped base, pack/flash.bin")
    p.add_argument("--data", type=Path, required=True, help="folder of recordings: <data>/<keyword>/<file> as it is, "
                   "<data>/<lang>/<source>/<keyword>/<file>, GSC or MSWC")
    p.add_argument("--lang", required=True, help="language code ([a-z0-9_-], up to 8; the folder's <lang> for folder/MSWC layouts)")
    p.add_argument("--into", type=Path, required=True, help="pack folder (created if new) or a flash image (.bin)")
    p.add_argument("--keywords", help="comma-separated keywords (default: every word; other words then train _unknown_)")
    p.add_argument("--speaker-regex", help="one-group regex giving the speaker from a file name (default: inferred from the names)")
    p.add_argument("--noise-dir", type=Path, help="background-noise folder for _silence_ and mixing (default: the data's _background_noise_)")
    p.add_argument("--budget-bytes", type=int, default=None, help="SWR body-blob budget (default: SWR's)")
    p.add_argument("--epochs", type=int, default=None, help="adaptation epochs (default: TransferConfig's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the model is small, one thread is fastest "
                   "on a busy machine, and the blob's bytes then do not depend on the core count)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default runs/add-language/<lang>)")
    p.add_argument("--cache-dir", default=".cache/features", help="feature cache (default .cache/features; relative paths from the checkout)")
    p.add_argument("--replace", action="store_true", help="replace the language if the pack already holds it")
    p.add_argument("-v", "--verbose", action="store_true", help="name every flagged and skipped clip")
    p.set_defaults(func=cmd_add_language)


def cmd_add_language(args: argparse.Namespace) -> int:
    from polykws.datasets.report import print_data_check
    from polykws.pipeline.userdata import AddLanguageSpec, add_language

    spec = AddLanguageSpec(
        data=args.data, lang=args.lang, into=args.into, keywords=tuple(k.strip() for k in (args.keywords or "").split(",") if k.strip()),
        speaker_regex=args.speaker_regex, noise_dir=args.noise_dir, budget_bytes=args.budget_bytes, seed=args.seed, threads=args.threads,
        epochs=args.epochs, out=args.out, replace=args.replace, cache_dir=args.cache_dir,
    )
    r = add_language(spec, on_check=lambda check: print_data_check(check, verbose=args.verbose))
    t = r.timings_s
    print(f"{args.lang}: {len(r.labels)} labels, blob {r.blob_bytes:,} B; {r.held_out}: float {100 * r.float_acc:.1f}%, "
          f"int8 TFLM {100 * r.int8_acc:.1f}%")
    print(f"added to {r.flash_image}" + (f" (pack {r.pack_dir})" if r.pack_dir else "") + f"; report {r.out / 'report.md'}")
    print(f"time {t['total']:.1f} s (check {t['check']:.1f}, features {t['features']:.1f}, adapt {t['adapt']:.1f}, "
          f"export {t['export']:.1f}, pack {t['pack']:.1f})")
    return 0
