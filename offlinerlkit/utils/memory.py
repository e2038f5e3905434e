"""Process memory settings that make large CPU tensors cheap to allocate.

glibc's `malloc` hands every block above its mmap threshold (at most 32 MiB) straight back to
the OS when it is freed, so the next tensor of that size comes from fresh pages that the
kernel must fault in and zero. COCOA's CQL critics allocate and free several tensors of
hundreds of MB per update; on a 2-core CPU the page faults alone cost about a third of the
update. `keep_freed_memory` tells glibc to serve large blocks from its heap and to keep freed
memory, so they are reused. Numbers are unchanged; the process keeps its peak heap.

Run scripts and benchmarks call it at start-up; set `COCOA_MALLOC_TUNING=0` to opt out. It
does nothing off glibc (macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
_TRIM_THRESHOLD = 1 << 40  # never give freed heap memory back to the OS
_ENV = "COCOA_MALLOC_TUNING"


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed large blocks; True when the setting took effect."""
    if os.environ.get(_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not done:
        log.debug("mallopt refused the large-block settings; the allocator is left as it is")
    return done
