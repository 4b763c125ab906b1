//! Consumer groups: their in-memory state (pending entries, consumers), their durable part (a
//! log consumer group committing the lowest unacknowledged offset), and `XGROUP`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use bytes::Bytes;
use parking_lot::Mutex;

use super::ids::{INVALID_ID, StreamId, after};
use super::{Shared, escape, lower, now_ms, stream, wrong_args};
use crate::log::{ConsumerGroup, Log, Partition, Topic};
use crate::server::reply::Out;

/// The groups of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// By group name.
    pub groups: Mutex<BTreeMap<Bytes, Group>>,
}

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    /// The offset `>` delivers next: the entry after the last-delivered ID.
    pub next: u64,
    /// Pending entries (delivered, not acknowledged), by offset.
    pub pel: BTreeMap<u64, Pending>,
    /// Consumers by name.
    pub consumers: BTreeMap<Bytes, Consumer>,
    committer: Arc<Committer>,
}

/// A delivered entry waiting for its XACK.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The milliseconds part of its ID.
    pub ms: u64,
    /// The consumer it was delivered to.
    pub consumer: Bytes,
    /// When it was last delivered (ms).
    pub delivered: u64,
    /// Times delivered.
    pub count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, Default)]
pub(crate) struct Consumer {
    /// Last time it read or claimed (ms).
    pub seen: u64,
    /// Last time it was delivered something (ms).
    pub active: Option<u64>,
    /// Offsets of its pending entries.
    pub pending: BTreeSet<u64>,
}

impl Group {
    /// The consumer `name`, created if new; its seen-time becomes `now`.
    pub fn consumer(&mut self, name: &Bytes, now: u64) -> &mut Consumer {
        let c = self.consumers.entry(name.clone()).or_default();
        c.seen = now;
        c
    }

    /// Records a delivery of `offset` to `consumer` (moving it from another owner).
    pub fn deliver(&mut self, offset: u64, ms: u64, consumer: &Bytes, now: u64, count: u64) {
        if let Some(old) = self.pel.get(&offset).map(|p| p.consumer.clone())
            && let Some(c) = self.consumers.get_mut(&old)
        {
            c.pending.remove(&offset);
        }
        let c = self.consumer(consumer, now);
        c.active = Some(now);
        c.pending.insert(offset);
        self.pel.insert(
            offset,
            Pending {
                ms,
                consumer: consumer.clone(),
                delivered: now,
                count,
            },
        );
    }

    /// Removes `offset` from the pending entries; returns whether it was there.
    pub fn remove(&mut self, offset: u64) -> bool {
        let Some(p) = self.pel.remove(&offset) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&p.consumer) {
            c.pending.remove(&offset);
        }
        true
    }

    /// Asks for the group's progress (its lowest unacknowledged offset) to be committed. The
    /// commit runs off the command path: losing the last ones in a crash only redelivers.
    pub fn progress(&self) {
        self.committer.request(self.low_water());
    }

    /// Records the group's progress as the next to commit and returns who commits it, so
    /// the commit (an fsync) can run after the caller's locks are released.
    pub(crate) fn progress_committer(&self) -> Arc<Committer> {
        self.committer.desired.store(self.low_water(), SeqCst);
        Arc::clone(&self.committer)
    }

    /// The lowest unacknowledged offset: everything below it was acknowledged (or read with
    /// NOACK, or skipped by SETID).
    fn low_water(&self) -> u64 {
        self.pel
            .keys()
            .next()
            .map_or(self.next, |&o| o.min(self.next))
    }
}

/// Commits one group's lowest unacknowledged offset to its log consumer group, at most one
/// commit at a time and always the latest value.
#[derive(Debug)]
pub(crate) struct Committer {
    log_group: Arc<ConsumerGroup>,
    topic: String,
    desired: AtomicU64,
    scheduled: AtomicBool,
    state: Mutex<CommitState>,
}

#[derive(Debug)]
struct CommitState {
    committed: u64,
    /// Set by `XGROUP DESTROY`/`DEL`: a late commit must not write the group back.
    destroyed: bool,
}

impl Committer {
    fn request(self: &Arc<Self>, offset: u64) {
        // Unchanged (most deliveries): a run already saw this value or will.
        if self.desired.swap(offset, SeqCst) == offset || self.scheduled.swap(true, SeqCst) {
            return;
        }
        let me = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            // The commit fsyncs: keep it off the runtime's worker threads.
            Ok(rt) => drop(rt.spawn_blocking(move || me.run())),
            Err(_) => me.run(),
        }
    }

    pub(crate) fn run(&self) {
        // Cleared before reading `desired`: a later request schedules another run.
        self.scheduled.store(false, SeqCst);
        let mut st = self.state.lock();
        let offset = self.desired.load(SeqCst);
        if !st.destroyed
            && offset != st.committed
            && self.log_group.commit(&self.topic, 0, offset).is_ok()
        {
            st.committed = offset;
        }
    }

    fn commit_now(&self, offset: u64) -> Result<(), String> {
        self.desired.store(offset, SeqCst);
        let mut st = self.state.lock();
        self.log_group
            .commit(&self.topic, 0, offset)
            .map_err(|e| format!("ERR {e}"))?;
        st.committed = offset;
        Ok(())
    }

    fn destroy(&self, log: &Log) {
        let mut st = self.state.lock();
        st.destroyed = true;
        let _ = log.delete_consumer_group(self.log_group.name());
    }
}

