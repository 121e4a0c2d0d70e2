"""Where stage artifacts live: a local folder or any fsspec URI (shared filesystem, object store).

Layout, the same on every backend::

    <root>/<kind>/<key>/            a finished stage: its files plus stage.json (written last)
    <root>/<kind>/.work-<key>/      a stage being built (local roots only); renamed to <key> when done

A stage counts as finished only when `<root>/<kind>/<key>/stage.json` exists. On a local root
the whole folder appears at once (one rename), so a killed run leaves either nothing or a complete
stage. Object stores have no atomic rename: there the files are uploaded first and stage.json
last, so an interrupted upload is simply not a finished stage and is redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

from polykws.core import PolykwsError, atomic_write_json

MANIFEST = "stage.json"
# Files a stage may write that describe the run rather than its result (logs, wall times); they
# are not hashed, so a re-run that produces the same result has the same content hash.
VOLATILE_FILES = frozenset({MANIFEST, "log.txt"})
VOLATILE_DIR = "volatile"


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


class ArtifactStore:
    """Stage folders keyed by (kind, key) under `root` (a path or an fsspec URI)."""

    def __init__(self, root: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        import fsspec

        self.uri = str(root)
        fs, path = fsspec.core.url_to_fs(self.uri)
        self.fs = fs
        self.local = _is_local(fs)
        if self.local:
            self.root_path = Path(path).resolve()
            self.root_path.mkdir(parents=True, exist_ok=True)
            self.cache = self.root_path
        else:
            self.root_path = None
            self._remote_root = path.rstrip("/")
            if cache_dir is None:
                cache_dir = Path(os.environ.get("POLYKWS_CACHE", Path.home() / ".cache" / "polykws")) / "store"
            self.cache = Path(cache_dir).resolve()
            self.cache.mkdir(parents=True, exist_ok=True)

    # -- addressing -------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"ArtifactStore({self.uri!r})"

    def __reduce__(self):
        # Workers (processes, Ray) rebuild the store from its URI.
        return (ArtifactStore, (self.uri, None if self.local else str(self.cache)))

    def stage_uri(self, kind: str, key: str) -> str:
        if self.local:
            return str(self.root_path / kind / key)
        return f"{self.fs.unstrip_protocol(self._remote_root)}/{kind}/{key}"

    def _remote(self, kind: str, key: str, *parts: str) -> str:
        return "/".join([self._remote_root, kind, key, *parts])

    # -- reading ----------------------------------------------------------------------------
    def lookup(self, kind: str, key: str) -> dict[str, Any] | None:
        """The manifest of a finished stage, or None."""
        if self.local:
            p = self.root_path / kind / key / MANIFEST
            if not p.is_file():
                return None
            text = p.read_text()
        else:
            p = self._remote(kind, key, MANIFEST)
            if not self.fs.exists(p):
                return None
            text = self.fs.cat_file(p).decode()
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolykwsError(f"{self.stage_uri(kind, key)}/{MANIFEST}: unreadable stage manifest ({exc})") from None
        if manifest.get("key") != key:
            raise PolykwsError(f"{self.stage_uri(kind, key)}/{MANIFEST}: records key {manifest.get('key')!r}, folder says {key!r}")
        return manifest

    def materialize(self, kind: str, key: str) -> Path:
        """A local folder holding the finished stage's files (downloaded once for remote roots)."""
        if self.local:
            d = self.root_path / kind / key
            if not (d / MANIFEST).is_file():
                raise PolykwsError(f"{d}: stage is not finished (no {MANIFEST})")
            return d
        d = self.cache / kind / key
        if (d / MANIFEST).is_file():
            return d
        if self.lookup(kind, key) is None:
            raise PolykwsError(f"{self.stage_uri(kind, key)}: stage is not finished (no {MANIFEST})")
        tmp = self.cache / kind / f".dl-{key}-{socket.gethostname()}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.fs.get(self._remote(kind, key) + "/", str(tmp) + "/", recursive=True)
        # Files first, manifest proves completeness: fetch it (again) last.
        (tmp / MANIFEST).write_bytes(self.fs.cat_file(self._remote(kind, key, MANIFEST)))
        try:
            os.rename(tmp, d)
        except OSError:  # another worker finished the same download first
            shutil.rmtree(tmp, ignore_errors=True)
        return d

    # -- writing ----------------------------------------------------------------------------
    def work_dir(self, kind: str, key: str) -> Path:
        """Local folder a stage writes into. It survives a kill, so resumable stages can continue."""
        base = self.root_path if self.local else self.cache / "work"
        d = base / kind / f".work-{key}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Exclusive lock on one stage's work folder (two runs never build the same stage at once)."""
        import fcntl

        base = self.root_path if self.local else self.cache / "work"
        lock_path = base / kind / f".work-{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()

    def commit(self, kind: str, key: str, work: Path, manifest: dict[str, Any]) -> dict[str, Any]:
        """Publish a finished work folder as `<kind>/<key>`; returns the manifest that is published.

        If the stage was published meanwhile (another run), the existing one wins: stages are
        deterministic, and readers may already hold it.
        """
        atomic_write_json(work / MANIFEST, manifest)
        if self.local:
            final = self.root_path / kind / key
            try:
                os.rename(work, final)
            except OSError:
                existing = self.lookup(kind, key)
                if existing is None:
                    raise
                shutil.rmtree(work, ignore_errors=True)
                return existing
            return manifest
        existing = self.lookup(kind, key)
        if existing is not None:
            shutil.rmtree(work, ignore_errors=True)
            return existing
        for f in sorted(work.rglob("*")):
            if f.is_file() and f.name != MANIFEST:
                rel = f.relative_to(work).as_posix()
                self.fs.makedirs(self._remote(kind, key, *rel.split("/")[:-1]), exist_ok=True)
                self.fs.put_file(str(f), self._remote(kind, key, rel))
        self.fs.pipe_file(self._remote(kind, key, MANIFEST), (work / MANIFEST).read_bytes())
        # Keep the local copy as the materialized cache entry.
        local = self.cache / kind / key
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.exists():
            shutil.rmtree(work, ignore_errors=True)
        else:
            os.rename(work, local)
        return manifest

    def discard_work(self, kind: str, key: str) -> None:
        base = self.root_path if self.local else self.cache / "work"
        shutil.rmtree(base / kind / f".work-{key}", ignore_errors=True)


def hash_folder(folder: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(content hash, {relpath: {sha256, bytes}}) over every non-volatile file under `folder`."""
    from polykws.core import sha256_file, stable_hash

    files: dict[str, dict[str, Any]] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not (f.parent == folder and f.name in VOLATILE_FILES):
            rel = f.relative_to(folder).as_posix()
            if rel.startswith(VOLATILE_DIR + "/"):
                continue
            if rel.split("/")[-1].startswith(".") and rel.endswith(".tmp"):
                continue  # a torn atomic write from a killed stage
            files[rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    return stable_hash({k: v["sha256"] for k, v in files.items()}, length=32), files
