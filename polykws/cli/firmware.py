"""`polykws firmware build|run|bench|flash|selftest|sdk`: thin CLI handlers over polykws.firmware."""

from __future__ import annotations

import argparse
from pathlib import Path

KERNEL_CHOICES = ("cmsis-nn", "reference")


def _board_names() -> list[str]:
    from polykws.firmware.boards import list_boards

    return [b.name for b in list_boards()]


def _add_build_args(p: argparse.ArgumentParser, need_pack: bool = True) -> None:
    p.add_argument("--board", required=True, choices=_board_names())
    p.add_argument("--kernels", default="cmsis-nn", choices=KERNEL_CHOICES)
    p.add_argument("--pack", type=Path, required=need_pack, help="pack directory from `polykws pack` (flash.bin, manifest.json)")
    p.add_argument("--features", type=Path, help="test vectors: .npz with <lang>_x (features) and <lang>_y (class indices)")
    p.add_argument("--per-lang", type=int, default=100, help="benchmark vectors embedded per language (default 100)")
    p.add_argument("--langs", help="comma-separated languages to benchmark (default: every pack language with vectors)")
    p.add_argument("--arena-bytes", type=int, help="tensor arena size (default: host-measured + 25%%)")
    p.add_argument("--build-dir", type=Path, help="build output root (default firmware/build, or $POLYKWS_FIRMWARE_BUILD)")
    p.add_argument("--profile", action="store_true", help="also report per-op counts of each language's first inference")
    p.add_argument("--timeout-s", type=float, default=3600.0,
                   help="QEMU run limit (reference kernels run ~200M instructions per inference)")


def _config(args):
    from polykws.firmware.workflow import FirmwareConfig

    return FirmwareConfig(args.board, args.kernels, args.per_lang, args.arena_bytes, args.build_dir, args.profile)


def _build(args):
    from polykws.firmware.workflow import build_firmware

    langs = [x.strip() for x in args.langs.split(",")] if args.langs else None
    return build_firmware(_config(args), args.pack, args.features, langs)


def cmd_build(args) -> int:
    app = _build(args)
    print(f"built {app.elf}")
    print(f"  {app.memory.summary()}")
    print(f"  text {app.size.text} B (model image {app.size.models} B), data {app.size.data} B, bss {app.size.bss} B, "
          f"arena {app.arena_bytes} B, test vectors {app.size.bench} B")
    print(f"  languages: {', '.join(app.sources.languages)}; ops: {', '.join(app.sources.ops)}")
    return 0


def cmd_run(args) -> int:
    from polykws.firmware.workflow import run_firmware

    app = _build(args)
    text, _ = run_firmware(app, args.timeout_s)
    print(text, end="")
    return 0


def cmd_bench(args) -> int:
    from polykws.firmware.workflow import bench_firmware
    from polykws.core import atomic_write_json

    app = _build(args)
    result = bench_firmware(app, args.timeout_s)
    mean = " (MEAN: bit-exact fast path)" if result.mean_kernel == "fast" and "MEAN" in app.sources.ops else ""
    print(f"{result.board} / {result.kernels}{mean}: {result.unit} per inference (QEMU -icount shift=0), accuracy vs host TFLM")
    print(result.table())
    print(
        f"flash {result.flash_bytes} B (text {result.text_bytes}, model image {result.model_image_bytes}; "
        f"+{result.bench_vector_bytes} B of test vectors), "
        f"RAM {result.ram_bytes} B (arena {result.arena_bytes}, bss {result.bss_bytes}); image check at boot "
        f"{result.image_verify_cost:,.0f} {result.unit}"
    )
    for lang, ops in result.profile.items():
        total = sum(u for _, u in ops) or 1.0
        print(f"per-op {result.unit}, {lang}, first inference: " + ", ".join(f"{op} {u:,.0f} ({100 * u / total:.1f}%)" for op, u in ops))
    if args.json:
        atomic_write_json(args.json, result.to_dict())
    if result.mismatches:
        print("MISMATCH with the host TFLM runtime:\n  " + "\n  ".join(result.mismatches))
        return 1
    return 0


def cmd_flash(args) -> int:
    from polykws.firmware.flash import check_memory, flash_elf

    elf = args.elf or _build(args).elf
    if args.dry_run:
        check = check_memory(elf, args.board)
        print(check.summary())
        for p in check.problems:
            print(f"  {p}")
        return 0 if check.ok else 1
    check = flash_elf(elf, args.board, probe=args.probe)
    print(f"flashed {elf}: {check.summary()}")
    return 0


