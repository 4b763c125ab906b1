//! `XADD`, `XLEN`, `XTRIM`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::ids::{self, INVALID_ID, StreamId, at_or_after};
use super::{Shared, lower, stream, wrong_args};
use crate::log::{AppendReceipt, Message, Partition, Topic};
use crate::server::cmd::parse_i64;
use crate::server::db::WRONGTYPE;
use crate::server::reply::Out;

/// A parsed XADD: topic, message, trim.
pub(crate) type Planned = (Option<Arc<Topic>>, Message, Option<Trim>);

/// What XADD or XTRIM trims to. Whole log segments go, so a trim keeps at least what was
/// asked (`~`), even with `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    /// `MAXLEN n`: the newest `n` entries stay.
    MaxLen(u64),
    /// `MINID id`: entries from `id` on stay.
    MinId(StreamId),
}

impl Trim {
    /// The offset before which entries may go.
    fn before(self, p: &Partition) -> u64 {
        match self {
            Self::MaxLen(max) => p.end_offset().saturating_sub(max),
            Self::MinId(id) => at_or_after(p, id),
        }
    }
}

/// The options of XADD (before its ID) or XTRIM (after the key), parsed as Redis 7.0's
/// `streamParseAddOrTrimArgsOrReply` does, with its errors in its order.
struct Options {
    trim: Option<Trim>,
    /// Not `NOMKSTREAM`.
    create: bool,
    /// XADD: where its ID is.
    id_at: usize,
    /// XADD: an explicit ID (valid as Redis reads one), and whether it is `0-0`.
    explicit: Option<bool>,
}

fn parse_options(args: &[Bytes], xadd: bool) -> Result<Options, String> {
    let syntax = || "ERR syntax error".to_owned();
    let mut o = Options {
        trim: None,
        create: true,
        id_at: args.len(),
        explicit: None,
    };
    // Redis tells a `LIMIT 0` from none for the `~` check, not for the strategy check.
    let (mut approx, mut limit, mut limit_given) = (false, 0i64, false);
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = lower(&args[i]);
        match opt.as_str() {
            "*" if xadd => {
                o.id_at = i;
                break;
            }
            "maxlen" | "minid" if more > 0 => {
                if o.trim.is_some() {
                    return Err("ERR syntax error, MAXLEN and MINID options at the same time are not compatible".to_owned());
                }
                approx = false;
                if more >= 2 && matches!(&args[i + 1][..], b"~" | b"=") {
                    approx = &args[i + 1][..] == b"~";
                    i += 1;
                }
                let threshold = &args[i + 1];
                o.trim = Some(if opt == "maxlen" {
                    let n = parse_i64(threshold)
                        .ok_or("ERR value is not an integer or out of range")?;
                    Trim::MaxLen(
                        u64::try_from(n).map_err(|_| "ERR The MAXLEN argument must be >= 0.")?,
                    )
                } else {
                    Trim::MinId(StreamId::parse(threshold, 0).ok_or(INVALID_ID)?)
                });
                i += 1;
            }
            "limit" if more > 0 => {
                limit =
                    parse_i64(&args[i + 1]).ok_or("ERR value is not an integer or out of range")?;
                if limit < 0 {
                    return Err("ERR The LIMIT argument must be >= 0.".to_owned());
                }
                limit_given = true;
                i += 1;
            }
            "nomkstream" if xadd => o.create = false,
            _ if xadd => {
                // An explicit ID: checked here as Redis checks one (`ms-seq`, `ms`, `ms-*`);
                // refused by the caller after the checks Redis makes later.
                let id = &args[i];
                let zero = match StreamId::parse(id, 0) {
                    Some(StreamId { ms: 0, seq: 0 }) => true,
                    Some(_) => false,
                    None => match id.strip_suffix(b"-*") {
                        Some(ms)
                            if std::str::from_utf8(ms).is_ok_and(|m| ids::id_part(m).is_some()) =>
                        {
                            false
                        }
                        _ => return Err(INVALID_ID.to_owned()),
                    },
                };
                o.id_at = i;
                o.explicit = Some(zero);
                break;
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    if limit != 0 && o.trim.is_none() {
        return Err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
                .to_owned(),
        );
    }
    if !xadd && o.trim.is_none() {
        return Err("ERR syntax error, XTRIM must be called with a trimming strategy".to_owned());
    }
    if limit_given && !approx {
        return Err(
            "ERR syntax error, LIMIT cannot be used without the special ~ option".to_owned(),
        );
    }
    Ok(o)
}

/// Parses the arguments of XADD: the topic (`None` for NOMKSTREAM on a missing stream), the
/// message, and its trim; `Err` is the error reply.
pub(crate) fn prepare_xadd(shared: &Shared, args: &[Bytes]) -> Result<Planned, String> {
    let wrong = || wrong_args("xadd");
    if args.len() < 5 {
        return Err(wrong());
    }
    let Options {
        trim,
        create,
        id_at: i,
        explicit,
    } = parse_options(args, true)?;
    if i >= args.len() {
        return Err(wrong());
    }
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(wrong());
    }
    if explicit == Some(true) {
        return Err("ERR The ID specified in XADD must be greater than 0-0".to_owned());
    }
    // A key is one type: a string or hash of that name makes XADD a type error.
    if super::other_type(shared, &args[1]) {
        return Err(WRONGTYPE.to_owned());
    }
    // Where Redis compares an explicit ID with the stream's last: after the type, and only
    // for a stream that is there or would be made (NOMKSTREAM on none answers nil).
    if explicit == Some(false) && (create || super::exists(shared, &args[1])) {
        return Err("ERR quipu assigns stream IDs: use * as the ID".to_owned());
    }
    let pairs: Vec<(&[u8], &[u8])> = fields
        .chunks(2)
        .map(|kv| (&kv[0][..], &kv[1][..]))
        .collect();
    let value = postcard::to_allocvec(&pairs).map_err(|e| format!("ERR {e}"))?;
    let topic = stream(shared, &args[1], create)?;
    Ok((topic, Message::new(value), trim))
}

