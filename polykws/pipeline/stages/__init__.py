"""The pipeline's stage functions, one module per stage kind: thin glue from one layer's artifacts to the next.

Each function gets a StageContext (its config subset, its upstream folders, an output folder)
and returns a JSON summary that the report and the progress log read. Every figure comes from
calling the real component (scan, fit, adapt, export, TFLM, firmware bench); nothing is
estimated. Paths inside artifacts are relative, so an artifact's content hash does not depend
on where the store lives.

A stage's key hashes the project code its function can import (polykws.pipeline.codekey), so
this package's `__init__` imports nothing: each stage module is keyed on itself and what it
reaches, not on its siblings.
"""
