"""`python -m sdxl_breeder` is the `sdxl-breeder` command."""

from sdxl_breeder.cli import main

raise SystemExit(main())
