"""The TFLM op resolver the firmware is built with: exactly the ops the exported model contains.

`resolver_ops()` maps the model's builtin op names (read by polykws.export.tflite_graph) to the
`MicroMutableOpResolver::Add<Name>()` calls the generated PKW_OPS X-macro expands to. Only ops a
DS-CNN-style KWS export can contain are mapped; anything else is refused by name rather than
silently registering a resolver that would fail at AllocateTensors on the device.
"""

from __future__ import annotations

from typing import Iterable

from polykws.core import PolykwsError

RESOLVER_METHODS = {
    "ADD": "Add",
    "AVERAGE_POOL_2D": "AveragePool2D",
    "CONV_2D": "Conv2D",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2D",
    "DEQUANTIZE": "Dequantize",
    "FULLY_CONNECTED": "FullyConnected",
    "MAX_POOL_2D": "MaxPool2D",
    "MEAN": "Mean",
    "PAD": "Pad",
    "QUANTIZE": "Quantize",
    "RELU": "Relu",
    "RELU6": "Relu6",
    "RESHAPE": "Reshape",
    "SOFTMAX": "Softmax",
    "SQUEEZE": "Squeeze",
}


def op_set(opcodes: Iterable[str]) -> tuple[str, ...]:
    """Distinct op names in first-use order (deterministic)."""
    seen: list[str] = []
    for op in opcodes:
        if op not in seen:
            seen.append(op)
    return tuple(seen)


def resolver_ops(opcodes: Iterable[str], source: str = "model") -> tuple[str, ...]:
    """Add<Name> suffixes for exactly the ops in `opcodes`; PolykwsError naming any unsupported op."""
    ops = op_set(opcodes)
    unknown = [op for op in ops if op not in RESOLVER_METHODS]
    if unknown:
        raise PolykwsError(f"{source}: ops {unknown} are not in the firmware's op resolver ({', '.join(sorted(RESOLVER_METHODS))})")
    return tuple(RESOLVER_METHODS[op] for op in ops)
