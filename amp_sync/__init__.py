"""amp_sync: sync a warehouse SQL model to Amplitude user and device properties, only changes.

In a notebook: `amp_sync.preview(sync)`, `amp_sync.send_test(sync, keys=[...])` and
`amp_sync.run(sync)`, where `sync` is a sync file's path or the name of a sync saved in the app.
"""

from __future__ import annotations

__version__ = "0.1.0"

from amp_sync.api import (
    PreviewResult,
    RunResult,
    UnknownSyncError,
    history,
    load_sync,
    preview,
    run,
    send_test,
)

__all__ = [
    "PreviewResult",
    "RunResult",
    "UnknownSyncError",
    "__version__",
    "history",
    "load_sync",
    "preview",
    "run",
    "send_test",
]
