"""`python -m casella`: the same entry point as the `casella` console script."""

from casella.cli import main

raise SystemExit(main())
