"""polykws.datasets: manifests, audio loading, splits, augmentation, frontends, feature cache, TTS corpus.

Names are imported lazily so ``import polykws.datasets`` (and ``polykws --help``) stays cheap;
torch and torchaudio load only when a function that needs them is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # audio
    "BadAudioError": "audio",
    "BAD_AUDIO_REASONS": "audio",
    "load_audio": "audio",
    "load_waveform": "audio",
    "decode_audio": "audio",
    "sniff_container": "audio",
    # frontends
    "FrontendConfig": "frontend",
    "mfcc_frontend": "frontend",
    "micro_frontend": "frontend",
    "frontend_by_name": "frontend",
    "compute_features": "frontend",
    "compute_features_batch": "frontend",
    # manifest, sources, splits, scanning
    "ClipRecord": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "SplitConfig": "splits",
    "assign_splits": "splits",
    "which_set": "splits",
    "register_source": "sources",
    "register_speaker_parser": "sources",
    "SOURCES": "sources",
    "ScanResult": "scan",
    "SkippedFile": "scan",
    "scan": "scan",
    # tasks and features
    "TaskSpec": "task",
    "TaskOptions": "task",
    "FeatureSplit": "features",
    "load_task_features": "features",
    # augmentation
    "AugmentConfig": "augment",
    "SpecAugmentConfig": "augment",
    "augment_waveform": "augment",
    "spec_augment": "augment",
    # synthesized corpus
    "SynthConfig": "synth",
    "synthesize_corpus": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'polykws.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"polykws.datasets.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
