//! Event sourcing on the log: one stream of events per aggregate, appended with an expected
//! version (a conflict otherwise), read back, folded into aggregates with snapshots in the
//! store, and projected into read models by checkpointed consumers (`projection.rs`).
//!
//! Events live in one log topic, keyed by stream (so a stream stays in one partition, in
//! order), with headers `stream`, `version` and `type`. The stream index (version → position)
//! is rebuilt from the topic when the store opens.

mod projection;

pub use projection::{Projection, ProjectionRunner};

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Durability, TopicConfig};
use crate::error::{Error, EventError};
use crate::log::{Log, Message, Record, Topic};
use crate::store::Store;

/// The store table holding aggregate snapshots.
pub const SNAPSHOT_TABLE: &str = "_event_snapshots";

/// What version a stream must be at for an append to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpectedVersion {
    /// Any version (no concurrency check).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have exactly this many events.
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewEvent {
    /// The event's type, e.g. `PaymentAuthorized`.
    pub kind: String,
    /// Its payload.
    pub data: Bytes,
}

impl NewEvent {
    /// An event of `kind` with `data`.
    #[must_use]
    pub fn new(kind: &str, data: impl Into<Bytes>) -> Self {
        Self {
            kind: kind.to_owned(),
            data: data.into(),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Its stream.
    pub stream: String,
    /// Its version in the stream: 1 for the first event.
    pub version: u64,
    /// Its type.
    pub kind: String,
    /// Its payload.
    pub data: Bytes,
    /// When it was appended (ms since the epoch).
    pub timestamp: u64,
    /// Its partition in the events topic.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a Bytes> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

impl StoredEvent {
    /// Decodes an events-topic record.
    ///
    /// # Errors
    /// [`EventError::Decode`] when a header is missing or malformed.
    pub fn from_record(partition: u32, r: &Record) -> Result<Self, EventError> {
        let bad = |reason: &str| EventError::Decode {
            what: format!("event at {partition}/{}", r.offset),
            reason: reason.to_owned(),
        };
        let text = |name: &str| {
            header(r, name)
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("header {name} missing")))
        };
        Ok(Self {
            stream: text("stream")?,
            version: text("version")?.parse().map_err(|_| bad("bad version"))?,
            kind: text("type")?,
            data: r.value.clone().unwrap_or_default(),
            timestamp: r.timestamp,
            partition,
            offset: r.offset,
        })
    }
}

/// Something rebuilt by folding its stream's events, snapshotted in the store.
pub trait Aggregate: Default + Serialize + DeserializeOwned {
    /// A name unique among aggregates (keys the snapshots).
    const NAME: &'static str;

    /// Applies one event.
    fn apply(&mut self, event: &StoredEvent);
}

#[derive(Debug, Default)]
struct StreamState {
    /// `positions[v - 1]` is where version `v` is.
    positions: Vec<(u32, u64)>,
}

/// Streams of events with optimistic concurrency.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{EventStore, ExpectedVersion, NewEvent, Quipu};
///
/// let db = Quipu::open(dir.path())?;
/// let events = EventStore::open(db.log(), "ledger", db.store().clone(), 100)?;
/// events.append("acct-7", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "{}")])?;
/// let v = events.append("acct-7", ExpectedVersion::Exact(1), &[NewEvent::new("Deposited", "50")])?;
/// assert_eq!(v, 2);
/// // A writer still at version 1 conflicts.
/// assert!(events.append("acct-7", ExpectedVersion::Exact(1), &[NewEvent::new("Deposited", "9")]).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventStore {
    topic: Arc<Topic>,
    store: Arc<dyn Store>,
    streams: Arc<Mutex<HashMap<String, Arc<Mutex<StreamState>>>>>,
    snapshot_every: u64,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("topic", &self.topic.name())
            .finish_non_exhaustive()
    }
}

impl EventStore {
    /// Opens the event store on topic `topic` (created with `Durability::Always` if missing),
    /// rebuilding the stream index from it. Aggregates are snapshotted in `store` every
    /// `snapshot_every` events (0: never).
    ///
    /// # Errors
    /// Log errors creating or reading the topic; [`EventError::Decode`] for a foreign record.
    pub fn open(
        log: &Log,
        topic: &str,
        store: Arc<dyn Store>,
        snapshot_every: u64,
    ) -> Result<Self, Error> {
        let topic = match log.topic(topic) {
            Ok(t) => t,
            Err(_) => log.create_topic(
                topic,
                TopicConfig::default()
                    .with_partitions(4)
                    .with_durability(Durability::Always),
            )?,
        };
        let mut streams: HashMap<String, StreamState> = HashMap::new();
        for p in topic.partitions() {
            let mut offset = p.start_offset();
            loop {
                let records = p.read(offset, 4096)?;
                let Some(last) = records.last() else { break };
                offset = last.offset + 1;
                for r in &records {
                    let e = StoredEvent::from_record(p.id(), r)?;
                    let s = streams.entry(e.stream).or_default();
                    s.positions.push((p.id(), r.offset));
                }
            }
        }
        Ok(Self {
            topic,
            store,
            streams: Arc::new(Mutex::new(
                streams
                    .into_iter()
                    .map(|(k, v)| (k, Arc::new(Mutex::new(v))))
                    .collect(),
            )),
            snapshot_every,
        })
    }

