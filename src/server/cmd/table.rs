//! The commands quipu runs, as Redis 7.0.15's `COMMAND INFO` describes them (CLIENT SETINFO
//! from Redis 7.2, which added it): arity, flags, the legacy key range and the ACL
//! categories. One table serves the arity check in `exec`, the subcommand checks of the
//! container commands, the ACL's key positions and categories, and `COMMAND` itself, so a
//! command added in one place cannot be missing from the others.
//!
//! The rows were taken from `redis-server` 7.0.15's reply to `COMMAND INFO`; a subcommand's
//! row is named `container|sub`, as Redis names it.

use std::sync::LazyLock;

use bytes::Bytes;
use foldhash::fast::FixedState;
use hashbrown::HashMap;

/// One command or subcommand, as `COMMAND INFO` reports it.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Lower case; `container|sub` for a subcommand.
    pub name: &'static str,
    /// The number of arguments with the name, or minus the least number.
    pub arity: i32,
    /// Redis's command flags (`readonly`, `write`, `fast`, …).
    pub flags: &'static [&'static str],
    /// The first key's position (0: none), the last one's (negative: from the end) and the
    /// step between keys.
    pub first: i32,
    /// See `first`.
    pub last: i32,
    /// See `first`.
    pub step: i32,
    /// ACL categories, without the `@`.
    pub categories: &'static [&'static str],
}

