//! Records borrowed from a batch instead of copied out of it: the cheapest way to read records
//! when they are processed on the spot (no allocation, no reference count per record).

use super::read::BatchView;
use super::record::{Message, RawRecord, RawRecords, Record};
use super::segment::{self, Segment};
use crate::error::LogError;
use bytes::Bytes;

/// A record borrowed from a batch lent by [`Partition::visit_batches`](super::Partition::visit_batches):
/// its key, value and headers point into the batch and live only as long as the visit.
///
/// ```
/// # fn main() -> Result<(), quipu::Error> {
/// # let dir = tempfile::tempdir().map_err(|e| quipu::Error::Io { path: ".".into(), source: e })?;
/// use quipu::{Message, Quipu};
/// use std::ops::ControlFlow;
///
/// let db = Quipu::open(dir.path())?;
/// let topic = db.log().topic_or_create("rides")?;
/// topic.append(Message::new("12.50").with_key("rider-7"))?;
/// let mut total = 0.0;
/// topic.partition(0).expect("partition 0").visit_batches(0, |batch| {
///     for record in batch.record_views() {
///         let Ok(record) = record else { return ControlFlow::Break(()) };
///         let fare = std::str::from_utf8(record.value().unwrap_or_default()).unwrap_or("0");
///         total += fare.parse::<f64>().unwrap_or(0.0);
///     }
///     ControlFlow::Continue(())
/// })?;
/// assert_eq!(total, 12.5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    raw: RawRecord<'a>,
}

impl<'a> RecordView<'a> {
    /// Position in its partition.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.raw.offset
    }

    /// Milliseconds since the epoch.
    #[must_use]
    pub fn timestamp(&self) -> u64 {
        self.raw.timestamp
    }

    /// The key, if any.
    #[must_use]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.raw.key
    }

    /// The value; `None` for a tombstone.
    #[must_use]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.raw.value
    }

    /// Whether this record is a tombstone.
    #[must_use]
    pub fn is_tombstone(&self) -> bool {
        self.raw.value.is_none()
    }

    /// The application headers: names and values.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        self.raw.headers()
    }

    /// An owned copy of this record.
    #[must_use]
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset(),
            timestamp: self.timestamp(),
            key: self.key().map(Bytes::copy_from_slice),
            value: self.value().map(Bytes::copy_from_slice),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_owned(), Bytes::copy_from_slice(v)))
                .collect(),
        }
    }

    /// This record as a message with the same key, value, headers and timestamp.
    #[must_use]
    pub fn to_message(&self) -> Message {
        self.to_record().to_message()
    }
}

/// The records of a batch, borrowed: see [`BatchView::record_views`].
#[derive(Debug, Clone)]
pub struct RecordViews<'a> {
    raw: RawRecords<'a>,
    segment: &'a Segment,
    position: u64,
}

impl<'a> RecordViews<'a> {
    pub(crate) fn new(view: &BatchView<'a>) -> Self {
        let (bytes, header, segment, position) = view.parts();
        Self {
            raw: RawRecords::new(bytes, header),
            segment,
            position,
        }
    }
}

impl<'a> Iterator for RecordViews<'a> {
    type Item = Result<RecordView<'a>, LogError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.raw.next()? {
            Ok(raw) => Some(Ok(RecordView { raw })),
            Err(e) => Some(Err(self.failure(&e))),
        }
    }
}

impl RecordViews<'_> {
    /// Out of line: building the error is rare and would bloat the loop around `next`.
    #[cold]
    #[inline(never)]
    fn failure(&self, e: &super::record::DecodeError) -> LogError {
        segment::decode_failure(&self.segment.log_path, self.position, e)
    }
}
