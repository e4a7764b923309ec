"""`python -m agent` is the same program as `pyconsul`."""

from agent.cli import main

raise SystemExit(main())
