"""The bottom layer every other layer may import: errors, atomic I/O and hashing, seeding,
environment paths, worker lifetime and the strict config converter. It imports nothing else from polykws.
"""

from polykws.core.config import from_dict, from_yaml_file, merge_overrides, parse_set_overrides, read_yaml_mapping, to_plain
from polykws.core.env import repo_root, resolve_path, run_context, shared_dir
from polykws.core.errors import ConfigError, PolykwsError
from polykws.core.io import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    json_default,
    sha256_bytes,
    sha256_file,
    stable_hash,
    stable_json,
)
from polykws.core.proc import die_with
from polykws.core.seed import seed_everything

__all__ = [
    "ConfigError",
    "PolykwsError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "die_with",
    "from_dict",
    "json_default",
    "from_yaml_file",
    "merge_overrides",
    "parse_set_overrides",
    "read_yaml_mapping",
    "repo_root",
    "resolve_path",
    "run_context",
    "seed_everything",
    "sha256_bytes",
    "sha256_file",
    "shared_dir",
    "stable_hash",
    "stable_json",
    "to_plain",
]