/// The XADDs of one pipeline, parsed and waiting to be appended. Consecutive ones to the same
/// stream (with the same trim) are appended as one batch: one lock, one header, one wait for
/// the fsync they share; every reply keeps its place.
#[derive(Debug, Default)]
pub(crate) struct PipelinedAdds {
    planned: Vec<Result<Planned, String>>,
}

/// Consecutive XADDs appended together, and where their replies go.
struct Run {
    topic: Arc<Topic>,
    msgs: Vec<Message>,
    trim: Option<Trim>,
    /// Index of the first reply.
    first: usize,
}

impl PipelinedAdds {
    /// Queues one parsed XADD (or its error reply).
    pub(crate) fn push(&mut self, planned: Result<Planned, String>) {
        self.planned.push(planned);
    }

    /// Appends everything queued, in order, waits until it is durable, and writes the replies.
    pub(crate) async fn flush(&mut self, out: &mut Out) {
        if self.planned.is_empty() {
            return;
        }
        let mut replies: Vec<Option<Result<Option<String>, String>>> = Vec::new();
        let mut runs: Vec<Run> = Vec::new();
        for (i, p) in self.planned.drain(..).enumerate() {
            match p {
                Err(e) => replies.push(Some(Err(e))),
                // NOMKSTREAM on a missing stream.
                Ok((None, _, _)) => replies.push(Some(Ok(None))),
                Ok((Some(topic), msg, trim)) => {
                    replies.push(None);
                    match runs.last_mut() {
                        Some(run)
                            if Arc::ptr_eq(&run.topic, &topic)
                                && run.trim == trim
                                && run.first + run.msgs.len() == i =>
                        {
                            run.msgs.push(msg);
                        }
                        _ => runs.push(Run {
                            topic,
                            msgs: vec![msg],
                            trim,
                            first: i,
                        }),
                    }
                }
            }
        }
        // Polled in order, so the runs are appended in pipeline order; their fsyncs overlap.
        let done = futures_util::future::join_all(runs.into_iter().map(append_run)).await;
        for (first, result) in done {
            match result {
                Ok(ids) => {
                    for (j, id) in ids.into_iter().enumerate() {
                        replies[first + j] = Some(Ok(Some(id)));
                    }
                }
                Err((n, e)) => {
                    for slot in &mut replies[first..first + n] {
                        *slot = Some(Err(e.clone()));
                    }
                }
            }
        }
        for reply in replies.into_iter().flatten() {
            match reply {
                Ok(Some(id)) => out.bulk(id.as_bytes()),
                Ok(None) => out.null(),
                Err(e) => out.error(&e),
            }
        }
    }
}

