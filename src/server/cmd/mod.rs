//! Commands: parse arguments, apply, write the Redis 7 reply. One module per command family.

#[expect(
    unsafe_code,
    reason = "calls the C `long double` arithmetic of INCRBYFLOAT; see its SAFETY comments"
)]
mod float;
mod hashes;
mod inspect;
mod keys;
pub(crate) mod multi;
mod pubsub;
mod server;
mod strings;
pub(crate) mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

use super::Shared;
use super::acl::{UserRule, denied_reply};
use super::clients::Client;
use super::gate;
use super::reply::Out;
use crate::pubsub::Subscription;

/// Per-connection state.
#[derive(Debug)]
pub struct Conn {
    /// `CLIENT ID`.
    pub id: u64,
    /// Authenticated (or no password is set).
    pub authed: bool,
    /// The ACL user, `None` for `default` (every permission).
    pub user: Option<Arc<UserRule>>,
    /// What other connections see of this one (name, user, kill switch).
    pub client: Arc<Client>,
    /// The connection's pub/sub subscription, once it subscribed to something.
    pub sub: Option<Subscription>,
    /// Channels and patterns subscribed, for counts in replies.
    pub channels: Vec<String>,
    /// Patterns subscribed.
    pub patterns: Vec<String>,
    /// The open `MULTI`, if any.
    pub multi: Option<multi::Transaction>,
    /// Keys `WATCH`ed, with what they held then.
    pub watched: Vec<multi::Watched>,
    /// An `EXEC` whose reply waits for its XADDs to be durable; the connection loop awaits it.
    pub waiting: Option<multi::Waiting>,
}

impl Conn {
    /// A new connection's state.
    pub fn new(id: u64, authed: bool, client: Arc<Client>) -> Self {
        Self {
            id,
            authed,
            user: None,
            client,
            sub: None,
            channels: Vec::new(),
            patterns: Vec::new(),
            multi: None,
            watched: Vec::new(),
            waiting: None,
        }
    }

    /// Logs in as `user` (`None`: `default`).
    pub fn login(&mut self, user: Option<Arc<UserRule>>) {
        *self.client.user.lock() = user.as_ref().map_or("default", |u| &u.name).to_owned();
        self.user = user;
        self.authed = true;
    }

    /// Subscriptions held (channels + patterns).
    pub fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Write what is buffered, then close.
    Close,
}

/// Server-wide counters for `INFO`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Commands processed.
    pub commands: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Connections refused at `max_clients` (`rejected_connections`).
    pub rejected: AtomicU64,
    /// Clients waiting in a blocking XREAD or XREADGROUP now (`blocked_clients`).
    pub blocked: AtomicU64,
}

/// Counts a client in [`Stats::blocked`] while it lives.
pub(crate) struct Blocked<'a>(&'a AtomicU64);

impl<'a> Blocked<'a> {
    pub(crate) fn new(n: &'a AtomicU64) -> Self {
        n.fetch_add(1, Relaxed);
        Self(n)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Bytes of a client's argument that an error reply repeats (Redis's `%.128s`): a bad request
/// of large arguments gets a short reply.
pub(crate) const SHOWN_MAX: usize = 128;

/// A client's argument as an error reply repeats it: its first `SHOWN_MAX` bytes, up to a NUL
/// (Redis formats it as a C string).
pub(crate) fn shown(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    let arg = &arg[..arg.len().min(SHOWN_MAX)];
    let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len());
    String::from_utf8_lossy(&arg[..end])
}

pub(crate) fn wrong_args(out: &mut Out, name: &[u8]) {
    out.error(&wrong_args_text(name));
}

/// Redis's error for a call of the wrong arity.
fn wrong_args_text(name: &[u8]) -> String {
    format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name).to_lowercase()
    )
}

