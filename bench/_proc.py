"""What the kernel says about a process: CPU time and resident memory (Linux /proc)."""

from __future__ import annotations

import os
import resource
import time

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_clock(pid: int) -> int:
    """The clock id of `pid`'s CPU time, all its threads (Linux: `clock_getcpuclockid`,
    which Python does not wrap, is `MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`)."""
    return ((~pid) << 3) | 2


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far (threads that ended too).

    Read from the process's CPU-time clock, to the nanosecond. /proc/<pid>/stat gives the
    same total in clock ticks (10 ms), which was up to 3% of a 50-stream run's 0.35 s.
    """
    try:
        return time.clock_gettime(_cpu_clock(pid))
    except OSError:  # not Linux, or not ours to read: the ticks then
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) may hold spaces: count fields after its closing paren.
        fields = stat[stat.rindex(b")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / _TICKS


def runqueue_wait_seconds(pid: int | str = "self") -> float:
    """Time the main thread of `pid` spent runnable but waiting for a CPU (other work
    on its core): wall-clock figures of a run with much of it are not to be trusted."""
    with open(f"/proc/{pid}/schedstat", "rb") as f:
        return int(f.read().split()[1]) / 1e9


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other machines while ours wanted it, all cores
    so far (`steal` in /proc/stat). Other guests on the same host also compete for its
    caches and memory, which CPU time per token feels: a run with much steal is suspect."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()  # "cpu  user nice system idle iowait irq softirq steal"
    return int(fields[8]) / _TICKS if len(fields) > 8 else 0.0


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` now."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def raise_fd_limit() -> int:
    """Lift this process's open-file limit to the hard limit (2000 streams need 2000+ fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
