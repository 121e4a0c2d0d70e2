"""polykws: multilingual keyword spotting for Cortex-M.

Layering (data flows one way; nothing imports back up):

    polykws.core  ->  polykws.datasets  ->  polykws.training  ->  polykws.export  ->  polykws.firmware
                                                                                          |
    polykws.pipeline wires the layers into stages; polykws.cli sits on top and is the only package that parses flags.

tests/test_layering.py enforces this with an AST scan of every module's imports.
"""

__version__ = "0.1.0"