/// Escapes for log group names: `.` separates the parts, so only `[A-Za-z0-9-]` stay.
fn group_prefix(key: &[u8]) -> String {
    let mut s = String::from("xg.");
    escape(key, |b| b.is_ascii_alphanumeric() || b == b'-', &mut s);
    s.push('.');
    s
}

fn log_group_name(key: &[u8], group: &[u8]) -> String {
    let mut s = group_prefix(key);
    escape(group, |b| b.is_ascii_alphanumeric() || b == b'-', &mut s);
    s
}

/// The loaded state of the stream topic `name`, if any.
fn state_if_loaded(shared: &Shared, name: &str) -> Option<Arc<StreamState>> {
    shared.streams.states.read().get(name).cloned()
}

/// The groups of stream `key`, loaded from the log on first use: each group resumes at its
/// committed offset with nothing pending.
///
/// # Errors
/// The error reply when the groups on disk cannot be read (a group must never vanish
/// silently: a later `XGROUP CREATE` would overwrite its progress).
pub(crate) fn state(
    shared: &Shared,
    key: &[u8],
    topic: &Topic,
) -> Result<Arc<StreamState>, String> {
    if let Some(s) = state_if_loaded(shared, topic.name()) {
        return Ok(s);
    }
    let mut states = shared.streams.states.write();
    if let Some(s) = states.get(topic.name()) {
        return Ok(Arc::clone(s));
    }
    let failed = |e: crate::error::LogError| format!("ERR cannot load the stream's groups: {e}");
    let prefix = group_prefix(key);
    let p = topic.partition(0).map_err(failed)?;
    let mut groups = BTreeMap::new();
    for name in shared.log.consumer_groups().map_err(failed)? {
        let Some(g) = name.strip_prefix(&prefix).and_then(super::unescape) else {
            continue;
        };
        let lg = shared.log.consumer_group(&name).map_err(failed)?;
        // Committed for an older stream of the same name (deleted, files kept): skip it.
        let Some(committed) = lg.committed(topic.name(), 0) else {
            continue;
        };
        let next = committed.clamp(p.start_offset(), p.end_offset().max(p.start_offset()));
        groups.insert(g, new_group(lg, topic.name(), committed, next));
    }
    let s = Arc::new(StreamState {
        groups: Mutex::new(groups),
    });
    states.insert(topic.name().to_owned(), Arc::clone(&s));
    Ok(s)
}

fn new_group(log_group: Arc<ConsumerGroup>, topic: &str, committed: u64, next: u64) -> Group {
    Group {
        next,
        pel: BTreeMap::new(),
        consumers: BTreeMap::new(),
        committer: Arc::new(Committer {
            log_group,
            topic: topic.to_owned(),
            desired: AtomicU64::new(committed),
            scheduled: AtomicBool::new(false),
            state: Mutex::new(CommitState {
                committed,
                destroyed: false,
            }),
        }),
    }
}

/// Deletes every group of stream `key` (those loaded in `state` and those only on disk).
pub(crate) fn delete_all(shared: &Shared, key: &[u8], state: Option<&StreamState>) {
    if let Some(s) = state {
        for g in std::mem::take(&mut *s.groups.lock()).into_values() {
            g.committer.destroy(&shared.log);
        }
    }
    let prefix = group_prefix(key);
    for name in shared.log.consumer_groups().unwrap_or_default() {
        if name.starts_with(&prefix) {
            let _ = shared.log.delete_consumer_group(&name);
        }
    }
}

/// The `NOGROUP` reply of XGROUP subcommands, XINFO and XPENDING-style commands.
pub(crate) fn no_group(key: &[u8], group: &[u8]) -> String {
    format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    )
}

/// Where a group ID argument puts the group: `$` the end, an ID the entry after it.
fn next_for(p: &Partition, id: &[u8]) -> Result<u64, &'static str> {
    if id == b"$" {
        return Ok(p.end_offset());
    }
    StreamId::parse(id, 0)
        .map(|id| after(p, id))
        .ok_or(INVALID_ID)
}

const NEED_KEY: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

