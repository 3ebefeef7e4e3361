#!/usr/bin/env python3
"""What one durable commit costs this machine's disk, by the shape of its writes.

A redb commit writes each dirty 4 KiB page with its own pwrite, then one fdatasync. Its pages
are copies made by copy-on-write in space freed earlier, so they are scattered over the file;
a Herald commit during a burst writes about 25 of them (strace -e pwrite64,fdatasync on the
writer thread). This prints the median time of "N pages, then fdatasync" for scattered pages,
for contiguous pages, and for contiguous pages in one write, in a sparse (freshly grown) file
and in one already written, so the commit's I/O can be read off against the writer's batch time
(herald_writer_commit_seconds in /metrics).

    scripts/commit-io-cost.py [DIR]     (default: the current directory; its file system)
"""

import os
import random
import sys
import time

PAGE = 4096
FILE_PAGES = 16384  # a 64 MiB file
TRIES = 150


def median_ms(fd, pages, shape):
    times = []
    for _ in range(TRIES):
        base = random.randrange(0, FILE_PAGES - pages)
        started = time.perf_counter()
        if shape == "contiguous, one write":
            os.pwrite(fd, b"x" * (PAGE * pages), base * PAGE)
        else:
            for p in range(pages):
                page = base + p if shape == "contiguous" else random.randrange(0, FILE_PAGES)
                os.pwrite(fd, b"x" * PAGE, page * PAGE)
        os.fdatasync(fd)
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * 1e3


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    path = os.path.join(directory, ".commit-io-cost.tmp")
    try:
        for layout in ("sparse", "written"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            if layout == "sparse":
                os.ftruncate(fd, FILE_PAGES * PAGE)
            else:
                for mib in range(FILE_PAGES * PAGE >> 20):
                    os.pwrite(fd, bytes(1 << 20), mib << 20)
                os.fsync(fd)
            for shape in ("scattered", "contiguous", "contiguous, one write"):
                cells = "  ".join(
                    f"{pages:>2} pages {median_ms(fd, pages, shape):6.3f} ms" for pages in (1, 10, 25)
                )
                print(f"{layout:<7} {shape:<22} {cells}")
            os.close(fd)
    finally:
        if os.path.exists(path):
            os.unlink(path)


if __name__ == "__main__":
    main()
