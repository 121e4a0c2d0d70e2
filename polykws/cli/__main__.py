"""`python -m polykws.cli` runs the console script."""

import sys

from polykws.cli import main

sys.exit(main())
