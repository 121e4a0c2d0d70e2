"""Package data: the shipped base (`base/`), read through `polykws.core.assets`."""
