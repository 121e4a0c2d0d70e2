"""Generated C sources (export/carray.py, firmware/gen.py) compiled by a real C compiler and read back.

Every constant the firmware uses is generated; these tests compile the generated files with the
host gcc, print what the compiler made of them and compare with Python, byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from polykws.datasets.frontend import mfcc_frontend
from polykws.export.blob import encode_blob, encode_flash_image
from polykws.export.carray import (
    Define,
    RawC,
    c_float,
    c_identifier,
    c_string,
    c_value,
    render_int_array,
    write_model_sources,
)
from polykws.firmware.gen import BenchSet, generate_app_sources
from polykws.firmware.ops import resolver_ops
from polykws.core import ConfigError, PolykwsError

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")

LABELS = ["_silence_", "_unknown_", "yes", "no", 'quote"d', "back\\slash", "так", "হ্যাঁ", "tri??graph"]


def _compile_run(tmp: Path, sources: list[Path], main: str) -> str:
    (tmp / "main.c").write_text(main)
    exe = tmp / "a.out"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(tmp), "-o", str(exe), str(tmp / "main.c"),
                    *map(str, sources)], check=True, capture_output=True, text=True)  # fmt: skip
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout


def test_scalar_literals():
    assert c_value(True) == "1" and c_value(7) == "7" and c_value(-2**31) == "(-2147483647 - 1)"
    assert c_value(2**32 - 1) == "4294967295u"
    assert c_float(0.1) == "0.1f" and c_float(np.float32(0.1)) == "0.100000001f" and c_float(16000.0) == "16000.0f"
    assert np.float32(float(c_float(0.108542055)[:-1])) == np.float32(0.108542055)
    assert c_string('a"b\\c\n?') == '"a\\"b\\\\c\\012\\077"'
    for bad in ("1abc", "int", "a-b", ""):
        with pytest.raises(ConfigError):
            c_identifier(bad)
    with pytest.raises(ConfigError):
        render_int_array("x", [128], "int8_t")
    with pytest.raises(ConfigError):
        c_float(float("nan"))
    with pytest.raises(ConfigError):
        Define("BAD NAME", 1).render()
    assert Define("OPS(X)", RawC("X(a) X(b)")).render() == "#define OPS(X) X(a) X(b)"


@needs_gcc
def test_model_sources_round_trip_through_gcc(tmp_path):
    rng = np.random.default_rng(3)
    model = bytes(rng.integers(0, 256, size=1237, dtype=np.uint8))
    fe = mfcc_frontend()
    h, c = write_model_sources(tmp_path, "kws", model, labels=LABELS, frontend=fe, arena_bytes=24576, source="test")
    first = (h.read_text(), c.read_text())
    write_model_sources(tmp_path, "kws", model, labels=LABELS, frontend=fe, arena_bytes=24576, source="test")
    assert (h.read_text(), c.read_text()) == first, "generation must be deterministic"
    out = _compile_run(tmp_path, [c], r"""
#include <stdio.h>
#include <stdint.h>
#include "kws.h"
int main(void) {
    unsigned i;
    printf("%lu %d %d %u\n", (unsigned long)kws_model_len, KWS_MODEL_BYTES, KWS_ARENA_BYTES, (unsigned)((uintptr_t)kws_model % 16));
    for (i = 0; i < kws_model_len; ++i) printf("%02x", kws_model[i]);
    printf("\n");
    for (i = 0; i < KWS_NUM_LABELS; ++i) { const unsigned char *p = (const unsigned char *)kws_labels[i]; while (*p) printf("%02x", *p++); printf("\n"); }
    printf("%s %d %.9g %.9g %s %d\n", KWS_FRONTEND_KIND, KWS_FRONTEND_NUM_FEATURES, (double)KWS_FRONTEND_WINDOW_SIZE_MS,
           (double)KWS_FRONTEND_WINDOW_STRIDE_MS, KWS_FRONTEND_CONFIG_HASH, KWS_FRONTEND_SAMPLE_RATE_HZ);
    return 0;
}
""")
    lines = out.splitlines()
    assert lines[0] == f"{len(model)} {len(model)} 24576 0"
    assert lines[1] == model.hex()
    assert [bytes.fromhex(x).decode() for x in lines[2 : 2 + len(LABELS)]] == LABELS
    assert lines[2 + len(LABELS)] == f"mfcc 10 40 20 {fe.config_hash()} 16000"


def _pack(int8_models):
    base, langs = int8_models
    blobs = [encode_blob(base, m, lang, [f"{lang}_{i}" for i in range(10)], {"lang": lang}) for lang, m in langs.items()]
    return base, encode_flash_image(base, blobs)


@needs_gcc
def test_app_sources_round_trip_through_gcc(tmp_path, int8_models):
    base, image = _pack(int8_models)
    rng = np.random.default_rng(0)
    sets = [BenchSet(lang, rng.integers(-128, 128, size=(n, 490)).astype(np.int8), rng.integers(0, 10, size=n))
            for lang, n in (("en", 5), ("lt", 3), ("uk", 0))]  # fmt: skip
    labels = [f"en_{i}" for i in range(11)]
    g = generate_app_sources(tmp_path, image, base_lang="en", base_labels=labels, bench_sets=sets, arena_bytes=4096,
                             frontend=mfcc_frontend(), source="test pack")  # fmt: skip
    assert g.languages == ("en", "lt", "uk") and g.ops == ("RESHAPE", "MEAN", "FULLY_CONNECTED")
    header = g.header.read_text()
    assert "#define PKW_OPS(X) X(Reshape) X(Mean) X(FullyConnected)" in header
    assert "#define PKW_NUM_CLASSES 12" in header and "#define PKW_INPUT_BYTES 490" in header
    assert "#define PKW_INPUT_SCALE 0.100000001f" in header and "#define PKW_INPUT_ZERO_POINT -4" in header
    out = _compile_run(tmp_path, [g.source], r"""
