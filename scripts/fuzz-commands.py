#!/usr/bin/env python3
"""Sends random commands with awkward arguments to a RESP server and reports any that closed
the connection (a handler that panicked) or left it without a reply.

Usage: fuzz-commands.py PORT [N] [SEED] [PEER_PORT]   (N commands, default 20000; loopback only)
Every command is one that a client may send; the arguments come from a pool of edge values
(empty, negative, huge, float specials, option words) and of keys of each type. A reply that
takes over a second (a BLOCK) is not a failure: the script reconnects and goes on. It exits 1
if any command lost the connection or got an error reply without an upper-case code first
(`ERR`, `WRONGTYPE` …), after printing those commands. With PEER_PORT (a
redis-server), every command goes to both, and the commands where one answered an error and
the other did not are listed too (a list to read, not a failure: docs/COMPATIBILITY.md names
the intended differences), and so are the deterministic reads (GET, HGET, HLEN, …) whose
replies differ in value. With RESP3=1 in the environment both speak RESP3, and replies
whose types differ (a map against an array, say) are listed as well.
"""
import os
import random
import socket
import sys

port = int(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
peer_port = int(sys.argv[4]) if len(sys.argv) > 4 else None
# RESP3=1: both connections say HELLO 3 first, and reply types are compared too.
resp3 = os.environ.get("RESP3") == "1"

# Commands that end or repurpose the connection on purpose are left out.
SKIP = {"quit", "shutdown", "subscribe", "psubscribe", "client|kill", "reset", "hello"}
# Transactions queue the ECHO that marks a command's last reply: tested on their own.
SKIP |= {"multi", "exec", "discard"}
MARK = "fuzz-commands: end of replies"
WORDS = [
    "", "0", "1", "-1", "2", "10", "100", "-100", "9223372036854775807",
    "-9223372036854775808", "9223372036854775808", "18446744073709551616", "1.5", "-1.5",
    "inf", "-inf", "+inf", "nan", "1e308", "1e309", "0x10", " 1", "1 ", "abc", "*", "$", "-",
    "+", "0-0", "0-1", "1-0", "18446744073709551615-18446744073709551615", "$", ">", "*",
    "NX", "XX", "GT", "LT", "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "GET", "PERSIST", "COUNT",
    "MATCH", "TYPE", "BLOCK", "STREAMS", "GROUP", "MAXLEN", "MINID", "LIMIT", "~", "=",
    "NOMKSTREAM", "IDLE", "TIME", "RETRYCOUNT", "FORCE", "JUSTID", "MKSTREAM", "ENTRIESREAD",
    "FULL", "WITHVALUES", "SAMPLES", "REPLACE", "DB", "NOACK", "string", "hash", "stream",
    "s", "h", "x", "g", "c", "missing", "a" * 70000, "bh", "f7", "f299",
]


# Well-formed commands, each mutated a little: random words alone rarely reach deep options.
TEMPLATES = [
    "SET s v EX 10 NX GET", "SET s v PXAT 99999999999999 XX KEEPTTL", "GETEX s PXAT 100",
    "GETEX s PERSIST", "SETRANGE s 10 v", "GETRANGE s -1 5", "INCRBYFLOAT s 1e308",
    "INCRBY s 9223372036854775807", "APPEND s v", "MSETNX s v t w", "PSETEX s 10 v",
    "HSET h f v g w", "HINCRBY h f 1", "HINCRBYFLOAT h f 1.5", "HRANDFIELD h -5 WITHVALUES",
    "HSCAN h 0 MATCH * COUNT 10", "HMGET h f g", "HSTRLEN h f", "HSETNX h f v",
    "SCAN 0 MATCH * COUNT 10 TYPE string", "KEYS *", "RANDOMKEY", "OBJECT ENCODING s",
    "MEMORY USAGE s SAMPLES 0", "COPY s d DB 0 REPLACE", "RENAME s s", "RENAMENX s h",
    "EXPIRE s 10 NX", "PEXPIREAT s 1 GT", "EXPIRETIME s", "TOUCH s h x", "TYPE x",
    "XADD x MAXLEN ~ 10 * f v", "XADD x NOMKSTREAM MINID = 0-1 LIMIT 5 * f v",
    "XADD x * f v g w", "XLEN x", "XRANGE x - + COUNT 10", "XREVRANGE x + - COUNT 2",
    "XREAD COUNT 10 BLOCK 10 STREAMS x 0-0", "XREAD STREAMS x s 0 0",
    "XREADGROUP GROUP g c COUNT 10 BLOCK 10 NOACK STREAMS x >",
    "XREADGROUP GROUP g c STREAMS x 0", "XACK x g 0-1 1-0", "XPENDING x g",
    "XPENDING x g IDLE 10 - + 10 c", "XCLAIM x g c 0 0-1 IDLE 10 RETRYCOUNT 2 FORCE JUSTID",
    "XCLAIM x g c 0 1-1 TIME 5 LASTID 0-1", "XAUTOCLAIM x g c 0 0-0 COUNT 10 JUSTID",
    "XINFO STREAM x FULL COUNT 10", "XINFO GROUPS x", "XINFO CONSUMERS x g",
    "XTRIM x MINID ~ 0-1 LIMIT 10", "XTRIM x MAXLEN = 0", "XDEL x 0-1",
    "XGROUP CREATE x g2 $ MKSTREAM ENTRIESREAD 3", "XGROUP SETID x g $ ENTRIESREAD 3",
    "XGROUP CREATECONSUMER x g c", "XGROUP DELCONSUMER x g c", "XGROUP DESTROY x g2",
    "CLIENT SETNAME x", "CLIENT LIST TYPE normal", "CLIENT LIST ID 1 2", "CLIENT NO-EVICT on",
    "CLIENT SETINFO LIB-NAME x", "CONFIG GET *", "CONFIG SET timeout 0",
    "CONFIG SET maxmemory-policy allkeys-lru", "COMMAND GETKEYS SET a b", "COMMAND INFO get",
    "COMMAND LIST FILTERBY PATTERN x*", "INFO keyspace stats", "PUBSUB NUMSUB a b",
    "PUBSUB CHANNELS *", "PUBLISH c m", "ACL WHOAMI", "SELECT 0", "WATCH s", "UNWATCH",
    "ECHO x", "TIME", "LASTSAVE", "ROLE", "DBSIZE",
    "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUBSTR s 0 -1", "GETDEL s", "DEL s h x",
    # `bh` starts with 300 fields: a large hash (quipu indexes it past 128).
    "HSET bh f1 v f400 w", "HSET bh f7 longer-value", "HGET bh f150", "HMGET bh f0 f299 no",
    "HDEL bh f2 f3 f999", "HINCRBY bh f5 1", "HINCRBYFLOAT bh n 2.5", "HSETNX bh f7 v",
    "HLEN bh", "HEXISTS bh f9", "HSTRLEN bh f10", "HGETALL bh", "HKEYS bh",
    "HRANDFIELD bh 5 WITHVALUES", "HSCAN bh 0 MATCH f1* COUNT 5", "OBJECT ENCODING bh",
    "TYPE bh", "RENAME bh bh2", "COPY bh bh3",
]


def from_template():
    args = rng.choice(TEMPLATES).split()
    for j in range(1, len(args)):
        if rng.random() < 0.25:
            args[j] = pick_arg()
    r = rng.random()
    if r < 0.15:
        del args[rng.randrange(1, len(args)) if len(args) > 1 else 0:]
    elif r < 0.3:
        args += [pick_arg() for _ in range(rng.randint(1, 3))]
    return args or ["PING"]


def pick_arg():
    r = rng.random()
    if r < 0.08:
        return str(rng.randint(-(1 << 64), 1 << 64))
    if r < 0.12:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))).decode("latin-1")
    return rng.choice(WORDS)


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode("latin-1") if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    def __init__(self, to=None):
        self.s = socket.create_connection(("127.0.0.1", to or port))
        self.s.settimeout(1.0)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        i = self.buf.index(b"\r\n")
        l, self.buf = self.buf[:i], self.buf[i + 2:]
        return l

    def exact(self, k):
        while len(self.buf) < k + 2:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:k], self.buf[k + 2:]
        return out

    def reply(self):
        """The reply as (type byte, text or list)."""
        l = self.line()
        t, rest = l[:1], l[1:]
        if t in b"+-:,#_(":
            return (t, rest)
        if t in b"$=!":
            k = int(rest)
            return (t, self.exact(k) if k >= 0 else None)
        if t in b"*~>%|":
            k = int(rest)
            return (t, [self.reply() for _ in range(max(k, 0) * (2 if t in b"%|" else 1))])
        raise ValueError(f"bad reply line {l!r}")

    def call(self, args):
        self.s.sendall(encode(args))
        return self.reply()

    def call_all(self, args):
        """Every reply to `args` (UNSUBSCRIBE answers once per channel), up to an ECHO sent
        behind it."""
        self.s.sendall(encode(args) + encode(["ECHO", MARK]))
        out = []
        while True:
            r = self.reply()
            if r == (b"$", MARK.encode()):
                return out
            out.append(r)


