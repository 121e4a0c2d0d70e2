"""Errors every layer raises; the CLI turns a PolykwsError into one clear line."""

from __future__ import annotations


class PolykwsError(Exception):
    """Base class for errors the CLI reports as one clear line (no traceback)."""


class ConfigError(PolykwsError, ValueError):
    """A configuration value is invalid."""
