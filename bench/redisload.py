#!/usr/bin/env python3
"""redisload.py N FMT VBYTES - write N SET commands in Redis protocol (RESP)
to stdout, for `redis-cli --pipe`.  Key i is FMT % i, the value VBYTES x's."""
import sys

n, fmt, vbytes = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
val = b"x" * vbytes
out = sys.stdout.buffer
chunk = []
for i in range(n):
    k = (fmt % i).encode()
    chunk.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, vbytes, val))
    if len(chunk) == 10000:
        out.write(b"".join(chunk)); chunk = []
out.write(b"".join(chunk))
