//! `XADD`, `XLEN`, `XTRIM`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::ids::{INVALID_ID, StreamId, at_or_after};
use super::{Shared, lower, stream, wrong_args};
use crate::log::{AppendReceipt, Message, Partition, Topic};
use crate::server::cmd::parse_i64;
use crate::server::db::WRONGTYPE;
use crate::server::reply::Out;

/// A parsed XADD: topic, message, MAXLEN.
pub(crate) type Planned = (Option<Arc<Topic>>, Message, Option<u64>);

/// Parses the arguments of XADD: the topic (`None` for NOMKSTREAM on a missing stream), the
/// message, and MAXLEN; `Err` is the error reply.
pub(crate) fn prepare_xadd(shared: &Shared, args: &[Bytes]) -> Result<Planned, String> {
    let wrong = || wrong_args("xadd");
    if args.len() < 5 {
        return Err(wrong());
    }
    let mut i = 2;
    let mut maxlen = None;
    let mut create = true;
    loop {
        let opt = lower(args.get(i).ok_or_else(wrong)?);
        match opt.as_str() {
            "nomkstream" => {
                create = false;
                i += 1;
            }
            "maxlen" => {
                i += 1;
                if matches!(args.get(i).map(|a| &a[..]), Some(b"~" | b"=")) {
                    i += 1;
                }
                let n = args.get(i).and_then(|a| parse_i64(a));
                let n = n.ok_or("ERR value is not an integer or out of range")?;
                let n = u64::try_from(n).map_err(|_| "ERR The MAXLEN argument must be >= 0.")?;
                maxlen = Some(n);
                i += 1;
            }
            _ => break,
        }
    }
    if args.get(i).map(|a| &a[..]) != Some(b"*") {
        return Err("ERR quipu assigns stream IDs: use * as the ID".to_owned());
    }
    let fields = &args[i + 1..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return Err(wrong());
    }
    // A key is one type: a string or hash of that name makes XADD a type error.
    if super::other_type(shared, &args[1]) {
        return Err(WRONGTYPE.to_owned());
    }
    let pairs: Vec<(&[u8], &[u8])> = fields
        .chunks(2)
        .map(|kv| (&kv[0][..], &kv[1][..]))
        .collect();
    let value = postcard::to_allocvec(&pairs).map_err(|e| format!("ERR {e}"))?;
    let topic = stream(shared, &args[1], create)?;
    Ok((topic, Message::new(value), maxlen))
}

/// The XADDs of one pipeline, parsed and waiting to be appended. Consecutive ones to the same
/// stream (with the same MAXLEN) are appended as one batch: one lock, one header, one wait for
/// the fsync they share; every reply keeps its place.
#[derive(Debug, Default)]
pub(crate) struct PipelinedAdds {
    planned: Vec<Result<Planned, String>>,
}

/// Consecutive XADDs appended together, and where their replies go.
struct Run {
    topic: Arc<Topic>,
    msgs: Vec<Message>,
    maxlen: Option<u64>,
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
                Ok((Some(topic), msg, maxlen)) => {
                    replies.push(None);
                    match runs.last_mut() {
                        Some(run)
                            if Arc::ptr_eq(&run.topic, &topic)
                                && run.maxlen == maxlen
                                && run.first + run.msgs.len() == i =>
                        {
                            run.msgs.push(msg);
                        }
                        _ => runs.push(Run {
                            topic,
                            msgs: vec![msg],
                            maxlen,
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
            Ok(appended(&run.topic, &partition, run.maxlen, &r, n))
        }
        .await
        .map_err(|e: String| (n, e));
        (run.first, result)
    })
}

/// After `n` XADDs were appended as one batch and are durable: MAXLEN's trim, then their IDs.
fn appended(
    topic: &Topic,
    partition: &Partition,
    maxlen: Option<u64>,
    r: &AppendReceipt,
    n: usize,
) -> Vec<String> {
    if let Some(max) = maxlen {
        // Whole segments only: `MAXLEN ~` semantics.
        let _ = topic.delete_records_before(0, partition.end_offset().saturating_sub(max));
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
    let (topic, msg, maxlen) = match prepare_xadd(shared, args) {
        Err(e) => return ready(Err(e)),
        Ok((None, _, _)) => return ready(Ok(None)),
        Ok((Some(topic), msg, maxlen)) => (topic, msg, maxlen),
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
        Ok(appended(&topic, &partition, maxlen, &r, 1).pop())
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
    let strategy = lower(&args[2]);
    let mut i = 3;
    // `~` or `=` is a modifier only when a threshold follows (else it is read as the
    // threshold, as Redis reads it).
    if matches!(&args[i][..], b"~" | b"=") && args.len() > i + 1 {
        i += 1;
    }
    let Some(threshold) = args.get(i) else {
        return out.error("ERR syntax error");
    };
    let maxlen = match strategy.as_str() {
        "maxlen" => match parse_i64(threshold) {
            Some(n) if n >= 0 => Some(n as u64),
            Some(_) => return out.error("ERR The MAXLEN argument must be >= 0."),
            None => return out.error("ERR value is not an integer or out of range"),
        },
        "minid" => match StreamId::parse(threshold, 0) {
            Some(_) => None,
            None => return out.error(INVALID_ID),
        },
        _ => return out.error("ERR syntax error"),
    };
    match args.len() - i {
        1 => {}
        3 if args[i + 1].eq_ignore_ascii_case(b"limit") => {
            if parse_i64(&args[i + 2]).is_none_or(|n| n < 0) {
                return out.error("ERR The LIMIT argument must be >= 0.");
            }
        }
        _ => return out.error("ERR syntax error"),
    }
    if super::refuse_other_type(shared, &args[1], out) {
        return;
    }
    let Ok(Some(t)) = stream(shared, &args[1], false) else {
        return out.int(0);
    };
    let Ok(p) = t.partition(0) else {
        return out.int(0);
    };
    let before = match (maxlen, StreamId::parse(threshold, 0)) {
        (Some(max), _) => p.end_offset().saturating_sub(max),
        (None, Some(id)) => at_or_after(p, id),
        (None, None) => return out.int(0),
    };
    let start = p.start_offset();
    if let Err(e) = t.delete_records_before(0, before) {
        return out.error(&format!("ERR {e}"));
    }
    out.int((p.start_offset() - start) as i64);
}