/// Every command and subcommand quipu runs, sorted by name (a test checks it).
#[rustfmt::skip]
pub(crate) static COMMANDS: &[Spec] = &[
    Spec { name: "acl", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "acl|users", arity: 2, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "acl|whoami", arity: 2, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "append", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "auth", arity: -2, flags: &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "bgsave", arity: -1, flags: &["admin", "noscript", "no_async_loading"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "client", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "client|getname", arity: 2, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "client|id", arity: 2, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "client|info", arity: 2, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "client|kill", arity: -3, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous", "connection"] },
    Spec { name: "client|list", arity: -2, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous", "connection"] },
    Spec { name: "client|no-evict", arity: 3, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous", "connection"] },
    Spec { name: "client|setinfo", arity: 4, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "client|setname", arity: 3, flags: &["noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "command", arity: -1, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "command|count", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "command|getkeys", arity: -4, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "command|info", arity: -2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "command|list", arity: -2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "connection"] },
    Spec { name: "config", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "config|get", arity: -3, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "config|resetstat", arity: 2, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "config|set", arity: -4, flags: &["admin", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "copy", arity: -3, flags: &["write", "denyoom"], first: 1, last: 2, step: 1, categories: &["keyspace", "write", "slow"] },
    Spec { name: "dbsize", arity: 1, flags: &["readonly", "fast"], first: 0, last: 0, step: 0, categories: &["keyspace", "read", "fast"] },
    Spec { name: "decr", arity: 2, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "decrby", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "del", arity: -2, flags: &["write"], first: 1, last: -1, step: 1, categories: &["keyspace", "write", "slow"] },
    Spec { name: "discard", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "transaction"] },
    Spec { name: "echo", arity: 2, flags: &["loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "exec", arity: 1, flags: &["noscript", "loading", "stale", "skip_slowlog"], first: 0, last: 0, step: 0, categories: &["slow", "transaction"] },
    Spec { name: "exists", arity: -2, flags: &["readonly", "fast"], first: 1, last: -1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "expire", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "expireat", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "expiretime", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "flushall", arity: -1, flags: &["write"], first: 0, last: 0, step: 0, categories: &["keyspace", "write", "slow", "dangerous"] },
    Spec { name: "flushdb", arity: -1, flags: &["write"], first: 0, last: 0, step: 0, categories: &["keyspace", "write", "slow", "dangerous"] },
    Spec { name: "get", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "string", "fast"] },
    Spec { name: "getdel", arity: 2, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "getex", arity: -2, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "getrange", arity: 4, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "string", "slow"] },
    Spec { name: "getset", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "hdel", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hello", arity: -1, flags: &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "hexists", arity: 3, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "hash", "fast"] },
    Spec { name: "hget", arity: 3, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "hash", "fast"] },
    Spec { name: "hgetall", arity: 2, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "hash", "slow"] },
    Spec { name: "hincrby", arity: 4, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hincrbyfloat", arity: 4, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hkeys", arity: 2, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "hash", "slow"] },
    Spec { name: "hlen", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "hash", "fast"] },
    Spec { name: "hmget", arity: -3, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "hash", "fast"] },
    Spec { name: "hmset", arity: -4, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hrandfield", arity: -2, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "hash", "slow"] },
    Spec { name: "hscan", arity: -3, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "hash", "slow"] },
    Spec { name: "hset", arity: -4, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hsetnx", arity: 4, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "hash", "fast"] },
    Spec { name: "hstrlen", arity: 3, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "hash", "fast"] },
    Spec { name: "hvals", arity: 2, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "hash", "slow"] },
    Spec { name: "incr", arity: 2, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "incrby", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "incrbyfloat", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "info", arity: -1, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow", "dangerous"] },
    Spec { name: "keys", arity: 2, flags: &["readonly"], first: 0, last: 0, step: 0, categories: &["keyspace", "read", "slow", "dangerous"] },
    Spec { name: "lastsave", arity: 1, flags: &["loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["admin", "fast", "dangerous"] },
    Spec { name: "memory", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "memory|help", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "memory|usage", arity: -3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["read", "slow"] },
    Spec { name: "mget", arity: -2, flags: &["readonly", "fast"], first: 1, last: -1, step: 1, categories: &["read", "string", "fast"] },
    Spec { name: "mset", arity: -3, flags: &["write", "denyoom"], first: 1, last: -1, step: 2, categories: &["write", "string", "slow"] },
    Spec { name: "msetnx", arity: -3, flags: &["write", "denyoom"], first: 1, last: -1, step: 2, categories: &["write", "string", "slow"] },
    Spec { name: "multi", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "transaction"] },
    Spec { name: "object", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "object|encoding", arity: 3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["keyspace", "read", "slow"] },
    Spec { name: "object|freq", arity: 3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["keyspace", "read", "slow"] },
    Spec { name: "object|help", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["keyspace", "slow"] },
    Spec { name: "object|idletime", arity: 3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["keyspace", "read", "slow"] },
    Spec { name: "object|refcount", arity: 3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["keyspace", "read", "slow"] },
    Spec { name: "persist", arity: 2, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "pexpire", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "pexpireat", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "pexpiretime", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "ping", arity: -1, flags: &["fast"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "psetex", arity: 4, flags: &["write", "denyoom"], first: 1, last: 1, step: 1, categories: &["write", "string", "slow"] },
    Spec { name: "psubscribe", arity: -2, flags: &["pubsub", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "pttl", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "publish", arity: 3, flags: &["pubsub", "loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["pubsub", "fast"] },
    Spec { name: "pubsub", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "pubsub|channels", arity: -2, flags: &["pubsub", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "pubsub|help", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "pubsub|numpat", arity: 2, flags: &["pubsub", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "pubsub|numsub", arity: -2, flags: &["pubsub", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "punsubscribe", arity: -1, flags: &["pubsub", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "quit", arity: -1, flags: &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "randomkey", arity: 1, flags: &["readonly"], first: 0, last: 0, step: 0, categories: &["keyspace", "read", "slow"] },
    Spec { name: "rename", arity: 3, flags: &["write"], first: 1, last: 2, step: 1, categories: &["keyspace", "write", "slow"] },
    Spec { name: "renamenx", arity: 3, flags: &["write", "fast"], first: 1, last: 2, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "reset", arity: 1, flags: &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "role", arity: 1, flags: &["noscript", "loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["admin", "fast", "dangerous"] },
    Spec { name: "save", arity: 1, flags: &["admin", "noscript", "no_async_loading", "no_multi"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "scan", arity: -2, flags: &["readonly"], first: 0, last: 0, step: 0, categories: &["keyspace", "read", "slow"] },
    Spec { name: "select", arity: 2, flags: &["loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["fast", "connection"] },
    Spec { name: "set", arity: -3, flags: &["write", "denyoom"], first: 1, last: 1, step: 1, categories: &["write", "string", "slow"] },
    Spec { name: "setex", arity: 4, flags: &["write", "denyoom"], first: 1, last: 1, step: 1, categories: &["write", "string", "slow"] },
    Spec { name: "setnx", arity: 3, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "string", "fast"] },
    Spec { name: "setrange", arity: 4, flags: &["write", "denyoom"], first: 1, last: 1, step: 1, categories: &["write", "string", "slow"] },
    Spec { name: "shutdown", arity: -1, flags: &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], first: 0, last: 0, step: 0, categories: &["admin", "slow", "dangerous"] },
    Spec { name: "strlen", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "string", "fast"] },
    Spec { name: "subscribe", arity: -2, flags: &["pubsub", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "substr", arity: 4, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "string", "slow"] },
    Spec { name: "time", arity: 1, flags: &["loading", "stale", "fast"], first: 0, last: 0, step: 0, categories: &["fast"] },
    Spec { name: "touch", arity: -2, flags: &["readonly", "fast"], first: 1, last: -1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "ttl", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "type", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["keyspace", "read", "fast"] },
    Spec { name: "unlink", arity: -2, flags: &["write", "fast"], first: 1, last: -1, step: 1, categories: &["keyspace", "write", "fast"] },
    Spec { name: "unsubscribe", arity: -1, flags: &["pubsub", "noscript", "loading", "stale"], first: 0, last: 0, step: 0, categories: &["pubsub", "slow"] },
    Spec { name: "unwatch", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], first: 0, last: 0, step: 0, categories: &["fast", "transaction"] },
    Spec { name: "watch", arity: -2, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], first: 1, last: -1, step: 1, categories: &["fast", "transaction"] },
    Spec { name: "xack", arity: -4, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "stream", "fast"] },
    Spec { name: "xadd", arity: -5, flags: &["write", "denyoom", "fast"], first: 1, last: 1, step: 1, categories: &["write", "stream", "fast"] },
    Spec { name: "xautoclaim", arity: -6, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "stream", "fast"] },
    Spec { name: "xclaim", arity: -6, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "stream", "fast"] },
    Spec { name: "xdel", arity: -3, flags: &["write", "fast"], first: 1, last: 1, step: 1, categories: &["write", "stream", "fast"] },
    Spec { name: "xgroup", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "xgroup|create", arity: -5, flags: &["write", "denyoom"], first: 2, last: 2, step: 1, categories: &["write", "stream", "slow"] },
    Spec { name: "xgroup|createconsumer", arity: 5, flags: &["write", "denyoom"], first: 2, last: 2, step: 1, categories: &["write", "stream", "slow"] },
    Spec { name: "xgroup|delconsumer", arity: 5, flags: &["write"], first: 2, last: 2, step: 1, categories: &["write", "stream", "slow"] },
    Spec { name: "xgroup|destroy", arity: 4, flags: &["write"], first: 2, last: 2, step: 1, categories: &["write", "stream", "slow"] },
    Spec { name: "xgroup|help", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["stream", "slow"] },
    Spec { name: "xgroup|setid", arity: -5, flags: &["write"], first: 2, last: 2, step: 1, categories: &["write", "stream", "slow"] },
    Spec { name: "xinfo", arity: -2, flags: &[], first: 0, last: 0, step: 0, categories: &["slow"] },
    Spec { name: "xinfo|consumers", arity: 4, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xinfo|groups", arity: 3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xinfo|help", arity: 2, flags: &["loading", "stale"], first: 0, last: 0, step: 0, categories: &["stream", "slow"] },
    Spec { name: "xinfo|stream", arity: -3, flags: &["readonly"], first: 2, last: 2, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xlen", arity: 2, flags: &["readonly", "fast"], first: 1, last: 1, step: 1, categories: &["read", "stream", "fast"] },
    Spec { name: "xpending", arity: -3, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xrange", arity: -4, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xread", arity: -4, flags: &["readonly", "blocking", "movablekeys"], first: 0, last: 0, step: 0, categories: &["read", "stream", "slow", "blocking"] },
    Spec { name: "xreadgroup", arity: -7, flags: &["write", "blocking", "movablekeys"], first: 0, last: 0, step: 0, categories: &["write", "stream", "slow", "blocking"] },
    Spec { name: "xrevrange", arity: -4, flags: &["readonly"], first: 1, last: 1, step: 1, categories: &["read", "stream", "slow"] },
    Spec { name: "xtrim", arity: -4, flags: &["write"], first: 1, last: 1, step: 1, categories: &["write", "stream", "slow"] },
];

/// The row of `name` (lower case; `container|sub` for a subcommand).
pub(crate) fn spec(name: &str) -> Option<&'static Spec> {
    // Every command looks itself up here before it runs: one hash and one comparison, where a
    // binary search over the table cost eight comparisons (perf: 3 % of the server's samples
    // under `PING -P 16`, and as much again in `memcmp`).
    static BY_NAME: LazyLock<HashMap<&'static str, &'static Spec, FixedState>> =
        LazyLock::new(|| {
            let mut m = HashMap::with_capacity_and_hasher(COMMANDS.len(), FixedState::default());
            m.extend(COMMANDS.iter().map(|s| (s.name, s)));
            m
        });
    BY_NAME.get(name).copied()
}

/// The row of a container's subcommand (`client`, `id`; any case).
/// `None` at once for a command that has no subcommands (`GET k`), without building a name.
pub(crate) fn subcommand(container: &str, sub: &[u8]) -> Option<&'static Spec> {
    let container = container.to_ascii_lowercase();
    let at = COMMANDS
        .binary_search_by(|s| s.name.cmp(container.as_str()))
        .ok()?;
    // A container's subcommands follow its row in the sorted table.
    let next = COMMANDS.get(at + 1)?;
    if !next
        .name
        .strip_prefix(container.as_str())
        .is_some_and(|rest| rest.starts_with('|'))
    {
        return None;
    }
    spec(&format!(
        "{container}|{}",
        String::from_utf8_lossy(sub).to_ascii_lowercase()
    ))
}

/// The top-level commands, in table order.
pub(crate) fn top_level() -> impl Iterator<Item = &'static Spec> {
    COMMANDS.iter().filter(|s| !s.name.contains('|'))
}

/// The subcommands of `container`, in table order.
pub(crate) fn subcommands_of(container: &'static str) -> impl Iterator<Item = &'static Spec> {
    COMMANDS.iter().filter(move |s| {
        s.name
            .strip_prefix(container)
            .is_some_and(|rest| rest.starts_with('|'))
    })
}

/// Whether `argc` arguments (the name included) fit `arity` as Redis counts it.
pub(crate) fn arity_fits(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// The positions of a command's keys in `args` (`args[0]` its name), as Redis's
/// `COMMAND GETKEYS` finds them: the legacy range of the command, or of the subcommand for a
/// container (`XGROUP CREATE key …`), and after `STREAMS` for XREAD and XREADGROUP. Empty for
/// a command without keys or one quipu does not know. The caller checks the arity first.
pub(crate) fn key_positions(args: &[Bytes]) -> Vec<usize> {
    let Some(name) = args.first() else {
        return Vec::new();
    };
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let Some(mut s) = spec(&name) else {
        return Vec::new();
    };
    if name == "xread" || name == "xreadgroup" {
        // XREAD … STREAMS k1 k2 … id1 id2 …: the first half of what follows STREAMS.
        let Some(at) = args.iter().position(|a| a.eq_ignore_ascii_case(b"streams")) else {
            return Vec::new();
        };
        let n = (args.len() - at - 1) / 2;
        return (at + 1..=at + n).collect();
    }
    if s.first == 0
        && let Some(sub) = args.get(1).and_then(|a| subcommand(&name, a))
    {
        s = sub;
    }
    range_keys(s, args.len())
}

/// The keys of a legacy range (`first`, `last`, `step`) among `argc` arguments.
fn range_keys(s: &Spec, argc: usize) -> Vec<usize> {
    let (Ok(first), Ok(step)) = (usize::try_from(s.first), usize::try_from(s.step)) else {
        return Vec::new();
    };
    if first == 0 || step == 0 {
        return Vec::new();
    }
    let last = match usize::try_from(s.last) {
        Ok(last) => last,
        // Counted from the end: -1 is the last argument.
        Err(_) => match argc.checked_sub(s.last.unsigned_abs() as usize) {
            Some(last) => last,
            None => return Vec::new(),
        },
    };
    (first..=last.min(argc.saturating_sub(1)))
        .step_by(step)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A command split at spaces, for tests here and in the ACL's.
    pub(crate) fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn the_table_is_sorted_and_every_subcommand_has_its_container() {
        for w in COMMANDS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for s in COMMANDS {
            if let Some((container, _)) = s.name.split_once('|') {
                assert!(spec(container).is_some(), "{}", s.name);
            }
            assert!(spec(s.name).is_some_and(|f| std::ptr::eq(f, s)));
        }
        assert!(spec("nosuch").is_none());
        assert_eq!(subcommand("CLIENT", b"Id").map(|s| s.arity), Some(2));
    }

    #[test]
    fn keys_are_found_as_redis_finds_them() {
        for (cmd, keys) in [
            ("GET k", vec![1]),
            ("MSET a 1 b 2 c 3", vec![1, 3, 5]),
            ("DEL a b c", vec![1, 2, 3]),
            ("RENAME a b", vec![1, 2]),
            ("HSET h f v f2 v2", vec![1]),
            ("PUBLISH ch m", vec![]),
            ("KEYS *", vec![]),
            ("XGROUP CREATE s g $", vec![2]),
            ("XINFO STREAM s", vec![2]),
            ("XREAD COUNT 2 STREAMS a b 0 0", vec![4, 5]),
            ("XREADGROUP GROUP g c STREAMS a >", vec![5]),
            ("XREAD COUNT 2", vec![]),
            ("NOSUCH a b", vec![]),
        ] {
            assert_eq!(key_positions(&args(cmd)), keys, "{cmd}");
        }
    }

    #[test]
    fn arity_counts_as_redis_does() {
        assert!(arity_fits(2, 2) && !arity_fits(2, 3) && !arity_fits(2, 1));
        assert!(arity_fits(-3, 3) && arity_fits(-3, 9) && !arity_fits(-3, 2));
    }
}
