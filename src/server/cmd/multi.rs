//! Transactions: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`, with Redis 7's replies.
//!
//! Between `MULTI` and `EXEC` commands are checked (unknown, arity, permissions) and queued;
//! a refused one dooms the transaction (`EXECABORT`). `EXEC` runs the queue inside the
//! exclusive section of the gate (`server::gate`): no other client's command runs until the
//! last queued one has. A watched key is compared with what it was at `WATCH`, and its write
//! counter (`notify::Touches`) with what it was then; if either moved, `EXEC` runs nothing
//! and replies a null array.

use std::sync::Arc;

use bytes::Bytes;

use super::{Conn, Flow, Shared};
use crate::server::gate;
use crate::server::reply::Out;
use crate::server::streams::AddReply;

/// An open `MULTI`.
#[derive(Debug, Default)]
pub struct Transaction {
    /// The commands queued, each its arguments.
    queued: Vec<Vec<Bytes>>,
    /// A queued command was refused: `EXEC` discards the transaction.
    failed: bool,
}

/// What a watched key held at `WATCH`.
#[derive(Debug)]
pub struct Watched {
    key: Bytes,
    version: Version,
    touch: crate::server::notify::Watch,
}

/// A key's state as far as `WATCH` can tell: the cached value and its deadline (the value
/// itself is held, so its memory cannot be reused by another value, and compared by address:
/// every write stores a new one), and a stream's range of offsets.
#[derive(Debug)]
struct Version {
    value: Option<(Bytes, Option<u64>)>,
    stream: Option<(u64, u64)>,
}

impl Version {
    fn of(shared: &Shared, key: &[u8]) -> Self {
        let ns = shared.db.ns(key);
        let value = ns
            .get(key)
            .map(|v| (v, ns.expires_at(key).unwrap_or_default()));
        let stream = crate::server::streams::stream(shared, key, false)
            .ok()
            .flatten()
            .and_then(|t| {
                t.partition(0)
                    .ok()
                    .map(|p| (p.start_offset(), p.end_offset()))
            });
        Self { value, stream }
    }

    fn same(&self, other: &Self) -> bool {
        let value = match (&self.value, &other.value) {
            (None, None) => true,
            (Some((a, da)), Some((b, db))) => {
                a.as_ptr() == b.as_ptr() && a.len() == b.len() && da == db
            }
            _ => false,
        };
        value && self.stream == other.stream
    }
}

/// The commands that act at once inside `MULTI` instead of being queued.
pub(crate) fn acts_at_once(cmd: &str) -> bool {
    matches!(
        cmd,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// A command refused by the checks that run before it (unknown, arity, authentication,
/// permission): outside a transaction the error; inside, the error and the transaction is
/// doomed. `EXEC` itself refused discards the transaction and the watches with `EXECABORT`,
/// inside `MULTI` or not, as Redis does.
pub(crate) fn refused(conn: &mut Conn, cmd: &str, error: &str, out: &mut Out) {
    if cmd == "exec" {
        conn.multi = None;
        conn.watched.clear();
        // Redis keeps the error's code unless it is the generic `ERR`.
        let why = error.strip_prefix("ERR ").unwrap_or(error);
        return out.error(&format!(
            "EXECABORT Transaction discarded because of: {why}"
        ));
    }
    if let Some(t) = &mut conn.multi {
        t.failed = true;
    }
    out.error(error);
}

/// Queues a command that passed its checks.
pub(crate) fn queue(conn: &mut Conn, args: &[Bytes], out: &mut Out) {
    if let Some(t) = &mut conn.multi {
        t.queued.push(args.to_vec());
        out.simple("QUEUED");
    }
}

/// `MULTI`, `DISCARD`, `WATCH`, `UNWATCH` (`EXEC` is [`exec`]).
pub(crate) fn run(shared: &Shared, conn: &mut Conn, cmd: &str, args: &[Bytes], out: &mut Out) {
    match cmd {
        "multi" if conn.multi.is_some() => out.error("ERR MULTI calls can not be nested"),
        "multi" => {
            conn.multi = Some(Transaction::default());
            out.ok();
        }
        "discard" if conn.multi.is_none() => out.error("ERR DISCARD without MULTI"),
        "discard" => {
            conn.multi = None;
            conn.watched.clear();
            out.ok();
        }
        "watch" if conn.multi.is_some() => out.error("ERR WATCH inside MULTI is not allowed"),
        "watch" => {
            for key in &args[1..] {
                if !conn.watched.iter().any(|w| w.key == key) {
                    // The counter first: a write after it is seen by one or the other.
                    let touch = shared.db.notifier.touches.watch(key);
                    conn.watched.push(Watched {
                        key: Bytes::copy_from_slice(key),
                        version: Version::of(shared, key),
                        touch,
                    });
                }
            }
            out.ok();
        }
        _ => {
            conn.watched.clear();
            out.ok();
        }
    }
}

/// An `EXEC` whose XADDs were appended inside it and wait for their durability: the replies
/// of the other commands are in `body`, each XADD's goes at its offset in `body`.
pub(crate) struct Waiting {
    body: Out,
    adds: Vec<(usize, AddReply)>,
    count: usize,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("count", &self.count)
            .field("adds", &self.adds.len())
            .finish_non_exhaustive()
    }
}

impl Waiting {
    /// Waits for the XADDs and writes the whole `EXEC` reply.
    pub(crate) async fn finish(self, out: &mut Out) {
        out.array(self.count);
        let mut from = 0;
        for (at, add) in self.adds {
            out.buf.extend_from_slice(&self.body.buf[from..at]);
            from = at;
            match add.await {
                Ok(Some(id)) => out.bulk(id.as_bytes()),
                Ok(None) => out.null(),
                Err(e) => out.error(&e),
            }
        }
        out.buf.extend_from_slice(&self.body.buf[from..]);
    }
}

/// `EXEC`: runs the queued commands with no other command running meanwhile. Replies at
/// once, or leaves in `conn.waiting` the XADDs whose durability the reply waits for.
pub(crate) fn exec(shared: &Arc<Shared>, conn: &mut Conn, out: &mut Out) -> Flow {
    let Some(t) = conn.multi.take() else {
        out.error("ERR EXEC without MULTI");
        return Flow::Continue;
    };
    let watched = std::mem::take(&mut conn.watched);
    if t.failed {
        out.error("EXECABORT Transaction discarded because of previous errors.");
        return Flow::Continue;
    }
    let mut body = Out {
        resp3: out.resp3,
        ..Out::default()
    };
    let mut adds = Vec::new();
    let mut flow = Flow::Continue;
    let ran = gate::exclusive(|| {
        if watched
            .iter()
            .any(|w| !w.touch.untouched() || !w.version.same(&Version::of(shared, &w.key)))
        {
            return false;
        }
        for args in &t.queued {
            let cmd = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            if cmd == "xadd" {
                adds.push((
                    body.buf.len(),
                    crate::server::streams::start_xadd(shared, args),
                ));
            } else if super::dispatch(shared, conn, &cmd, args, &mut body) == Flow::Close {
                flow = Flow::Close;
            }
        }
        true
    });
    if !ran {
        out.null_array();
        return Flow::Continue;
    }
    out.resp3 = body.resp3;
    let waiting = Waiting {
        body,
        adds,
        count: t.queued.len(),
    };
    if waiting.adds.is_empty() {
        out.array(waiting.count);
        out.buf.extend_from_slice(&waiting.body.buf);
    } else {
        conn.waiting = Some(waiting);
    }
    flow
}
