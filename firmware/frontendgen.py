"""Generate the on-device micro frontend's constant tables (pkw_frontend_tables.h/.c).

The micro frontend derives its window, filterbank, PCAN gain curve and FFT twiddles in floating
point when it starts. A Cortex-M4 rounds some of them differently from the host that computed
the training features (docs/BENCHMARKS.md, "On-device frontend"), so the firmware never runs that
code: a host tool (firmware/tools/frontend_state_dump.cc, compiled from TFLM_DIR like the rest of
the firmware) populates the state exactly as pymicro-features does, and this module writes every
table as a C constant. The quantizer from frontend values to the model's int8 input is a table
too, made by the host's own `quantize_activations`, so no float division runs on the device.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polykws.core import ConfigError, PolykwsError, atomic_write_text
from polykws.datasets.frontend import FrontendConfig
from polykws.export.carray import Define, render_header, render_int_array, render_source
from polykws.export.quantize import quantize_activations

HEADER_NAME = "pkw_frontend_tables.h"
SOURCE_NAME = "pkw_frontend_tables.c"
# The order frontend_state_dump takes its arguments in (MICRO_FRONTEND_PARAMS' names).
DUMP_ARGS = (
    "window_size_ms", "window_step_ms", "num_channels", "lower_band_limit_hz", "upper_band_limit_hz",
    "noise_reduction_smoothing_bits", "noise_reduction_even_smoothing", "noise_reduction_odd_smoothing",
    "noise_reduction_min_signal_remaining", "pcan_enable", "pcan_strength", "pcan_offset", "pcan_gain_bits",
    "log_scale_enable", "log_scale_shift", "sample_rate_hz",
)  # fmt: skip
KISS_MAXFACTORS = 32  # kissfft v130's MAXFACTORS (_kiss_fft_guts.h)


@dataclass(frozen=True)
class InputQuant:
    """The model's int8 input quantization: real = (q - zero_point) * scale."""

    scale: float
    zero_point: int

    @classmethod
    def pinned(cls, value_range: tuple[float, float]) -> "InputQuant":
        """What the converter makes of an input calibrated to exactly `value_range` (the exporter
        pins the micro frontend's input to [0, 26]): 256 levels over the range, zero point from lo."""
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ConfigError(f"value range must be increasing, got {value_range}")
        scale = (hi - lo) / 255.0
        return cls(scale, int(max(-128, min(127, round(-128 - lo / scale)))))