def seed(c):
    big = ["HSET", "bh"] + [x for i in range(300) for x in (f"f{i}", str(i))]
    for args in (["SET", "s", "v"], ["HSET", "h", "f", "1"], ["XADD", "x", "*", "f", "v"], big):
        c.call(args)
    try:
        c.call(["XGROUP", "CREATE", "x", "g", "0"])
    except Exception:
        pass


def is_error(r):
    return r[0] in (b"-", b"!")


def error_kind(r):
    text = r[1] if isinstance(r[1], bytes) else b""
    return text.split(b" ", 1)[0].decode("latin-1")


def shape(r):
    """The reply's types without its values: a list of distinct element shapes per aggregate."""
    t, v = r
    if isinstance(v, list):
        inner = sorted({shape(x) for x in v})
        return t.decode() + "[" + ",".join(inner) + "]"
    # A RESP2 nil and an empty answer are both "nothing": Redis and quipu pick either.
    return t.decode()


def connect():
    conns = [Conn()] + ([Conn(peer_port)] if peer_port else [])
    for k in conns:
        if resp3:
            k.call(["HELLO", "3"])
        k.call(["FLUSHALL"])
        seed(k)
    return conns


c = Conn()
names = []
c.s.sendall(encode(["COMMAND", "LIST"]))
k = int(c.line()[1:])
for _ in range(k):
    size = int(c.line()[1:])
    names.append(c.buf[:size].decode())
    c.exact(size)
