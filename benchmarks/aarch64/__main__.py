"""`python -m deeplab_edge.benchmarks.aarch64 --models DIR --out DIR`: see `cli.main`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