/// Milliseconds from `now` (Unix milliseconds) to the deadline an expiry argument names: `n`
/// seconds or milliseconds, from now or as a Unix time (`absolute`). `None` when the deadline
/// does not fit in milliseconds since the epoch, which Redis refuses as an invalid expire time.
pub(crate) fn deadline_ms(n: i64, seconds: bool, absolute: bool, now: i64) -> Option<i64> {
    let ms = if seconds { n.checked_mul(1000)? } else { n };
    if absolute {
        Some(ms.saturating_sub(now))
    } else {
        ms.checked_add(now).map(|_| ms)
    }
}

/// The TTL to give the cache for a key that Redis would keep for `ms` more milliseconds.
///
/// Redis keeps a key through the millisecond of its deadline (expired once `now > deadline`);
/// the cache drops an entry at the start of it (`now >= deadline`). Read at whole
/// milliseconds, a `PSETEX k 1 v` then lived 0–1 ms instead of Redis's 1–2 ms, and a key set
/// to expire at `t` was already gone at `t`. So the server stores one millisecond more than
/// asked, and [`shown_ttl`] takes it back off what TTL, PTTL and the expire times report.
pub(crate) fn stored_ttl(ms: u64) -> Duration {
    Duration::from_millis(ms.saturating_add(1))
}

/// What Redis would report as the time left for a cache entry with `left` to live: see
/// [`stored_ttl`].
pub(crate) fn shown_ttl(left: Duration) -> Duration {
    left.saturating_sub(Duration::from_millis(1))
}

/// What Redis would report as the deadline (Unix milliseconds) of a cache entry that expires
/// at `at`: see [`stored_ttl`].
pub(crate) fn shown_deadline(at: u64) -> u64 {
    at.saturating_sub(1)
}

pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    super::frame::parse_int(b)
}

/// A SCAN-family cursor, read as Redis reads one (`strtoul`): an optional sign, then digits
/// that fit in 64 bits; a negative cursor wraps (`-1` is the largest), and an empty one is 0.
pub(crate) fn parse_cursor(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Whether a database index (`SELECT`, `COPY … DB`) names the one database, 0; otherwise
/// Redis's error for it is written: not an integer, outside 32 bits, or out of range.
pub(crate) fn database_zero(index: &[u8], out: &mut Out) -> bool {
    match parse_i64(index) {
        Some(0) => return true,
        Some(n) if i32::try_from(n).is_err() => {
            out.error("ERR value is out of range, value must between -2147483648 and 2147483647")
        }
        Some(_) => out.error("ERR DB index is out of range"),
        None => not_int(out),
    }
    false
}

pub(crate) fn not_int(out: &mut Out) {
    out.error("ERR value is not an integer or out of range");
}

pub(crate) fn syntax(out: &mut Out) {
    out.error("ERR syntax error");
}

/// Whether the connection's user may run this command (`cmd` lower case).
pub fn allows(conn: &Conn, cmd: &str, args: &[Bytes]) -> bool {
    conn.user
        .as_ref()
        .is_none_or(|u| u.check(cmd, args).is_ok())
}

/// Commands allowed while the connection is in subscribe mode (RESP2).
fn allowed_in_subscribe(cmd: &str) -> bool {
    matches!(
        cmd,
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}

pub(crate) use pubsub::detach as detach_payload;
pub(crate) use strings::Short;

/// Redis's check of a container command's subcommand (`CLIENT ID`, `CONFIG GET`) against
/// the command table: writes Redis's error and returns false for a subcommand quipu does not
/// run or a call of the wrong arity.
pub(crate) fn subcommand_fits(out: &mut Out, args: &[Bytes]) -> bool {
    match subcommand_refusal(args) {
        Some(e) => {
            out.error(&e);
            false
        }
        None => true,
    }
}

/// The error [`subcommand_fits`] writes, if any.
fn subcommand_refusal(args: &[Bytes]) -> Option<String> {
    let container = String::from_utf8_lossy(&args[0]).to_lowercase();
    match table::subcommand(&container, &args[1]) {
        None => Some(format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            shown(&args[1]),
            container.to_uppercase()
        )),
        Some(s) if !table::arity_fits(s.arity, args.len()) => {
            Some(wrong_args_text(s.name.as_bytes()))
        }
        Some(_) => None,
    }
}

/// Redis's error for a container's subcommand whose options or argument count are wrong
/// (`XGROUP CREATE k g $ NOSUCH`), which the table's arity cannot tell.
pub(crate) fn subcommand_syntax_error(out: &mut Out, args: &[Bytes]) {
    out.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        shown(&args[1]),
        String::from_utf8_lossy(&args[0]).to_uppercase()
    ));
}

