#!/usr/bin/env python3
"""Holds N idle RESP connections open (each answered one PING) until killed.

Usage: idle-connections.py PORT N [SOURCE_IP]   -- prints "ready N" once every connection is
served. SOURCE_IP (another loopback address, default 127.0.0.1) gives the connections a port
range of their own, so closed ones lingering in TIME_WAIT cannot exhaust the benchmark's.
Used by bench-vs-redis.sh to measure GET latency while 10,000 clients sit idle.
"""
import resource
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
source = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    conns.append(s)
for s in conns:
    s.sendall(b"PING\r\n")
for s in conns:
    if s.recv(16) != b"+PONG\r\n":
        sys.exit("a connection was not served")
print(f"ready {len(conns)}", flush=True)
while True:
    time.sleep(3600)
