"""polykws: multilingual keyword spotting for Cortex-M.

Layering (data flows one way; nothing imports back up):

    polykws.core  ->  polykws.datasets  ->  polykws.training  ->  polykws.export  ->  polykws.firmware
                                                                                          |
    polykws.cli / polykws.pipeline sit on top and are the only modules that parse flags or wire stages.

tests/test_layering.py enforces this with an AST scan of every module's imports.
"""

__version__ = "0.1.0"
