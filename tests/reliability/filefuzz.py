"""Structure-aware fuzzing of the Python readers of untrusted files: the pack (manifest.json +
flash.bin + blobs, read by firmware/packreader.py), an export folder (<lang>.json + model files, read by
ExportedModel.load), model files (load_model) and training checkpoints (load_training_state).

Each target starts from a valid set of files and applies 1-4 mutations that know the structure:
JSON keys deleted or given values of the wrong type, file names pointed elsewhere, files dropped,
swapped, truncated or bit-flipped, and - half of the time - the recorded SHA-256s recomputed over
the mutated files, so the rules behind the hash checks are reached too. Tensor payloads are
mutated before serialisation (with the weights hash recomputed or not), and malicious pickles
that would run code are thrown in.

The property, per input: the reader raises PolykwsError (a named error), or what it returns is
exactly what the recorded hashes promise. Any other exception is a crash. A seeded driver
(`run(target, seed, count)`) serves the default test (through Hypothesis, which picks the seeds)
and bench/fuzz_files.py (millions of inputs).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from polykws.core import PolykwsError

ODD_VALUES: list[Any] = [None, 0, -1, 1, 2**40, 1.5, float("nan"), "", "x", "../manifest.json", "base.tflite",
                         [], [1], ["a", "a"], {}, {"a": 1}, True, False, "0" * 64]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON-like object."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate_json(rng: random.Random, doc: Any) -> Any:
    """One structural mutation of a JSON document (returns the new document)."""
    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    op = rng.randrange(6)
    if op == 0 or not paths:
        return rng.choice([[], "manifest", 42, None, [doc]])
    path = rng.choice(paths)
    parent = _get(doc, path[:-1])
    key = path[-1]
    if op == 1:
        del parent[key]
    elif op == 2:
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif op == 3 and isinstance(parent, dict) and len(parent) > 1:
        other = rng.choice([k for k in parent if k != key])
        parent[key], parent[other] = parent[other], parent[key]
    elif op == 4 and isinstance(parent, dict):
        parent[rng.choice(["uk", "xx", "", "../lt", key + "_"])] = parent.pop(key)
    else:
        v = parent[key]
        if isinstance(v, str) and len(v) == 64:
            parent[key] = v[::-1]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            parent[key] = rng.choice([v + 1, -v, v * 1000, 0])
        elif isinstance(v, list) and v:
            parent[key] = v[::-1] if rng.random() < 0.5 else v[:-1]
        else:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    return doc


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    op = rng.randrange(5)
    if op == 0 and b:
        return bytes(b[: rng.randrange(len(b))])
    if op == 1:
        return bytes(b + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))))
    if op == 2 and b:
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if op == 3 and len(b) > 8:
        i = rng.randrange(len(b) - 4)
        b[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
        return bytes(b)
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))


@dataclass
class Target:
    """A valid file set, how to mutate it, how to read it, and what a successful read must satisfy."""

    name: str
    files: dict[str, bytes]
    read: Callable[[Path], Any]
    check: Callable[[Path, Any], None]
    mutate: Callable[[random.Random, dict[str, bytes]], dict[str, bytes]]
    stats: dict[str, int] = field(default_factory=lambda: {"inputs": 0, "accepted": 0, "refused": 0})


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def run(target: Target, seed: int, count: int = 1, folder: Path | None = None) -> None:
    """Fuzz `count` inputs from `seed`; raises AssertionError naming the seed on a violation."""
    own = folder is None
    folder = folder or Path(tempfile.mkdtemp(prefix=f"fuzz-{target.name}-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        for i in range(count):
            rng = random.Random(seed * 1_000_003 + i)
            files = target.files if rng.random() < 0.02 else target.mutate(rng, dict(target.files))
            _write(folder, files)
            target.stats["inputs"] += 1
            try:
                result = target.read(folder)
            except PolykwsError:
                target.stats["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the point: anything but a named error is a crash
                raise AssertionError(f"{target.name} seed {seed} input {i}: crashed with {type(exc).__name__}: {exc}") from exc
            target.stats["accepted"] += 1
            try:
                target.check(folder, result)
            except AssertionError as exc:
                raise AssertionError(f"{target.name} seed {seed} input {i}: accepted a file it should refuse: {exc!r}") from exc
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)


# --- the pack (firmware/packreader.py) --------------------------------------------------------------
def _mutate_bundle(rng: random.Random, files: dict[str, bytes], doc_name: str, n_ops: int, fallback=None):
    """One to four mutations of a folder's files (in place) and of its JSON document (returned):
    JSON edits, a dropped, corrupted or swapped binary, else `fallback(files)` when given."""
    doc = json.loads(files[doc_name])
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(n_ops)
        binaries = [n for n in files if n != doc_name]
        if op <= 1:
            doc = mutate_json(rng, doc)
        elif op == 2 and binaries:
            files.pop(rng.choice(binaries))
        elif op == 3 and binaries:
            n = rng.choice(binaries)
            files[n] = mutate_bytes(rng, files[n])
        elif op == 4 and len(binaries) > 1:
            a, b = rng.sample(binaries, 2)
            files[a], files[b] = files[b], files[a]
        elif fallback is not None:
            fallback(files)
    return doc


def pack_target(base: bytes, langs: dict[str, bytes]) -> Target:
    from polykws.export.blob import apply_blob, encode_blob, encode_flash_image
    from polykws.firmware.packreader import load_pack

    blobs = {lang: encode_blob(base, m, lang, [f"{lang}{i}" for i in range(5)], {}) for lang, m in langs.items()}
    image = encode_flash_image(base, list(blobs.values()))
    manifest = {
        "format": "polykws-pack", "format_version": 1, "frontend": {"kind": "mfcc"},
        "base": {"file": "base.tflite", "lang": "en", "labels": [f"e{i}" for i in range(12)], "sha256": _sha(base), "int8_acc": 0.9},
        "languages": {lang: {"file": f"{lang}.blob", "blob_sha256": _sha(b), "tflite_sha256": _sha(langs[lang]), "labels": [f"{lang}{i}" for i in range(5)],
                             "int8_acc": 0.8, "test_clips": 10} for lang, b in blobs.items()},
        "flash_image": {"file": "flash.bin", "sha256": _sha(image)},
    }
    files = {"manifest.json": json.dumps(manifest).encode(), "flash.bin": image, "base.tflite": base,
             **{f"{lang}.blob": b for lang, b in blobs.items()}}

    def mutate(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
        # The last op drops the image: the reader rebuilds it from the listed blobs.
        doc = _mutate_bundle(rng, files, "manifest.json", 6, lambda f: f.pop("flash.bin", None))
        if isinstance(doc, dict) and rng.random() < 0.5:
            # Recompute the recorded hashes over the mutated files: reach the rules behind them.
            for entry, key, name in _hash_fields(doc):
                if name in files:
                    entry[key] = _sha(files[name])
        files["manifest.json"] = json.dumps(doc).encode() if rng.random() > 0.03 else mutate_bytes(rng, files["manifest.json"])
        return files

    def check(folder: Path, pack) -> None:
        doc = json.loads((folder / "manifest.json").read_bytes())
        base_bytes = pack.base
        if isinstance(doc.get("base"), dict) and isinstance(doc["base"].get("sha256"), str):
            assert _sha(base_bytes) == doc["base"]["sha256"], "accepted a base whose SHA-256 differs from the manifest's"
        listed = doc.get("languages") if isinstance(doc.get("languages"), dict) else {}
        from polykws.export.blob import decode_flash_image

        img = decode_flash_image(pack.flash_image)
        for i, e in enumerate(img.entries):
            model = apply_blob(base_bytes, img.blob_bytes(i))
            want = (listed.get(e.lang) or {}).get("tflite_sha256") if isinstance(listed.get(e.lang), dict) else None
            if isinstance(want, str):
                assert _sha(model) == want, f"accepted {e.lang} whose model SHA-256 differs from the manifest's"
            assert len(pack.labels_of(e.lang)) > 0

    return Target("pack_manifest", files, load_pack, check, mutate)


def _hash_fields(doc: dict) -> list[tuple[dict, str, str]]:
    out = []
    if isinstance(doc.get("base"), dict):
        out.append((doc["base"], "sha256", str(doc["base"].get("file", "base.tflite"))))
    if isinstance(doc.get("flash_image"), dict):
        out.append((doc["flash_image"], "sha256", "flash.bin"))
    for entry in (doc.get("languages") or {}).values() if isinstance(doc.get("languages"), dict) else ():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            out.append((entry, "blob_sha256", entry["file"]))
    return out


# --- an export folder (ExportedModel.load) -----------------------------------------------------
def export_target(base: bytes, lang_model: bytes) -> Target:
    from polykws.datasets.frontend import mfcc_frontend
    from polykws.export.api import ExportedModel
    from polykws.export.blob import encode_blob

    ex = ExportedModel("lt", tuple(f"lt{i}" for i in range(5)), mfcc_frontend(), 12, lang_model, base,
                       meta={"eval": {"int8_acc": 0.5}}, blob=encode_blob(base, lang_model, "lt", [f"lt{i}" for i in range(5)], {}))
    d = ex.describe()
    files = {"lt.json": json.dumps(d).encode(), "lt.tflite": ex.tflite, "lt.float.tflite": ex.float_tflite, "lt.blob": ex.blob,
             "lt.onnx": b"onnx-bytes"}
    roles = {"tflite_sha256": "lt.tflite", "float_tflite_sha256": "lt.float.tflite", "blob_sha256": "lt.blob", "onnx_sha256": "lt.onnx"}

    def mutate(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
        doc = _mutate_bundle(rng, files, "lt.json", 5)
        if isinstance(doc, dict) and rng.random() < 0.5:
            for key, name in roles.items():
                if key in doc and name in files:
                    doc[key] = _sha(files[name])
        files["lt.json"] = json.dumps(doc).encode() if rng.random() > 0.03 else mutate_bytes(rng, files["lt.json"])
        return files

    def check(folder: Path, loaded) -> None:
        doc = json.loads((folder / "lt.json").read_bytes())
        assert _sha(loaded.tflite) == doc["tflite_sha256"]
        for key, value in (("blob_sha256", loaded.blob), ("float_tflite_sha256", loaded.float_tflite), ("onnx_sha256", loaded.onnx)):
            if key in doc:
                assert value is not None and _sha(value) == doc[key], key
            elif key == "blob_sha256":
                assert value is None, "accepted a blob its description does not name"

    return Target("export_meta", files, lambda folder: ExportedModel.load(folder, "lt"), check, mutate)


# --- model files and training checkpoints (training/checkpoint.py) -----------------------------
class _RunsCode:
    """A pickle that would run a command on load (the attack weights_only=True refuses)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _mutate_payload(rng: random.Random, payload: dict, rehash: Callable[[dict], None] | None) -> dict:
    import torch

    payload = dict(payload)
    for _ in range(rng.randint(1, 3)):
        keys = list(payload)
        op = rng.randrange(5)
        k = rng.choice(keys) if keys else None
        if op == 0 and k:
            del payload[k]
        elif op == 1 and k:
            payload[k] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif op == 2 and isinstance(payload.get("state_dict"), dict) and payload["state_dict"]:
            sd = dict(payload["state_dict"])
            name = rng.choice(sorted(sd, key=str))
            if not hasattr(sd[name], "clone"):
                continue
            t = sd[name].clone()
            choice = rng.randrange(4)
            if choice == 0 and t.numel():
                t.view(-1)[rng.randrange(t.numel())] += 1
                sd[name] = t
            elif choice == 1:
                sd[name] = t.reshape(-1)[: max(0, t.numel() - 1)]
            elif choice == 2:
                sd[name + "_x"] = sd.pop(name)
            else:
                sd[name] = "not a tensor"
            payload["state_dict"] = sd
        elif op == 3 and isinstance(payload.get("model_kwargs"), dict):
            kw = dict(payload["model_kwargs"])
            kw[rng.choice(["num_classes", "input_shape", "width"])] = copy.deepcopy(rng.choice([3, 10**9, -4, [49], [49, 10, 1], "x", [0, 10]]))
            payload["model_kwargs"] = kw
        else:
            payload[rng.choice(["model_name", "labels", "frontend", "format_version"])] = copy.deepcopy(
                rng.choice(["ds_cnn_l", "nope", ["a", "b"], ["a", "a", "b", "c"], {"kind": "mfcc"}, 2, torch.zeros(2)]))
    if rehash is not None and rng.random() < 0.5:
        rehash(payload)
    return payload