def frontend_state(dump_tool: Path, frontend: FrontendConfig) -> dict[str, Any]:
    """Run the host tool for `frontend` and return its JSON (every table of the populated state)."""
    params = frontend.micro_params
    args = [str(dump_tool)] + [str(params[k]) for k in DUMP_ARGS]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PolykwsError(f"{dump_tool.name} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    try:
        state = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise PolykwsError(f"{dump_tool.name} wrote no valid JSON: {exc}") from None
    if state["fb_num_channels"] != frontend.num_features or state["window_step"] != frontend.stride_samples:
        raise PolykwsError(f"{dump_tool.name}: the state does not match the frontend config ({state['fb_num_channels']} channels, "
                           f"step {state['window_step']} samples; config {frontend.num_features}, {frontend.stride_samples})")
    if len(state["kiss_factors"]) != 2 * KISS_MAXFACTORS:
        raise PolykwsError(f"{dump_tool.name}: kissfft has {len(state['kiss_factors']) // 2} factor slots, the firmware mirrors {KISS_MAXFACTORS}")
    return state


def quantizer_table(frontend: FrontendConfig, quant: InputQuant) -> np.ndarray:
    """int8 model input for every raw frontend value up to the first one the value range clips;
    larger values quantize like the last entry. Made by the host's own quantizer."""
    scale = np.float32(frontend.micro_params["output_scale"])
    lo, hi = frontend.value_range
    values = np.arange(0, 1 << 16, dtype=np.float32) * scale
    last = int(np.argmax(values >= np.float32(hi)))  # the first raw value the clip reaches
    if values[last] < hi:
        raise ConfigError(f"frontend values never reach the range's top {hi}")
    return quantize_activations(np.clip(values[: last + 1], lo, hi), quant.scale, quant.zero_point)


def write_frontend_sources(out_dir: str | Path, frontend: FrontendConfig, quant: InputQuant, state: dict[str, Any]) -> tuple[Path, Path]:
    """pkw_frontend_tables.h (sizes and scalars) and .c (the tables), atomically."""
    if frontend.kind != "micro":
        raise ConfigError(f"the on-device frontend is TFLM's micro frontend; this config's frontend is {frontend.kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lut = quantizer_table(frontend, quant)
    defines = [
        Define("PKW_FE_NUM_CHANNELS", frontend.num_features),
        Define("PKW_FE_STEP_SAMPLES", state["window_step"], "samples per frame step"),
        Define("PKW_FE_WINDOW_SAMPLES", state["window_size"]),
        Define("PKW_FE_FRAME_DECIMATION", frontend.frame_decimation, "the model keeps every k-th frame, the first included"),
        Define("PKW_FE_FFT_SIZE", state["fft_size"]),
        Define("PKW_FE_FFT_INPUT_SIZE", state["fft_input_size"]),
        Define("PKW_FE_KISS_NFFT", state["kiss_nfft"]),
        Define("PKW_FE_KISS_MAXFACTORS", KISS_MAXFACTORS),
        Define("PKW_FE_FB_START_INDEX", state["fb_start_index"]),
        Define("PKW_FE_FB_END_INDEX", state["fb_end_index"]),
        Define("PKW_FE_NR_SMOOTHING_BITS", state["nr_smoothing_bits"]),
        Define("PKW_FE_NR_EVEN_SMOOTHING", state["nr_even_smoothing"]),
        Define("PKW_FE_NR_ODD_SMOOTHING", state["nr_odd_smoothing"]),
        Define("PKW_FE_NR_MIN_SIGNAL_REMAINING", state["nr_min_signal_remaining"]),
        Define("PKW_FE_PCAN_ENABLE", state["pcan_enable"]),
        Define("PKW_FE_PCAN_SNR_SHIFT", state["pcan_snr_shift"]),
        Define("PKW_FE_LOG_ENABLE", state["log_enable"]),
        Define("PKW_FE_LOG_SCALE_SHIFT", state["log_scale_shift"]),
        Define("PKW_FE_Q_LUT_LEN", int(lut.size), "raw values past the last entry quantize like it"),
        Define("PKW_FE_INPUT_ZERO_POINT", quant.zero_point),
        Define("PKW_FE_CONFIG_HASH", frontend.config_hash(), "polykws FrontendConfig.config_hash()"),
    ]
    arrays = [
        ("pkw_fe_window_coefficients", state["window_coefficients"], "int16_t"),
        ("pkw_fe_kiss_factors", state["kiss_factors"], "int32_t"),
        ("pkw_fe_kiss_twiddles", state["kiss_twiddles"], "int16_t"),
        ("pkw_fe_kiss_super_twiddles", state["kiss_super_twiddles"], "int16_t"),
        ("pkw_fe_fb_channel_frequency_starts", state["fb_channel_frequency_starts"], "int16_t"),
        ("pkw_fe_fb_channel_weight_starts", state["fb_channel_weight_starts"], "int16_t"),
        ("pkw_fe_fb_channel_widths", state["fb_channel_widths"], "int16_t"),
        ("pkw_fe_fb_weights", state["fb_weights"], "int16_t"),
        ("pkw_fe_fb_unweights", state["fb_unweights"], "int16_t"),
        ("pkw_fe_pcan_gain_lut", state["pcan_gain_lut"], "int16_t"),
        ("pkw_fe_q_lut", lut.tolist(), "int8_t"),
    ]
    decls = [f"extern const {ctype} {name}[];" for name, _, ctype in arrays]
    banner = (f"Generated by polykws.firmware.frontendgen: the micro frontend's state tables, computed on the host "
              f"as pymicro-features computes them, and the int8 input quantizer (scale {quant.scale!r}, zero point {quant.zero_point}).")
    header = render_header("PKW_FRONTEND_TABLES_H", banner=banner, defines=defines, declarations=decls)
    source = render_source(banner=banner, includes=[HEADER_NAME],
                           definitions=[render_int_array(name, values, ctype) for name, values, ctype in arrays])
    atomic_write_text(out / HEADER_NAME, header)
    atomic_write_text(out / SOURCE_NAME, source)
    return out / HEADER_NAME, out / SOURCE_NAME


STREAM_HEADER = "pkw_stream_config.h"
STREAM_SOURCE = "pkw_stream_config.c"


def write_stream_config(out_dir: str | Path, lang: str, thresholds: Sequence[int], plan: Any) -> tuple[Path, Path]:
    """pkw_stream_config.{h,c}: the language the streaming app listens in, its detector plan
    (polykws.export.streaming.DetectorPlan) and one threshold per label (256 never fires)."""
    thr = [int(t) for t in thresholds]
    if not thr or any(not 0 <= t <= 256 for t in thr):
        raise ConfigError(f"thresholds must be one integer in [0, 256] per label, got {thr}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    defines = [
        Define("PKW_STREAM_LANG", lang),
        Define("PKW_STREAM_NUM_LABELS", len(thr)),
        Define("PKW_DET_WINDOW_FRAMES", plan.window_frames),
        Define("PKW_DET_STRIDE_FRAMES", plan.stride_frames),
        Define("PKW_DET_AVERAGE_INFERENCES", plan.average_inferences),
        Define("PKW_DET_REFRACTORY_FRAMES", plan.refractory_frames),
    ]
    banner = f"Generated by polykws.firmware.frontendgen: the streaming app's language ({lang}), detector plan and thresholds."
    header = render_header("PKW_STREAM_CONFIG_H", banner=banner, defines=defines,
                           declarations=["extern const uint16_t pkw_stream_thresholds[];"])
    source = render_source(banner=banner, includes=[STREAM_HEADER], definitions=[render_int_array("pkw_stream_thresholds", thr, "uint16_t")])
    atomic_write_text(out / STREAM_HEADER, header)
    atomic_write_text(out / STREAM_SOURCE, source)
    return out / STREAM_HEADER, out / STREAM_SOURCE
