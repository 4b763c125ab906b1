//! The sparse index of a segment: `(offset, max timestamp so far, byte position)` once per
//! index interval. Derived data: recovery never trusts it over the log.

/// Bytes per entry on disk.
pub(crate) const ENTRY_LEN: usize = 24;

/// One index entry: the batch at `position` starts at `offset`; `max_timestamp` is the largest
/// timestamp of any record before the end of that batch in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub max_timestamp: u64,
    pub position: u64,
}

impl IndexEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
    }
}

/// Parses an index file, keeping the longest prefix of entries that is well-formed
/// (strictly increasing offsets and positions, positions inside `log_len`).
pub(crate) fn decode(bytes: &[u8], base_offset: u64, log_len: u64) -> Vec<IndexEntry> {
    let mut out: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
    for chunk in bytes.chunks_exact(ENTRY_LEN) {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&chunk[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let e = IndexEntry {
            offset: word(0),
            max_timestamp: word(8),
            position: word(16),
        };
        let ordered = out.last().is_none_or(|p| {
            e.offset > p.offset && e.position > p.position && e.max_timestamp >= p.max_timestamp
        });
        if !ordered || e.offset < base_offset || e.position >= log_len {
            break;
        }
        out.push(e);
    }
    out
}

/// Position to start scanning from to find `offset`: the last entry at or before it.
pub(crate) fn position_for_offset(index: &[IndexEntry], offset: u64) -> u64 {
    let i = index.partition_point(|e| e.offset <= offset);
    if i == 0 { 0 } else { index[i - 1].position }
}

/// Position to start scanning from to find the first record with timestamp `>= ts`.
pub(crate) fn position_for_timestamp(index: &[IndexEntry], ts: u64) -> u64 {
    let i = index.partition_point(|e| e.max_timestamp < ts);
    if i == 0 { 0 } else { index[i - 1].position }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_keeps_the_well_formed_prefix() {
        let mut bytes = Vec::new();
        for (o, p) in [(10, 0), (20, 100), (30, 200), (25, 300)] {
            IndexEntry {
                offset: o,
                max_timestamp: o,
                position: p,
            }
            .encode(&mut bytes);
        }
        bytes.push(7); // torn entry
        let idx = decode(&bytes, 10, 1000);
        assert_eq!(idx.len(), 3);
        assert_eq!(position_for_offset(&idx, 25), 100);
        assert_eq!(position_for_offset(&idx, 5), 0);
        assert_eq!(position_for_timestamp(&idx, 21), 100);
        assert_eq!(decode(&bytes, 10, 150).len(), 2);
    }
}
