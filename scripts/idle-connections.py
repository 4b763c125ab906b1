#!/usr/bin/env python3
"""Holds N idle RESP connections open (each answered one PING) until killed.

Usage: idle-connections.py PORT N   -- prints "ready N" once every connection is served.
Used by bench-vs-redis.sh to measure GET latency while 10,000 clients sit idle.
"""
import resource
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
for s in conns:
    s.sendall(b"PING\r\n")
for s in conns:
    if s.recv(16) != b"+PONG\r\n":
        sys.exit("a connection was not served")
print(f"ready {len(conns)}", flush=True)
while True:
    time.sleep(3600)
