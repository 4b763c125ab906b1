//! Producer idempotence: each idempotent batch carries a producer id and the sequence number of
//! its first record. A partition remembers the last few batches of each producer, so a retried
//! batch is answered with its original offsets instead of being appended twice.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::record::ProducerStamp;
use crate::error::LogError;

/// Batches remembered per producer: a retry of any of them is recognised.
const REMEMBERED: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMark {
    sequence: u32,
    count: u32,
    base_offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    next_sequence: u32,
    recent: VecDeque<BatchMark>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Append it.
    New,
    /// Already appended at this base offset: answer without writing.
    Duplicate { base_offset: u64 },
}

/// The producer state of one partition, rebuilt on open from the last snapshot plus the
/// batches of the active segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerTable {
    producers: HashMap<u64, ProducerEntry>,
}

impl ProducerTable {
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn admit(&self, stamp: ProducerStamp, count: u32) -> Result<Admission, LogError> {
        let Some(entry) = self.producers.get(&stamp.id) else {
            return Ok(Admission::New);
        };
        if stamp.sequence == entry.next_sequence {
            return Ok(Admission::New);
        }
        if let Some(mark) = entry.recent.iter().find(|m| m.sequence == stamp.sequence)
            && mark.count == count
        {
            return Ok(Admission::Duplicate {
                base_offset: mark.base_offset,
            });
        }
        // Sequences are compared on the wrapping u32 circle: "ahead" is less than half a turn.
        if stamp.sequence.wrapping_sub(entry.next_sequence) < u32::MAX / 2 {
            Err(LogError::OutOfOrderSequence {
                producer_id: stamp.id,
                expected: entry.next_sequence,
                got: stamp.sequence,
            })
        } else {
            Err(LogError::StaleSequence {
                producer_id: stamp.id,
                got: stamp.sequence,
            })
        }
    }

    pub fn record(&mut self, stamp: ProducerStamp, count: u32, base_offset: u64) {
        let entry = self.producers.entry(stamp.id).or_default();
        entry.next_sequence = stamp.sequence.wrapping_add(count);
        if entry.recent.len() == REMEMBERED {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchMark {
            sequence: stamp.sequence,
            count,
            base_offset,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_recognised_and_gaps_refused() {
        let mut t = ProducerTable::default();
        let s = |sequence| ProducerStamp { id: 7, sequence };
        assert_eq!(t.admit(s(0), 2).ok(), Some(Admission::New));
        t.record(s(0), 2, 100);
        assert_eq!(
            t.admit(s(0), 2).ok(),
            Some(Admission::Duplicate { base_offset: 100 })
        );
        assert_eq!(t.admit(s(2), 1).ok(), Some(Admission::New));
        assert!(matches!(
            t.admit(s(5), 1),
            Err(LogError::OutOfOrderSequence { expected: 2, .. })
        ));
        assert!(matches!(
            t.admit(s(1), 1),
            Err(LogError::StaleSequence { .. })
        ));
    }
}
