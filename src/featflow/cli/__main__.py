"""``python -m featflow.cli``: the command line (as torchrun starts it)."""

from featflow.cli import main

raise SystemExit(main())
