#!/usr/bin/env python3
"""pss.py PID - print the summed Pss, in bytes, of process PID and of its
children: for kvsd the master, its workers and its replicator.

Pss (proportional set size) charges each resident page to the processes
that map it in equal shares, so the sum over every process that maps the
store counts each page of the shared mapping exactly once, plus each
process's private memory.  It is what the operator's tools (smem, the
cgroup's memory.current give or take the page cache) see, unlike
kvsd_shm_used_bytes, which counts only the arena's allocated blocks."""
import os
import sys


def children(pid):
    kids = []
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return kids


def pss_bytes(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    master = int(sys.argv[1])
    total = 0
    for pid in [master] + children(master):
        try:
            total += pss_bytes(pid)
        except OSError:
            pass  # a child that just exited: it holds nothing any more
    print(total)


main()
