"""The peak memory of a process a benchmark started."""

from __future__ import annotations

import subprocess
import time


def high_water_mb(pid: int) -> float | None:
    """The process's own peak resident memory (VmHWM), in MB; None once it has exited.
    Not its rusage's ru_maxrss: Linux carries that over from the process it was forked
    from, so a command started by bench.ingest (holding 250 MB of prepared requests) was
    reported at 270 MB when it never went above 110."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None  # a zombie: its memory is gone


def wait_for_exit(process: subprocess.Popen, interval_s: float = 0.02) -> float:
    """Wait for `process` to end; its peak resident memory in MB (the high-water mark as last
    read, at most interval_s before it exited)."""
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, high_water_mb(process.pid) or 0.0)
        time.sleep(interval_s)
    return peak
