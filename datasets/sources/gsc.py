"""Google Speech Commands v2 (Warden 2018), as extracted from speech_commands_v0.02.tar.gz.

Layout: ``<root>/<word>/<speaker>_nohash_<n>.wav``, ``<root>/_background_noise_/*.wav``,
``<root>/validation_list.txt`` and ``<root>/testing_list.txt`` (paths relative to root). Files in
neither list are training files. Files the lists do not cover get GSC's own which_set (10 %/10 %),
which reproduces the official lists exactly.

Two standard tasks:
- 12 classes: yes no up down left right on off stop go + ``_silence_`` + ``_unknown_`` (the other
  25 words), as in Hello Edge / MLPerf Tiny;
- 35 classes: all 35 words, no silence/unknown class.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path
from typing import Iterator

from polykws.core import PolykwsError

from ..manifest import ANY_LANGUAGE, NOISE_LABEL
from .registry import Candidate, LayoutSkip, register_source
from .speakers import gsc_style

GSC_V2_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
# The same digest torchaudio's SPEECHCOMMANDS checks for this archive.
GSC_V2_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"

GSC_V2_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
GSC_12_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def gsc_task(num_classes: int = 12, language: str = "en"):
    """The standard GSC v2 task as a TaskSpec: 12 (10 words + silence + unknown) or 35 classes."""
    from ..task import TaskSpec

    if num_classes == 12:
        return TaskSpec(language, GSC_12_KEYWORDS, silence=True, unknown=True)
    if num_classes == 35:
        return TaskSpec(language, GSC_V2_WORDS, silence=False, unknown=False)
    raise PolykwsError(f"GSC v2 tasks have 12 or 35 classes, not {num_classes}")


def detect_gsc(root: Path) -> bool:
    root = Path(root)
    return (root / "validation_list.txt").is_file() and (root / "testing_list.txt").is_file() or (root / NOISE_LABEL).is_dir() and any(
        gsc_style(f.name) for d in root.iterdir() if d.is_dir() and d.name != NOISE_LABEL for f in list(d.iterdir())[:5]
    )


def iter_gsc(root: Path, *, languages=None, sources=None, gsc_language: str = "en", source_name: str = "gsc_v2", **_) -> Iterator[Candidate | LayoutSkip]:
    root = Path(root)
    if languages and gsc_language not in languages:
        return
    if sources and source_name not in sources:
        return
    official: dict[str, str] = {}
    for name, split in (("validation_list.txt", "val"), ("testing_list.txt", "test")):
        lst = root / name
        if lst.is_file():
            for line in lst.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    official[line.strip()] = split
    for word_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        if word_dir.name == NOISE_LABEL:
            for f in sorted(word_dir.iterdir()):
                if f.is_file() and f.suffix.lower() == ".wav":
                    yield Candidate(f, ANY_LANGUAGE, NOISE_LABEL, f"{source_name}-noise:{f.name}", source_name)
            continue
        for f in sorted(word_dir.iterdir()):
            if f.is_dir() or f.name.startswith("."):
                continue
            rel = f"{word_dir.name}/{f.name}"
            spk = gsc_style(f.name)
            if spk is None:
                yield LayoutSkip(f, "no_speaker", "not a <speaker>_nohash_<n> file name", gsc_language, source_name)
                continue
            # Official lists are authoritative (files outside both are training files); without
            # lists, the split planner applies GSC's which_set to the "gsc" namespace.
            split = official.get(rel, "train") if official else None
            yield Candidate(f, gsc_language, word_dir.name, f"gsc:{spk}", source_name, split)


register_source("gsc_v2", detect_gsc, iter_gsc, "Google Speech Commands v2: <root>/<word>/<spk>_nohash_<n>.wav + lists",
                "yes/0a1b2c3d_nohash_0.wav, validation_list.txt, testing_list.txt, _background_noise_/")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_gsc_v2(dest: str | os.PathLike, *, url: str = GSC_V2_URL, sha256: str = GSC_V2_SHA256, keep_archive: bool = True) -> Path:
    """Download and extract GSC v2 into dest, verifying the archive's SHA-256 first.

    Resumable in the simple sense: an archive already present with the right digest is not
    downloaded again; extraction happens into a temporary folder that is renamed when complete.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / Path(url).name
    if not (archive.is_file() and sha256_of(archive) == sha256):
        tmp = archive.with_suffix(archive.suffix + ".part")
        try:
            with urllib.request.urlopen(url) as resp, open(tmp, "wb") as out:  # noqa: S310 - user-chosen URL
                shutil.copyfileobj(resp, out, 1 << 20)
        except OSError as exc:
            raise PolykwsError(f"download of {url} failed: {exc}") from None
        got = sha256_of(tmp)
        if got != sha256:
            tmp.unlink(missing_ok=True)
            raise PolykwsError(f"{url}: SHA-256 mismatch (got {got}, want {sha256}); the archive was deleted")
        os.replace(tmp, archive)
    target = dest / "speech_commands_v0.02"
    if not (target / "testing_list.txt").is_file():
        staging = dest / ".speech_commands_v0.02.extracting"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # "data" refuses absolute paths and links out
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return target