def cmd_selftest(args) -> int:
    """Blob parser vs Python on the host and under QEMU, plus the board self-test."""
    import subprocess
    import tempfile

    from polykws.firmware import build as fw_build
    from polykws.firmware.boards import get_board
    from polykws.firmware.qemu import run_elf
    from polykws.firmware.vectors import COMMAND_FILE, check_runner_output, write_vectors
    from polykws.core import PolykwsError

    board = get_board(args.board)
    with tempfile.TemporaryDirectory(prefix="pkw_selftest_") as tmp:
        vec = Path(tmp) / "vectors"
        expect = write_vectors(vec)
        root = Path(tmp) / "build"
        if board.qemu_machine:
            elf = fw_build.build_blob_runner(board.name, root)
            out = run_elf(elf, board.name, cwd=vec).stdout
        else:
            runner = fw_build.build_host_blob_runner(root, sanitize=fw_build.host_sanitizers_available())
            out = subprocess.run([str(runner), COMMAND_FILE], cwd=vec, capture_output=True, text=True).stdout
        problems = check_runner_output(expect, out, vec)
        where = board.name if board.qemu_machine else "host"
        if problems:
            raise PolykwsError(f"blob.c disagrees with polykws.export.blob on {where}:\n  " + "\n  ".join(problems[:20]))
        print(f"blob.c == polykws.export.blob on {len(expect)} vectors ({where})")
        fw_build.run_make("selftest", board.name, build_root=root, nice=False)
        if board.qemu_machine:
            print(run_elf(root / board.name / "selftest.elf", board.name).stdout, end="")
        else:
            print(f"built {root / board.name / 'selftest.elf'} (flash it to see its UART output)")
    return 0


def cmd_sdk(args) -> int:
    from polykws.export.streaming import DetectorConfig
    from polykws.firmware.build import ThirdParty
    from polykws.firmware.frontendcheck import FrontendSources
    from polykws.firmware.sdk import sdk_from_pack

    detector = DetectorConfig()
    if args.config:
        from polykws.pipeline.config import load_config

        detector = load_config(args.config, check_files=False).streaming.detector
    out = sdk_from_pack(args.pack, args.out, args.board, args.kernels, args.lang, detector,
                        ThirdParty.from_env(args.kernels), FrontendSources.from_env(), args.build_dir, args.step_graphs)
    print(f"wrote {out} (find_package(polykws): CMAKE_PREFIX_PATH={out}; example: firmware/examples/listen)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("firmware", help="Cortex-M TFLM firmware: build, run under QEMU, benchmark, flash")
    sub = p.add_subparsers(dest="firmware_command", required=True, metavar="ACTION")

    b = sub.add_parser("build", help="generate model sources from a pack and build the ELF")
    _add_build_args(b)
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="build and run under QEMU, printing the firmware's output")
    _add_build_args(r)
    r.set_defaults(func=cmd_run)

    be = sub.add_parser("bench", help="accuracy (== host TFLM) and instructions per inference under QEMU")
    _add_build_args(be)
    be.add_argument("--json", type=Path, help="also write the result as JSON")
    be.set_defaults(func=cmd_bench)

    f = sub.add_parser("flash", help="check the memory map, then program a real board with pyOCD")
    _add_build_args(f, need_pack=False)
    f.add_argument("--elf", type=Path, help="flash this ELF instead of building one from --pack")
    f.add_argument("--probe", help="debug probe unique id (default: the only one connected)")
    f.add_argument("--dry-run", action="store_true", help="only check the memory map")
    f.set_defaults(func=cmd_flash)

    s = sub.add_parser("selftest", help="blob.c vs Python (host or QEMU) and the board self-test")
    s.add_argument("--board", required=True, choices=_board_names())
    s.set_defaults(func=cmd_selftest)

    k = sub.add_parser("sdk", help="the runtime as a CMake package for one pack and board (polykws.h, libpolykws.a)")
    k.add_argument("--pack", type=Path, required=True, help="pack directory from `polykws pack` (flash.bin, manifest.json)")
    k.add_argument("--board", required=True, choices=_board_names(), help="the CPU to compile for (and the board support shipped)")
    k.add_argument("--kernels", default="cmsis-nn", choices=KERNEL_CHOICES)
    k.add_argument("--lang", help="the language the example listens in (default: the pack's first blob language)")
    k.add_argument("--config", type=Path, help="run config whose streaming.detector sets the detection plan (default: the built-in)")
    k.add_argument("--step-graphs", action="store_true",
                   help="run the base's linked step and head graphs, each model frame once (a base without time padding)")
    k.add_argument("--out", type=Path, required=True, help="package folder to write")
    k.add_argument("--build-dir", type=Path, help="build output root (default firmware/build, or $POLYKWS_FIRMWARE_BUILD)")
    k.set_defaults(func=cmd_sdk)