/// Appends one run as a batch; the ids, or the error for all of its XADDs.
#[allow(clippy::type_complexity, reason = "the run's place and outcome")]
fn append_run(
    run: Run,
) -> Pin<Box<dyn Future<Output = (usize, Result<Vec<String>, (usize, String)>)> + Send>> {
    Box::pin(async move {
        let n = run.msgs.len();
        let result = async {
            let partition = Arc::clone(run.topic.partition(0).map_err(|e| format!("ERR {e}"))?);
            let r = crate::server::io::append(&partition, &run.msgs)
                .await
                .map_err(|e| format!("ERR {e}"))?;
            Ok(appended(&run.topic, &partition, run.trim, &r, n))
        }
        .await
        .map_err(|e: String| (n, e));
        (run.first, result)
    })
}

/// After `n` XADDs were appended as one batch and are durable: the trim, then their IDs.
fn appended(
    topic: &Topic,
    partition: &Partition,
    trim: Option<Trim>,
    r: &AppendReceipt,
    n: usize,
) -> Vec<String> {
    if let Some(trim) = trim {
        // Whole segments only: `~` semantics.
        let _ = topic.delete_records_before(0, trim.before(partition));
    }
    // One batch: every record carries the batch's timestamp.
    (0..n as u64)
        .map(|k| format!("{}-{}", r.timestamp, r.offset + k))
        .collect()
}

/// The reply of an XADD of a transaction, ready once its entry is durable.
pub(crate) type AddReply = Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>>;

/// Appends one XADD of a transaction now (inside `EXEC`); the reply waits for its durability.
pub(crate) fn start_xadd(shared: &Shared, args: &[Bytes]) -> AddReply {
    let ready = |r| -> AddReply { Box::pin(std::future::ready(r)) };
    let (topic, msg, trim) = match prepare_xadd(shared, args) {
        Err(e) => return ready(Err(e)),
        Ok((None, _, _)) => return ready(Ok(None)),
        Ok((Some(topic), msg, trim)) => (topic, msg, trim),
    };
    let partition = match topic.partition(0) {
        Ok(p) => Arc::clone(p),
        Err(e) => return ready(Err(format!("ERR {e}"))),
    };
    let wait = match partition.start_append(std::slice::from_ref(&msg), false) {
        Ok(w) => w,
        Err(e) => return ready(Err(format!("ERR {e}"))),
    };
    Box::pin(async move {
        let r = wait.await.map_err(|e| format!("ERR {e}"))?;
        Ok(appended(&topic, &partition, trim, &r, 1).pop())
    })
}

/// `XLEN key`.
pub(crate) fn xlen(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 2 {
        return out.error(&wrong_args("xlen"));
    }
    match stream(shared, &args[1], false) {
        Ok(Some(t)) => {
            let n = t
                .partition(0)
                .map_or(0, |p| p.end_offset() - p.start_offset());
            out.int(n as i64);
        }
        _ => out.int(0),
    }
}

/// `XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT n]`: drops whole log segments below the
/// threshold, so it trims at most what was asked (as `~`) even with `=`. Replies the number
/// of entries removed.
pub(crate) fn xtrim(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 4 {
        return out.error(&wrong_args("xtrim"));
    }
    let trim = match parse_options(args, false) {
        Ok(Options { trim: Some(t), .. }) => t,
        Ok(_) => {
            return out.error("ERR syntax error, XTRIM must be called with a trimming strategy");
        }
        Err(e) => return out.error(&e),
    };
    if super::refuse_other_type(shared, &args[1], out) {
        return;
    }
    let Ok(Some(t)) = stream(shared, &args[1], false) else {
        return out.int(0);
    };
    let Ok(p) = t.partition(0) else {
        return out.int(0);
    };
    let before = trim.before(p);
    let start = p.start_offset();
    if let Err(e) = t.delete_records_before(0, before) {
        return out.error(&format!("ERR {e}"));
    }
    out.int((p.start_offset() - start) as i64);
}