/// Runs one command.
pub fn exec(shared: &Arc<Shared>, conn: &mut Conn, args: &[Bytes], out: &mut Out) -> Flow {
    let Some(first) = args.first() else {
        return Flow::Continue;
    };
    let mut name_buf = [0u8; 24];
    let cmd = if first.len() <= name_buf.len() {
        for (d, s) in name_buf.iter_mut().zip(first.iter()) {
            *d = s.to_ascii_lowercase();
        }
        std::str::from_utf8(&name_buf[..first.len()]).unwrap_or("")
    } else {
        ""
    };
    if let Err(e) = admit(conn, cmd, args, out.resp3) {
        multi::refused(conn, cmd, &e, out);
        return Flow::Continue;
    }
    if conn.multi.is_some() && !multi::acts_at_once(cmd) {
        multi::queue(conn, args, out);
        return Flow::Continue;
    }
    if cmd == "exec" {
        return multi::exec(shared, conn, out);
    }
    // SAVE waits on fsyncs for as long as the data takes, and needs no isolation (BGSAVE has
    // none either): outside the gate, so an `EXEC` waiting to close it does not hold every
    // other command up until the save ends. It is never queued (`no_multi`).
    if cmd == "save" {
        return dispatch(shared, conn, cmd, args, out);
    }
    // One command: no transaction's `EXEC` runs in the middle of it.
    gate::shared(|| dispatch(shared, conn, cmd, args, out))
}

