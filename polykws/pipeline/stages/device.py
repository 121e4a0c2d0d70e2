"""The firmware stage: the Cortex-M image for the pack, benched under QEMU, or the reason it is skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polykws.core import PolykwsError, atomic_write_json
from polykws.pipeline.engine import StageContext
from polykws.pipeline.stages.packing import split_vectors, write_vectors_npz


def firmware_stage(ctx: StageContext) -> dict[str, Any]:
    """Build the Cortex-M TFLM image for the pack and bench it under QEMU (when toolchain + TFLM exist).

    Otherwise the stage records that it was skipped and why; the report shows the reason.
    """
    c = ctx.config
    missing = c.get("missing") or []
    if c["mode"] == "off" or missing:
        reason = "disabled in the config (firmware.enabled: off)" if c["mode"] == "off" else "; ".join(missing)
        atomic_write_json(ctx.out / "firmware.json", {"status": "skipped", "reason": reason})
        return {"status": "skipped", "reason": reason, "headline": f"skipped: {reason}"}
    from polykws.firmware.workflow import FirmwareConfig, bench_firmware, build_firmware

    vectors, langs, not_benched = split_vectors(ctx.input("pack"), {lang: ctx.input(f"features/{lang}") for lang in c["languages"]})
    test_clips = {lang: len(vectors[f"{lang}_y"]) for lang in langs}
    npz = write_vectors_npz(Path(ctx.runtime.get("build_root") or ctx.out) / "vectors.npz", vectors)
    rows, results = [], []
    for board in c["boards"]:
        for kernels in c["kernels"]:
            fcfg = FirmwareConfig(board, kernels, per_lang=int(c["bench_samples"]),
                                  build_root=Path(ctx.runtime["build_root"]) if ctx.runtime.get("build_root") else None)
            app = build_firmware(fcfg, ctx.input("pack"), npz, langs)
            res = bench_firmware(app)
            if res.mismatches:
                raise PolykwsError(f"{board}/{kernels}: firmware output differs from the host TFLM runtime: " + "; ".join(res.mismatches[:5]))
            d = res.to_dict()
            results.append(d)
            for r in d["rows"]:
                rows.append({"board": board, "kernels": kernels, "lang": r["lang"], "accuracy": r["accuracy"], "host_accuracy": r["host_accuracy"],
                             "n": r["n"], "test_clips": test_clips.get(r["lang"]), "instructions": r["per_inference"], "unit": res.unit,
                             "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes})
    npz.unlink(missing_ok=True)
    atomic_write_json(ctx.out / "firmware.json", {"status": "measured", "rows": rows, "bench": results, "not_benched": not_benched})
    return {"status": "measured", "rows": rows, "not_benched": not_benched, "headline": f"{len(rows)} language x board rows measured under QEMU"}
