"""`python -m pyconsul.agent` is the same program as `pyconsul`."""

from pyconsul.agent.cli import main

raise SystemExit(main())