    fn stream(&self, name: &str) -> Result<Arc<Mutex<StreamState>>, EventError> {
        if name.is_empty() || name.len() > 256 {
            return Err(EventError::InvalidStream(name.to_owned()));
        }
        Ok(Arc::clone(
            self.streams.lock().entry(name.to_owned()).or_default(),
        ))
    }

    /// The number of events in `stream` (0 if it does not exist).
    #[must_use]
    pub fn version(&self, stream: &str) -> u64 {
        self.streams
            .lock()
            .get(stream)
            .map_or(0, |s| s.lock().positions.len() as u64)
    }

    /// Appends `events` to `stream` if it is at `expected`; returns the new version. The
    /// events are durable (one atomic batch) when this returns. Appends to different streams
    /// share fsyncs; appends to one stream are serialised.
    ///
    /// # Errors
    /// [`EventError::Conflict`] when the stream is at another version; log errors.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<u64, Error> {
        let state = self.stream(stream)?;
        let mut st = state.lock();
        let current = st.positions.len() as u64;
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        };
        if !ok {
            return Err(EventError::Conflict {
                stream: stream.to_owned(),
                expected: expected.to_string(),
                actual: current,
            }
            .into());
        }
        if events.is_empty() {
            return Ok(current);
        }
        let messages: Vec<Message> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                Message::new(e.data.clone())
                    .with_key(stream.to_owned())
                    .with_header("stream", stream.to_owned())
                    .with_header("version", (current + 1 + i as u64).to_string())
                    .with_header("type", e.kind.clone())
            })
            .collect();
        let partition = self.topic.partition_for_key(stream.as_bytes());
        let receipt = self.topic.append_batch(partition, &messages)?;
        for i in 0..events.len() as u64 {
            st.positions.push((receipt.partition, receipt.offset + i));
        }
        Ok(st.positions.len() as u64)
    }

    /// Events of `stream` with version ≥ `from` (1 for all), in order.
    ///
    /// # Errors
    /// Log errors reading.
    pub fn read(&self, stream: &str, from: u64) -> Result<Vec<StoredEvent>, Error> {
        let positions: Vec<(u32, u64)> = match self.streams.lock().get(stream) {
            Some(s) => s
                .lock()
                .positions
                .iter()
                .skip(from.saturating_sub(1) as usize)
                .copied()
                .collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::with_capacity(positions.len());
        for (p, offset) in positions {
            let records = self.topic.read(p, offset, 1)?;
            let r = records.first().ok_or_else(|| EventError::Decode {
                what: format!("event at {p}/{offset}"),
                reason: "missing from the log".to_owned(),
            })?;
            out.push(StoredEvent::from_record(p, r)?);
        }
        Ok(out)
    }

    /// Rebuilds aggregate `A` of `stream`: its latest snapshot, then the events after it.
    /// Writes a new snapshot when `snapshot_every` events or more were applied on top.
    /// Returns the aggregate and its version.
    ///
    /// # Errors
    /// Log and store errors; [`EventError::Decode`] for a snapshot that does not decode.
    pub fn load<A: Aggregate>(&self, stream: &str) -> Result<(A, u64), Error> {
        let key = format!("{}/{stream}", A::NAME);
        let (mut agg, mut version) = match self.store.get(SNAPSHOT_TABLE, key.as_bytes())? {
            Some(bytes) => postcard::from_bytes::<(u64, A)>(&bytes)
                .map(|(v, a)| (a, v))
                .map_err(|e| EventError::Decode {
                    what: format!("snapshot {key}"),
                    reason: e.to_string(),
                })?,
            None => (A::default(), 0),
        };
        let since = version;
        for e in self.read(stream, version + 1)? {
            agg.apply(&e);
            version = e.version;
        }
        if self.snapshot_every > 0 && version - since >= self.snapshot_every {
            let bytes =
                postcard::to_allocvec(&(version, &agg)).map_err(|e| EventError::Decode {
                    what: format!("snapshot {key}"),
                    reason: e.to_string(),
                })?;
            self.store.put(SNAPSHOT_TABLE, key.as_bytes(), &bytes)?;
        }
        Ok((agg, version))
    }

    /// The events topic (for projections and followers).
    #[must_use]
    pub fn topic(&self) -> &Arc<Topic> {
        &self.topic
    }
}
