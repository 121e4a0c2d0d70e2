"""The on-device frontend's int8 quantizer table equals the host quantizer for every raw value
(no TFLM needed: the table is pure Python; the device's use of it is tests/firmware/test_frontend_qemu.py)."""

from __future__ import annotations

import numpy as np
import pytest

from polykws.core import ConfigError
from polykws.datasets.frontend import mfcc_frontend, micro_frontend
from polykws.export.quantize import quantize_activations
from polykws.firmware.frontendgen import InputQuant, quantizer_table, write_frontend_sources


@pytest.mark.parametrize("quant", [InputQuant.pinned((0.0, 26.0)), InputQuant(0.0813, -101)])
def test_quantizer_table_is_the_host_quantizer_for_every_raw_value(quant):
    fe = micro_frontend()
    lut = quantizer_table(fe, quant)
    raw = np.arange(1 << 16)
    device = lut[np.minimum(raw, lut.size - 1)]  # what pkw_frontend_quantize does
    scale = np.float32(fe.micro_params["output_scale"])
    host = quantize_activations(np.clip(raw.astype(np.float32) * scale, *fe.value_range), quant.scale, quant.zero_point)
    assert lut.dtype == np.int8 and lut.size == 667  # 666 x 0.0390625 = 26.02 is the first clipped value
    np.testing.assert_array_equal(device, host)


def test_pinned_input_quantization():
    q = InputQuant.pinned((0.0, 26.0))
    assert q.zero_point == -128 and q.scale == pytest.approx(26.0 / 255.0, rel=0, abs=0)
    with pytest.raises(ConfigError):
        InputQuant.pinned((1.0, 1.0))


def test_only_the_micro_frontend_runs_on_the_device(tmp_path):
    with pytest.raises(ConfigError, match="micro"):
        write_frontend_sources(tmp_path, mfcc_frontend(), InputQuant(0.1, 0), {})
