"""`python -m bench.peak FILE ARGS...`: the amp-sync command, then its peak RSS written to FILE.

The peak is VmHWM from /proc/self/status, read as the command ends. getrusage's ru_maxrss would
not do: Linux carries the high-water mark of the process image replaced by exec into it, and a
child started from the benchmark's own (large) process would report the benchmark's peak.
"""

from __future__ import annotations

import sys
from pathlib import Path

from amp_sync.cli import main as amp_sync


def vm_hwm_bytes() -> int:
    """This process's peak resident set size, in bytes (0 where /proc is missing)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="utf-8")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0


def main(argv: list[str]) -> int:
    """Run `amp-sync ARGV[1:]`; write the peak to ARGV[0] whatever the outcome."""
    target, args = Path(argv[0]), argv[1:]
    try:
        return amp_sync(args)
    finally:
        target.write_text(str(vm_hwm_bytes()), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