#include <stdio.h>
#include <stdint.h>
#include "pkw_model.h"
#define COUNT_OP(name) +1
int main(void) {
    unsigned i, s;
    printf("%lu %d %d %d %s %u\n", (unsigned long)pkw_flash_image_len, PKW_MODEL_BYTES, PKW_NUM_BENCH_SETS,
           0 PKW_OPS(COUNT_OP), PKW_BASE_LANG, (unsigned)((uintptr_t)pkw_flash_image % 16));
    for (i = 0; i < pkw_flash_image_len; ++i) printf("%02x", pkw_flash_image[i]);
    printf("\n");
    for (s = 0; s < PKW_NUM_BENCH_SETS; ++s) {
        printf("%s %lu ", pkw_bench_sets[s].lang, (unsigned long)pkw_bench_sets[s].count);
        for (i = 0; i < pkw_bench_sets[s].count * PKW_INPUT_BYTES; ++i) printf("%02x", (uint8_t)pkw_bench_sets[s].features[i]);
        printf(" ");
        for (i = 0; i < pkw_bench_sets[s].count; ++i) printf("%02x", pkw_bench_sets[s].labels[i]);
        printf("\n");
    }
    return 0;
}
""")
    lines = out.splitlines()
    assert lines[0] == f"{len(image)} {len(base)} 3 3 en 0"
    assert lines[1] == image.hex()
    for line, bs in zip(lines[2:], sets):
        lang, n, *rest = line.split(" ")
        assert (lang, int(n)) == (bs.lang, bs.count)
        feats, labs = (rest + ["", ""])[:2]
        assert feats == bs.features.astype(np.int8).tobytes().hex()
        assert labs == bytes(bs.labels.astype(np.uint8).tolist()).hex()


def test_app_sources_refuse_what_the_firmware_cannot_run(tmp_path, int8_models):
    base, image = _pack(int8_models)
    ok = dict(base_lang="en", base_labels=[f"l{i}" for i in range(12)], arena_bytes=4096, frontend=mfcc_frontend())
    rng = np.random.default_rng(1)
    with pytest.raises(PolykwsError, match="12 output slots but 13 labels"):
        generate_app_sources(tmp_path, image, bench_sets=[], **{**ok, "base_labels": [f"l{i}" for i in range(13)]})
    with pytest.raises(PolykwsError, match="no such language"):
        generate_app_sources(tmp_path, image, bench_sets=[BenchSet("fr", np.zeros((1, 490), np.int8), np.zeros(1, int))], **ok)
    with pytest.raises(PolykwsError, match="490"):
        generate_app_sources(tmp_path, image, bench_sets=[BenchSet("lt", np.zeros((1, 400), np.int8), np.zeros(1, int))], **ok)
    with pytest.raises(PolykwsError, match="lt has 10 labels"):
        generate_app_sources(tmp_path, image, bench_sets=[BenchSet("lt", rng.integers(-1, 1, (1, 490)).astype(np.int8), np.array([10]))], **ok)
    with pytest.raises(ConfigError):
        BenchSet("en", np.zeros((2, 490), np.float32), np.zeros(2, int))
    with pytest.raises(PolykwsError, match="TANH"):
        resolver_ops(["CONV_2D", "TANH"])
    # A float model is not a full-integer export.
    import importlib.resources

    sine = (importlib.resources.files("tflite_micro") / "python" / "tflite_micro" / "sine_float.tflite").read_bytes()
    with pytest.raises(PolykwsError, match="int8"):
        generate_app_sources(tmp_path, encode_flash_image(sine, []), bench_sets=[], **{**ok, "base_labels": ["a"]})
