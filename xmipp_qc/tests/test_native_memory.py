"""release_memory gives freed heap memory back to the system (glibc), in a fresh process.

150,000 blocks of 2 KB are allocated and all but every 100th freed: the
C allocator keeps the freed ~300 MB resident (live blocks are scattered
through its heap) until ``release_memory`` trims it.
"""

import ctypes.util
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import re
    from xmipp_qc.native_memory import release_memory

    def rss():
        status = open("/proc/self/status").read()
        return int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1)) // 1024

    base = rss()
    blocks = [bytearray(2000) for _ in range(150_000)]
    keep = blocks[::100]
    del blocks
    before = rss()
    release_memory()
    print(base, before, rss(), len(keep))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not ctypes.util.find_library("c"),
                    reason="needs Linux's /proc and a C library with malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         check=True).stdout.split()
    base, before, after, kept = (int(v) for v in out)
    assert kept == 1500
    assert before - base > 200, "the freed blocks did not stay resident: nothing to test"
    assert after - base < 60, f"still {after - base} MB above the start after release"
