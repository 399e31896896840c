"""Memory probe: this process's resident set size as the kernel reports it."""

from __future__ import annotations


def rss_kb(field_name: str = "VmRSS") -> int:
    """Resident set size (or `VmHWM`, the peak) of this process [KiB] from /proc/self/status; 0 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
