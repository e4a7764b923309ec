"""python -m lab == pyconsul-lab."""

import sys

from lab.cli import main

sys.exit(main())