names = [x for x in names if x not in SKIP]
if peer_port:
    # Redis 7.0 loops over a huge negative HRANDFIELD count for minutes (7.2 caps it).
    names = [x for x in names if x != "hrandfield"]
    TEMPLATES[:] = [t for t in TEMPLATES if not t.startswith("HRANDFIELD")]
# Reads whose whole reply must match the peer's (the same commands ran on both): field and
# key orders and random picks are left out, and XLEN too (quipu trims whole segments).
VALUE_COMPARED = {"GET", "STRLEN", "GETRANGE", "EXISTS", "TYPE", "HGET", "HMGET", "HLEN",
                  "HEXISTS", "HSTRLEN", "HINCRBY", "HSETNX", "HDEL"}
conns = connect()
lost, blocked, differ, badcode, valdiff = [], 0, {}, {}, {}
for i in range(n):
    if rng.random() < 0.6:
        args = from_template()
    else:
        head = rng.choice(names).split("|")
        args = head + [pick_arg() for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 8]))]
        if rng.random() < 0.3 and len(args) > len(head):
            args[len(head)] = rng.choice(["s", "h", "x", "missing"])
    try:
        replies = []
        for j, k in enumerate(conns):
            try:
                replies.append(k.call_all(args))
            except (ConnectionError, OSError) as e:
                if j == 0 and not isinstance(e, socket.timeout):
                    lost.append((args, str(e)))
                raise
        for r in replies[0]:
            code = error_kind(r)
            if is_error(r) and not (code.isascii() and code.isupper() and code.isalpha()):
                badcode.setdefault(code, (args, r))
        if len(replies) == 2:
            a, b = replies
            ka = [(is_error(r), error_kind(r) if is_error(r) else "") for r in a]
            kb = [(is_error(r), error_kind(r) if is_error(r) else "") for r in b]
            if ka == kb and resp3 and not any(e for e, _ in ka):
                ka, kb = [shape(r) for r in a], [shape(r) for r in b]
            if ka != kb:
                key = (args[0].upper(), str(ka), str(kb))
                differ.setdefault(key, (args, a, b))
                # The two keyspaces may now differ: start both again from the seed.
                conns = connect()
            elif args[0].upper() in VALUE_COMPARED and a != b:
                valdiff.setdefault(args[0].upper(), (args, a, b))
                conns = connect()
        if i % 100 == 0:
            for k in conns:
                k.call(["FLUSHALL"])
                seed(k)
    except socket.timeout:
        blocked += 1
        conns = connect()
    except (ConnectionError, OSError):
        conns = connect()


def show(args):
    return [a if len(a) < 40 else a[:20] + f"...({len(a)})" for a in args]


print(f"{n} commands, {blocked} blocked past 1 s, {len(lost)} lost the connection")
for args, e in lost[:40]:
    print(" ", show(args), e)
if badcode:
    print(f"{len(badcode)} error replies without an upper-case code (ERR, WRONGTYPE …):")
    for args, r in badcode.values():
        print(" ", show(args), repr(r)[:150])
if peer_port:
    print(f"{len(differ)} kinds of error/no-error differences from the peer:")
    for args, a, b in differ.values():
        print(" ", show(args), "\n    quipu:", repr(a)[:150], "\n    peer: ", repr(b)[:150])
    print(f"{len(valdiff)} commands whose replies differed from the peer's in value:")
    for args, a, b in valdiff.values():
        print(" ", show(args), "\n    quipu:", repr(a)[:150], "\n    peer: ", repr(b)[:150])
sys.exit(1 if lost or badcode else 0)
