"""polykws.export: merged model -> ONNX -> full-int8 TFLite for TFLM, device-equivalent evaluation,
and per-language weight-diff blobs on one shared int8 base.

    from polykws.export import export_base, export_language, evaluate_tflm, apply_blob

Names load lazily, so `import polykws.export.blob` (firmware tooling) and `polykws --help` never
pull in TensorFlow or torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # library API
    "ExportedModel": "api",
    "export_base": "api",
    "export_language": "api",
    "evaluate_export": "api",
    "Pack": "pack",  # the function: polykws.export.pack.pack (the submodule shadows the name)
    # conversion
    "to_onnx": "convert",
    "onnx_parity": "convert",
    "check_tflm_ops": "convert",
    "ExportError": "convert",
    "TFLM_ALLOWED_OPS": "convert",
    # evaluation
    "evaluate_tflm": "evaluate",
    "cross_check": "evaluate",
    "find_arena_bytes": "evaluate",
    "TflmResult": "evaluate",
    # blobs and flash images
    "Blob": "blob",
    "BlobError": "blob",
    "encode_blob": "blob",
    "decode_blob": "blob",
    "apply_blob": "blob",
    "encode_flash_image": "blob",
    "decode_flash_image": "blob",
    # flatbuffer inspection
    "TfliteGraph": "tflite_graph",
    "assert_layout_identical": "tflite_graph",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polykws.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"polykws.export.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
