"""amp_sync: sync a warehouse SQL model to Amplitude user and device properties, only changes."""

from __future__ import annotations

__version__ = "0.1.0"
