//! Stream entry IDs and where they fall in the log.
//!
//! An entry's ID is `<record timestamp ms>-<log offset>`. Offsets grow by one per entry and
//! timestamps do not decrease (the log stamps batches with its clock), so ID order is offset
//! order and any ID a client sends, ours or made up, maps to a position: the entries with a
//! timestamp of exactly `ms` are the offsets `[first ts >= ms, first ts >= ms + 1)`, and `ms-seq`
//! falls inside that run at `seq`, clamped to it.

use std::fmt;

use crate::log::Partition;

/// The reply to an ID that does not parse.
pub(crate) const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// A stream entry ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part: the log offset for IDs quipu assigned.
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl StreamId {
    /// Parses `ms-seq`, or `ms` alone with `missing_seq` as the sequence (0 for a start,
    /// `u64::MAX` for an end, as Redis does).
    pub fn parse(b: &[u8], missing_seq: u64) -> Option<Self> {
        let s = std::str::from_utf8(b).ok()?;
        match s.split_once('-') {
            Some((ms, seq)) => Some(Self {
                ms: id_part(ms)?,
                seq: id_part(seq)?,
            }),
            None => Some(Self {
                ms: id_part(s)?,
                seq: missing_seq,
            }),
        }
    }

    /// The smallest ID after this one (`None` after the largest).
    pub fn next(self) -> Option<Self> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(Self { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| Self { ms, seq: 0 }),
        }
    }
}

/// One part of an ID (split at its first `-`) as Redis's `string2ull` reads it: a plain
/// number, else what C's `strtoull` takes whole (leading white space, then a `+`, or a `-` that
/// wraps the value around), but never a negative plain number such as `-5`.
pub(crate) fn id_part(p: &str) -> Option<u64> {
    if let [b'-', b'1'..=b'9', rest @ ..] = p.as_bytes()
        && rest.iter().all(u8::is_ascii_digit)
        && p[1..].parse::<u64>().is_ok_and(|m| m <= 1 << 63)
    {
        // `string2ll` reads it, as a negative number.
        return None;
    }
    let t = p.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// The first offset at or after the first entry with a timestamp of at least `ms`.
fn first_at_time(p: &Partition, ms: u64) -> u64 {
    p.offset_for_timestamp(ms)
        .ok()
        .flatten()
        .unwrap_or_else(|| p.end_offset())
}

/// The offset of the first entry whose ID is at least `id` (the end offset if none).
pub(crate) fn at_or_after(p: &Partition, id: StreamId) -> u64 {
    let end = p.end_offset();
    // Fast path: an ID quipu handed out names its own offset.
    if id_at(p, id.seq) == Some(id) {
        return id.seq;
    }
    let lo = first_at_time(p, id.ms);
    let hi = id.ms.checked_add(1).map_or(end, |ms| first_at_time(p, ms));
    id.seq.clamp(lo, hi.max(lo))
}

/// The offset of the first entry whose ID is greater than `id`.
pub(crate) fn after(p: &Partition, id: StreamId) -> u64 {
    // Fast path: after an ID quipu handed out (a reader's last seen ID) comes the next offset.
    if id_at(p, id.seq) == Some(id) {
        return id.seq + 1;
    }
    id.next()
        .map_or_else(|| p.end_offset(), |n| at_or_after(p, n))
}

/// The ID of the entry at `offset`, if it is still in the log.
pub(crate) fn id_at(p: &Partition, offset: u64) -> Option<StreamId> {
    if !(p.start_offset()..p.end_offset()).contains(&offset) {
        return None;
    }
    let r = p.read(offset, 1).ok()?;
    let r = r.first().filter(|r| r.offset == offset)?;
    Some(StreamId {
        ms: r.timestamp,
        seq: offset,
    })
}

/// The ID of the last entry before `next` (`0-0` if none).
pub(crate) fn id_before(p: &Partition, next: u64) -> StreamId {
    next.checked_sub(1)
        .and_then(|o| id_at(p, o))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::StreamId;

    #[test]
    fn parses_ids_as_redis_does() {
        assert_eq!(
            StreamId::parse(b"12-3", 0),
            Some(StreamId { ms: 12, seq: 3 })
        );
        assert_eq!(
            StreamId::parse(b"12", u64::MAX),
            Some(StreamId {
                ms: 12,
                seq: u64::MAX
            })
        );
        let bad = [
            &b""[..],
            b"-",
            b"1-",
            b"-1",
            b" -1",
            b"-0",
            b"a-1",
            b"1-2-3",
            b"1--5",
            b"1-+",
            b"1- ",
            b"18446744073709551616",
        ];
        for bad in bad {
            assert_eq!(StreamId::parse(bad, 0), None, "{bad:?}");
        }
        // What C's strtoull takes, Redis takes too: white space first, a sign, leading zeros.
        let id = |ms, seq| Some(StreamId { ms, seq });
        assert_eq!(StreamId::parse(b" 1", 0), id(1, 0));
        assert_eq!(StreamId::parse(b"\t3", 0), id(3, 0));
        assert_eq!(StreamId::parse(b"+1", 0), id(1, 0));
        assert_eq!(StreamId::parse(b"007", 0), id(7, 0));
        assert_eq!(StreamId::parse(b"1-+2", 0), id(1, 2));
        assert_eq!(StreamId::parse(b"1- 2", 0), id(1, 2));
        assert_eq!(StreamId::parse(b"1--0", 0), id(1, 0));
        assert_eq!(
            StreamId::parse(b"1- -1", 0),
            id(1, u64::MAX),
            "strtoull wraps"
        );
        let max = StreamId {
            ms: u64::MAX,
            seq: u64::MAX,
        };
        assert_eq!(max.next(), None);
        assert_eq!(
            StreamId {
                ms: 1,
                seq: u64::MAX
            }
            .next(),
            Some(StreamId { ms: 2, seq: 0 })
        );
    }
}
