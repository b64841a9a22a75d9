"""`python -m amp_sync` is the `amp-sync` command."""

from __future__ import annotations

import sys

from amp_sync.cli import main

sys.exit(main())
