"""``python -m supplychain.cli``."""

from supplychain.cli.main import main

raise SystemExit(main())
