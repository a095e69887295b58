"""Resident memory of the running process, for the benchmarks' memory figures (Linux /proc/self/status).

The peak is VmHWM, the high-water mark of the process's own address space: it starts again at exec. A
child's ``ru_maxrss`` does not (Linux carries the parent's high-water mark across fork and exec), so a
child started by a parent that once held more (a benchmark that wrote a checkpoint or a corpus) would
report the parent's peak as its own.
"""

from __future__ import annotations

import resource


def status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or None where the file or field is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """The resident set now, MiB (where /proc is missing: the peak, the closest figure getrusage has)."""
    kib = status_kib("VmRSS")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def peak_rss_mib() -> float:
    """This process's peak resident set since exec (or since :func:`reset_peak`), MiB."""
    kib = status_kib("VmHWM")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def reset_peak() -> bool:
    """Start the peak again from the resident set now (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
