"""Keep the C allocator's large buffers between training steps.

glibc's ``malloc`` serves blocks above a threshold (128 KiB, rising
dynamically up to 32 MiB) with ``mmap`` and gives them back with ``munmap``;
freed memory at the top of the heap is returned once more than 128 KiB is
free. A training step allocates and frees the same large activation and
gradient buffers every time, so each step maps fresh pages and takes a
minor page fault per 4 KiB page touched: on this project's 2-core machine,
1.2 million faults and 3 s of kernel time in a 7 s epoch of the conv model
(benchmarks/results/speed.md). PyTorch's CPU performance guide recommends a
caching allocator (jemalloc, tcmalloc) for the same reason.

:func:`tune_allocator` sets the two thresholds with ``mallopt`` so that
blocks up to 32 MiB come from the heap and freed memory stays there (up to
2 GiB) for the next step. The cost: the process keeps up to that much freed
memory instead of returning it to the system. It does nothing when the C
library is not glibc, when a caching allocator is preloaded, when the user
set glibc's own malloc variables, or when ``AEKIT_TUNE_ALLOCATOR=0``.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest accepted value on 64-bit systems (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: the largest value it can express (2 GiB)
OFF = "AEKIT_TUNE_ALLOCATOR"
CACHING_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_status: str | None = None


def glibc_version() -> str | None:
    """glibc's version string (``"glibc 2.36"``), or None on another C library."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None


def why_not_tuned() -> str | None:
    """The reason to leave the allocator alone in this process, or None to tune it."""
    if os.environ.get(OFF, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"turned off by {OFF}"
    if glibc_version() is None:
        return "the C library is not glibc"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in CACHING_ALLOCATORS):
        return "a caching allocator is preloaded"
    if any(key.startswith("MALLOC_") for key in os.environ) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "glibc's malloc settings were given in the environment"
    return None


def tune_allocator() -> str:
    """Set glibc's mmap and trim thresholds once per process (see the module's docstring).

    Returns
    -------
    str
        What happened: ``"tuned"``, or why the allocator was left alone.
    """
    global _status
    if _status is None:
        reason = why_not_tuned()
        if reason is None:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            reason = "tuned" if ok else "glibc refused the settings"
        _status = reason
    return _status