/// `XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER|HELP`.
pub(crate) fn xgroup(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return out.error(&wrong_args("xgroup"));
    }
    if !crate::server::cmd::subcommand_fits(out, args) {
        return;
    }
    let sub = lower(&args[1]);
    if sub == "help" {
        return help(out);
    }
    let (key, group) = (&args[2], &args[3]);
    let mut mkstream = false;
    if matches!(sub.as_str(), "create" | "setid") {
        let mut i = 5;
        while i < args.len() {
            match lower(&args[i]).as_str() {
                "mkstream" if sub == "create" => {
                    mkstream = true;
                    i += 1;
                }
                "entriesread" if i + 1 < args.len() => {
                    // Accepted; quipu knows the exact count (the group's offset).
                    match crate::server::cmd::parse_i64(&args[i + 1]) {
                        None => return out.error("ERR value is not an integer or out of range"),
                        Some(n) if n < -1 => {
                            return out.error("ERR value for ENTRIESREAD must be positive or -1");
                        }
                        Some(_) => {}
                    }
                    i += 2;
                }
                _ => return crate::server::cmd::subcommand_syntax_error(out, args),
            }
        }
    }
    // The table's arities are lower bounds for CREATE and SETID; these are their upper ones.
    let too_many = match sub.as_str() {
        "create" => args.len() > 8,
        "setid" => args.len() != 5 && args.len() != 7,
        _ => false,
    };
    if too_many {
        return crate::server::cmd::subcommand_syntax_error(out, args);
    }
    if super::refuse_other_type(shared, key, out) {
        return;
    }
    // As Redis: CREATE checks its ID before the group's name is taken, and MKSTREAM makes no
    // stream for a CREATE that fails on it.
    let bad_id = sub == "create" && &args[4][..] != b"$" && StreamId::parse(&args[4], 0).is_none();
    let topic = match stream(shared, key, mkstream && !bad_id) {
        Ok(Some(t)) => t,
        Ok(None) if mkstream => return out.error(INVALID_ID),
        Ok(None) => return out.error(NEED_KEY),
        Err(e) => return out.error(&e),
    };
    let Ok(p) = topic.partition(0) else {
        return out.error(NEED_KEY);
    };
    let state = match state(shared, key, &topic) {
        Ok(s) => s,
        Err(e) => return out.error(&e),
    };
    let mut groups = state.groups.lock();
    let now = now_ms(shared);
    match sub.as_str() {
        "create" => {
            let next = match next_for(p, &args[4]) {
                Ok(n) => n,
                Err(e) => return out.error(e),
            };
            if groups.contains_key(group) {
                return out.error("BUSYGROUP Consumer Group name already exists");
            }
            let lg = match shared.log.consumer_group(&log_group_name(key, group)) {
                Ok(g) => g,
                Err(crate::error::LogError::InvalidTopicName { .. }) => {
                    return out.error(&format!(
                        "ERR quipu keeps a group in a log group name of at most {} bytes: \
                         \"xg.\", the stream's key, \".\" and the group's name, each byte \
                         outside [A-Za-z0-9-] taking 3",
                        crate::log::MAX_NAME_LEN
                    ));
                }
                Err(e) => return out.error(&format!("ERR cannot create the group: {e}")),
            };
            let g = new_group(lg, topic.name(), u64::MAX, next);
            // The group exists once its first commit is on disk.
            if let Err(e) = g.committer.commit_now(next) {
                return out.error(&e);
            }
            groups.insert(group.clone(), g);
            out.ok();
        }
        "setid" => {
            let Some(g) = groups.get_mut(group) else {
                return out.error(&no_group(key, group));
            };
            // SETID also takes `-` and `+` (the first and the last possible ID), as Redis
            // 7.0 does; CREATE does not.
            let id: &[u8] = match &args[4][..] {
                b"-" => b"0",
                b"+" => b"$",
                id => id,
            };
            match next_for(p, id) {
                Ok(next) => g.next = next,
                Err(e) => return out.error(e),
            }
            g.progress();
            out.ok();
        }
        "destroy" => match groups.remove(group) {
            Some(g) => {
                g.committer.destroy(&shared.log);
                out.int(1);
            }
            None => out.int(0),
        },
        "createconsumer" => {
            let Some(g) = groups.get_mut(group) else {
                return out.error(&no_group(key, group));
            };
            let created = !g.consumers.contains_key(&args[4]);
            g.consumer(&args[4], now);
            out.int(i64::from(created));
        }
        _ => {
            let Some(g) = groups.get_mut(group) else {
                return out.error(&no_group(key, group));
            };
            let Some(c) = g.consumers.remove(&args[4]) else {
                return out.int(0);
            };
            for o in &c.pending {
                g.pel.remove(o);
            }
            g.progress();
            out.int(c.pending.len() as i64);
        }
    }
    drop(groups);
    shared.streams.notify();
}

fn help(out: &mut Out) {
    let lines = [
        "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CREATE <key> <groupname> <id|$> [option]",
        "    Create a new consumer group. Options are:",
        "    * MKSTREAM",
        "      Create the empty stream if it does not exist.",
        "CREATECONSUMER <key> <groupname> <consumer>",
        "    Create a new consumer in the specified group.",
        "DELCONSUMER <key> <groupname> <consumer>",
        "    Remove the specified consumer.",
        "DESTROY <key> <groupname>",
        "    Remove the specified group.",
        "SETID <key> <groupname> <id|$>",
        "    Set the current group ID.",
        "HELP",
        "    Prints this help.",
    ];
    out.simple_lines(&lines);
}
