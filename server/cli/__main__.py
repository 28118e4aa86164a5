"""`python -m sdxl_breeder.cli` is the `sdxl-breeder` command."""

from sdxl_breeder.cli import main

raise SystemExit(main())