/// The checks a command passes before it runs or is queued, in Redis's order: an unknown
/// command or subcommand, its arity (before authentication and permissions, as Redis does),
/// authentication, a command Redis refuses inside `MULTI` (`no_multi`: SAVE, SHUTDOWN), the
/// ACL, the subscribe context. `Err` is the error reply.
fn admit(conn: &Conn, cmd: &str, args: &[Bytes], resp3: bool) -> Result<(), String> {
    // An unknown command is refused first, as Redis does: before NOAUTH, the ACL and the
    // subscribe context.
    let Some(spec) = table::spec(cmd) else {
        return Err(server::unknown_command(args));
    };
    // So is an unknown subcommand; looked for only where a later check would answer first
    // (elsewhere the command itself answers it).
    let later_check = conn.multi.is_some() || !conn.authed || conn.subscriptions() > 0;
    if later_check
        && args.len() >= 2
        && table::subcommands_of(spec.name).next().is_some()
        && let Some(e) = subcommand_refusal(args)
    {
        return Err(e);
    }
    if !table::arity_fits(spec.arity, args.len()) {
        return Err(wrong_args_text(&args[0]));
    }
    if !conn.authed && !matches!(cmd, "auth" | "hello" | "quit" | "reset") {
        return Err("NOAUTH Authentication required.".to_owned());
    }
    if conn.multi.is_some() && spec.flags.contains(&"no_multi") {
        return Err("ERR Command not allowed inside a transaction".to_owned());
    }
    if let Some(user) = &conn.user
        && let Err(why) = user.check(cmd, args)
    {
        return Err(denied_reply(&user.name, cmd, why));
    }
    if conn.subscriptions() > 0 && !resp3 && !allowed_in_subscribe(cmd) {
        return Err(format!(
            "ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ));
    }
    Ok(())
}

/// Runs a command that passed [`admit`] (`cmd` lower case).
fn dispatch(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    cmd: &str,
    args: &[Bytes],
    out: &mut Out,
) -> Flow {
    let db = &shared.db;
    match cmd {
        // strings
        "get" => strings::get(shared, args, out),
        "set" => strings::set(shared, args, out),
        "setnx" | "setex" | "psetex" => strings::set_variant(shared, cmd, args, out),
        "mget" => strings::mget(shared, args, out),
        "mset" | "msetnx" => strings::mset(shared, cmd, args, out),
        "getset" | "getdel" | "getex" => strings::get_and(db, cmd, args, out),
        "incr" | "decr" | "incrby" | "decrby" => strings::incr(db, cmd, args, out),
        "incrbyfloat" => strings::incr_float(db, args, out),
        "append" | "setrange" => strings::append(db, cmd, args, out),
        "strlen" | "getrange" | "substr" => strings::read_part(db, cmd, args, out),
        // keys
        "del" | "unlink" => keys::del(shared, args, out),
        "exists" | "touch" => keys::exists(shared, args, out),
        "expire" | "pexpire" | "expireat" | "pexpireat" => keys::expire(shared, cmd, args, out),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => keys::ttl(shared, cmd, args, out),
        "persist" => keys::persist(db, args, out),
        "type" => keys::type_of(shared, args, out),
        "keys" => keys::keys(shared, args, out),
        "scan" => keys::scan(shared, args, out),
        "rename" | "renamenx" => keys::rename(shared, args, out, cmd == "renamenx"),
        "copy" => keys::copy(shared, args, out),
        "randomkey" => keys::randomkey(shared, out),
        "object" => inspect::object(shared, args, out),
        "memory" => inspect::memory(shared, args, out),
        "dbsize" => keys::dbsize(shared, out),
        "flushdb" | "flushall" => keys::flush(shared, args, out),
        // hashes
        "hset" | "hmset" | "hsetnx" => hashes::hset(db, cmd, args, out),
        "hget" | "hmget" | "hgetall" | "hkeys" | "hvals" | "hlen" | "hexists" | "hstrlen" => {
            hashes::read(db, cmd, args, out);
        }
        "hdel" => hashes::hdel(db, args, out),
        "hincrby" => hashes::hincrby(db, args, out),
        "hincrbyfloat" => hashes::hincrbyfloat(db, args, out),
        "hscan" => hashes::hscan(db, args, out),
        "hrandfield" => hashes::hrandfield(db, args, out),
        // pub/sub
        "publish" => pubsub::publish(shared, args, out),
        "subscribe" | "psubscribe" => pubsub::subscribe(db, conn, cmd, args, out),
        "unsubscribe" | "punsubscribe" => pubsub::unsubscribe(conn, cmd, args, out),
        "pubsub" => pubsub::introspect(db, args, out),
        // transactions (EXEC is run by `exec`)
        "multi" | "discard" | "watch" | "unwatch" => multi::run(shared, conn, cmd, args, out),
        // streams (XADD is run by the connection loop: it waits for durability)
        "xlen" | "xrange" | "xrevrange" | "xread" | "xreadgroup" | "xgroup" | "xack"
        | "xpending" | "xclaim" | "xautoclaim" | "xinfo" | "xdel" | "xtrim" => {
            crate::server::streams::exec(shared, cmd, args, out);
        }
        // connection and server
        _ => return server::exec(shared, conn, cmd, args, out),
    }
    conn.client
        .subscriptions
        .store(conn.subscriptions() as u64, Relaxed);
    Flow::Continue
}

/// splitmix64, seeded from the standard library's per-process random keys and the time:
/// `HRANDFIELD` and `RANDOMKEY` need picks spread evenly, not secrets.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        use std::hash::BuildHasher as _;
        Self(std::hash::RandomState::new().hash_one(std::time::SystemTime::now()))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by widening multiplication (bias below 2^-32 for the
    /// sizes a hash has).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}
