"""python -m pyconsul.lab == pyconsul-lab."""

import sys

from pyconsul.lab.cli import main

sys.exit(main())
