"""``python -m supplychain.cli``."""

from supplychain.cli.entry import main

raise SystemExit(main())
