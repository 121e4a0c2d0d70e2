"""Generate the application's model sources: the flash image, constants, op list and bench vectors.

Everything the firmware needs to know about the model comes from here, never from a hand-edited
header: `pkw_model.h` (sizes, arena, input quantization, the op resolver's op list, the base
language and its labels, the frontend configuration) and `pkw_model_data.c` (the PKWF flash image
in the `.pkw_models` section, and int8 benchmark vectors per language in `.pkw_bench`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from polykws.export.blob import decode_blob, decode_flash_image
from polykws.export.carray import (
    Define,
    RawC,
    c_identifier,
    c_string,
    frontend_defines,
    render_byte_array,
    render_header,
    render_int_array,
    render_source,
    render_string_array,
)
from polykws.export.tflite_graph import TfliteGraph
from polykws.firmware.ops import op_set, resolver_ops
from polykws.core import ConfigError, PolykwsError, atomic_write_text

HEADER_NAME = "pkw_model.h"
SOURCE_NAME = "pkw_model_data.c"


@dataclass(frozen=True)
class BenchSet:
    """N int8 feature vectors (already quantized with the model's input scale) and their labels."""

    lang: str
    features: np.ndarray  # (n, input elements) int8, row-major as the model's input tensor
    labels: np.ndarray  # (n,) class indices

    def __post_init__(self) -> None:
        if self.features.dtype != np.int8 or self.features.ndim != 2:
            raise ConfigError(f"bench set {self.lang}: features must be a 2-D int8 array, got {self.features.dtype} {self.features.shape}")
        if self.labels.shape != (self.features.shape[0],):
            raise ConfigError(f"bench set {self.lang}: {self.features.shape[0]} vectors but labels shape {self.labels.shape}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() > 255):
            raise ConfigError(f"bench set {self.lang}: label indices must be 0..255")

    @property
    def count(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class GeneratedSources:
    out_dir: Path
    header: Path
    source: Path
    ops: tuple[str, ...]  # the model's builtin ops, first-use order
    model_bytes: int
    image_sha256: str
    languages: tuple[str, ...]  # base first, then blobs in image order


def generate_app_sources(
    out_dir: str | Path,
    flash_image: bytes,
    *,
    base_lang: str,
    base_labels: Sequence[str],
    bench_sets: Sequence[BenchSet],
    arena_bytes: int,
    frontend: Mapping[str, Any] | Any,
    source: str = "",
) -> GeneratedSources:
    """Validate everything the firmware will assume, then write pkw_model.h and pkw_model_data.c."""
    img = decode_flash_image(flash_image, source=source or "flash image")
    graph = TfliteGraph(img.base, f"{source or 'flash image'} base model")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise PolykwsError(f"{source}: the firmware expects one input and one output tensor, got {len(graph.inputs)}/{len(graph.outputs)}")
    inp, out = graph.input_tensor(), graph.output_tensor()
    if inp.type_name != "INT8" or out.type_name != "INT8":
        raise PolykwsError(f"{source}: input/output must be int8 (full-integer export), got {inp.type_name}/{out.type_name}")
    if inp.scales is None or len(inp.scales) != 1 or out.scales is None or len(out.scales) != 1:
        raise PolykwsError(f"{source}: input and output need one (per-tensor) scale each")
    input_elements = int(np.prod(inp.shape))
    num_classes = int(np.prod(out.shape))  # head slots: languages use the first len(labels) of them
    opcodes = graph.opcodes()
    if not 1 <= len(base_labels) <= num_classes:
        raise PolykwsError(f"{source}: base has {num_classes} output slots but {len(base_labels)} labels")
    langs = [base_lang]
    for i, e in enumerate(img.entries):
        blob = decode_blob(img.blob_bytes(i), source=f"{source} blob {e.lang}")
        if len(blob.labels) > num_classes:
            raise PolykwsError(f"{source}: blob {e.lang} has {len(blob.labels)} labels but the model has {num_classes} output slots")
        # Layout-identical by construction: the patched model must keep the base's op list.
        patched = TfliteGraph(_apply(img, i), f"{source} {e.lang} model").opcodes()
        if patched != opcodes:
            raise PolykwsError(f"{source}: {e.lang}'s patched model has ops {patched}, base has {opcodes}")
        langs.append(e.lang)
    if len(set(langs)) != len(langs):
        raise PolykwsError(f"{source}: language {base_lang!r} appears as the base and as a blob")
    for bs in bench_sets:
        if bs.lang not in langs:
            raise PolykwsError(f"bench set for {bs.lang!r}: no such language in the image ({', '.join(langs)})")
        if bs.features.shape[1] != input_elements:
            raise PolykwsError(f"bench set {bs.lang}: vectors have {bs.features.shape[1]} values, the model input has {input_elements}")
        n_labels = len(base_labels) if bs.lang == base_lang else len(decode_blob(img.blob_bytes(langs.index(bs.lang) - 1)).labels)
        if bs.count and int(bs.labels.max()) >= n_labels:
            raise PolykwsError(f"bench set {bs.lang}: label index {int(bs.labels.max())} but {bs.lang} has {n_labels} labels")
    max_per_set = max([bs.count for bs in bench_sets] + [1])

    image_sha = hashlib.sha256(flash_image).hexdigest()
    banner = (
        f"Generated by polykws.firmware.gen from {source or 'a flash image'} (image sha256 {image_sha[:16]}); do not edit."
    )
    ops = resolver_ops(opcodes, source or "flash image")
    defines = [
        Define("PKW_MODEL_BYTES", len(img.base), "base and every language model (layout-identical)"),
        Define("PKW_ARENA_BYTES", int(arena_bytes), "TFLM tensor arena"),
        Define("PKW_INPUT_BYTES", input_elements),
        Define("PKW_INPUT_FRAMES", inp.shape[1] if len(inp.shape) > 1 else 1),
        Define("PKW_INPUT_FEATURES", inp.shape[2] if len(inp.shape) > 2 else input_elements),
        Define("PKW_INPUT_SCALE", float(inp.scales[0])),
        Define("PKW_INPUT_ZERO_POINT", int(inp.zero_points[0])),
        Define("PKW_OUTPUT_SCALE", float(out.scales[0])),
        Define("PKW_OUTPUT_ZERO_POINT", int(out.zero_points[0])),
        Define("PKW_NUM_CLASSES", num_classes, "output slots (head padded to a fixed size)"),
        Define("PKW_OPS(X)", RawC(" ".join(f"X({op})" for op in ops)), "exactly the model's ops: " + ", ".join(op_set(opcodes))),
        Define("PKW_BASE_LANG", base_lang),
        Define("PKW_BASE_NUM_LABELS", len(base_labels)),
        Define("PKW_NUM_LANGUAGES", len(langs)),
        Define("PKW_NUM_BENCH_SETS", len(bench_sets)),
        Define("PKW_BENCH_MAX_PER_SET", max_per_set),
        Define("PKW_IMAGE_SHA256", image_sha),
        Define("PKW_BASE_SHA256", img.base_sha256),
        *frontend_defines(frontend, "PKW_FRONTEND"),
    ]
    decls = [
        "typedef struct {",
        "    const char *lang;",
        "    uint32_t count;",
        "    const int8_t *features; /* count x PKW_INPUT_BYTES */",
        "    const uint8_t *labels;  /* count class indices */",
        "} pkw_bench_set;",
        "",
        "extern const uint8_t pkw_flash_image[];",
        "extern const uint32_t pkw_flash_image_len;",
        f"extern const char *const pkw_base_labels[{len(base_labels)}];",
        "extern const pkw_bench_set pkw_bench_sets[];",
        "extern const uint32_t pkw_num_bench_sets; /* == PKW_NUM_BENCH_SETS, as a variable for loops */",
    ]
    header = render_header("PKW_MODEL_H_", banner=banner, defines=defines, declarations=decls)

    defs = [
        render_byte_array("pkw_flash_image", flash_image, align=16, section=".pkw_models"),
        f"const uint32_t pkw_flash_image_len = {len(flash_image)}u;\n",
        render_string_array("pkw_base_labels", list(base_labels)),
    ]
    table = []
    for k, bs in enumerate(bench_sets):
        stem = c_identifier(f"pkw_bench_{k}")
        defs.append(render_int_array(f"{stem}_x", bs.features.reshape(-1).tolist(), "int8_t", align=16, section=".pkw_bench", per_line=20))
        defs.append(render_int_array(f"{stem}_y", bs.labels.astype(int).tolist(), "uint8_t", align=4, section=".pkw_bench"))
        table.append(f"    {{{c_string(bs.lang)}, {bs.count}u, {stem}_x, {stem}_y}},")
    defs.append("const pkw_bench_set pkw_bench_sets[] = {\n" + ("\n".join(table) or "    {0, 0u, 0, 0},") + "\n};\n")
    defs.append(f"const uint32_t pkw_num_bench_sets = {len(bench_sets)}u;\n")
    src = render_source(banner=banner, includes=[HEADER_NAME], definitions=defs)

    out_dir = Path(out_dir)
    h = atomic_write_text(out_dir / HEADER_NAME, header)
    c = atomic_write_text(out_dir / SOURCE_NAME, src)
    return GeneratedSources(out_dir, h, c, op_set(opcodes), len(img.base), image_sha, tuple(langs))


def _apply(img, index: int) -> bytes:
    from polykws.export.blob import apply_blob

    return apply_blob(img.base, img.blob_bytes(index))