FUZZ_MODEL = "ds_cnn_fuzz"


def _fuzz_model(num_classes: int = 4):
    """A registered DS-CNN with one narrow block: the readers walk every tensor through the
    weights-only unpickler, so a small file keeps the rate near a thousand inputs a second while
    every reader rule (fields, hashes, kwargs, state_dict shapes) stays reachable."""
    from polykws.training.models import DSCNN, DSCNNSpec, create_model, list_models, register_model

    if FUZZ_MODEL not in list_models():
        @register_model(FUZZ_MODEL)
        def ds_cnn_fuzz(num_classes: int = 4, input_shape: tuple[int, int] = (49, 10)) -> DSCNN:
            return DSCNN(DSCNNSpec(channels=8, num_blocks=1), num_classes, input_shape)

    return create_model(FUZZ_MODEL, num_classes=num_classes, input_shape=(49, 10))


def model_target(marker: Path) -> Target:
    import torch

    from polykws.datasets.frontend import mfcc_frontend
    from polykws.training.checkpoint import load_model, save_model, state_sha256

    torch.manual_seed(0)
    model = _fuzz_model()
    tmp = Path(tempfile.mkdtemp())
    save_model(tmp / "m.pt", model, labels=["a", "b", "c", "d"], frontend=mfcc_frontend())
    valid = (tmp / "m.pt").read_bytes()
    shutil.rmtree(tmp)
    payload = torch.load(io.BytesIO(valid), weights_only=True)

    def rehash(p: dict) -> None:
        sd = p.get("state_dict")
        if isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()):
            p["state_sha256"] = state_sha256(sd)

    def mutate(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
        op = rng.randrange(10)
        if op < 6:
            return {"model.pt": _torch_bytes(_mutate_payload(rng, payload, rehash))}
        if op < 9:
            return {"model.pt": mutate_bytes(rng, valid)}
        return {"model.pt": pickle.dumps({"format": "polykws-model", "x": _RunsCode(str(marker))})
                if rng.random() < 0.5 else _torch_bytes({"format": "polykws-model", "x": _RunsCode(str(marker))})}

    def check(folder: Path, loaded) -> None:
        assert not marker.exists(), "a model file ran code on load"
        # torch stores data.pkl uncompressed, so the recorded hash is in the file's bytes verbatim.
        # The file is not read back through torch: on a corrupt archive its zip reader is not
        # repeatable, and the property is about what load_model returned.
        assert loaded.sha256 == state_sha256(loaded.model), "the returned weights are not the ones hashed"
        assert loaded.sha256.encode() in (folder / "model.pt").read_bytes(), "the returned weights' SHA-256 is not the one the file records"

    def read(folder: Path):
        try:
            return load_model(folder / "model.pt")
        finally:
            assert not marker.exists(), "a model file ran code on load"

    return Target("model_file", {"model.pt": valid}, read, check, mutate)


def train_state_target(marker: Path) -> Target:
    import torch

    from polykws.training.checkpoint import load_training_state, save_training_state

    torch.manual_seed(0)
    model = _fuzz_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    state = {"config_hash": "abc", "epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"},
             "history": [{"epoch": 1, "val_acc": 0.5}], "best_epoch": 1, "best_value": 0.5, "best_sha256": "x", "wall_time_s": 1.0}
    tmp = Path(tempfile.mkdtemp())
    save_training_state(tmp / "c.pt", state)
    valid = (tmp / "c.pt").read_bytes()
    shutil.rmtree(tmp)
    payload = torch.load(io.BytesIO(valid), weights_only=True)

    def mutate(rng: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
        op = rng.randrange(10)
        if op < 5:
            return {"checkpoint.pt": _torch_bytes(_mutate_payload(rng, payload, None))}
        if op < 9:
            return {"checkpoint.pt": mutate_bytes(rng, valid)}
        return {"checkpoint.pt": _torch_bytes({**payload, "optimizer": _RunsCode(str(marker))})}

    def read(folder: Path):
        try:
            return load_training_state(folder / "checkpoint.pt")
        finally:
            assert not marker.exists(), "a training checkpoint ran code on load"

    def check(folder: Path, state) -> None:
        assert isinstance(state["model"], dict) and all(isinstance(v, torch.Tensor) for v in state["model"].values())
        assert isinstance(state["epoch"], int) and isinstance(state["optimizer"], dict)

    return Target("train_state", {"checkpoint.pt": valid}, read, check, mutate)


def int8_models() -> tuple[bytes, dict[str, bytes]]:
    """The firmware tests' small int8 model and two layout-identical language variants."""
    import importlib.util

    here = Path(__file__).resolve().parents[1] / "firmware" / "conftest.py"
    spec = importlib.util.spec_from_file_location("polykws_fw_conftest", here)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = mod.build_int8_fc_model()
    return base, {"lt": mod.language_variant(base, 1), "uk": mod.language_variant(base, 2)}


def all_targets(marker: Path) -> dict[str, Target]:
    base, langs = int8_models()
    return {
        "pack_manifest": pack_target(base, langs),
        "export_meta": export_target(base, langs["lt"]),
        "model_file": model_target(marker),
        "train_state": train_state_target(marker),
    }
