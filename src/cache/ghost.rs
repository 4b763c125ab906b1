//! The ghost FIFO of S3-FIFO: fingerprints of keys recently evicted from the small queue, so a
//! key that comes back soon is admitted straight to the main queue.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// Fingerprints (32 bits of the key's hash) in FIFO order, with a count per fingerprint so a
/// key evicted twice stays remembered until its last copy leaves the FIFO. Bounded by the
/// number of live entries in the shard, as in the S3-FIFO paper.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    fifo: VecDeque<u32>,
    counts: HashTable<(u32, u32)>,
}

fn fingerprint(hash: u64) -> u32 {
    // The low half: the shard index comes from bits 32.. of the hash.
    hash as u32
}

/// hashbrown filters on the top 7 bits of the hash: spread the fingerprint over all 64.
fn spread(fp: u32) -> u64 {
    u64::from(fp).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Ghost {
    /// Remembers a key; forgets the oldest ones beyond `capacity`.
    pub(crate) fn push(&mut self, hash: u64, capacity: usize) {
        let fp = fingerprint(hash);
        match self.counts.find_mut(spread(fp), |&(f, _)| f == fp) {
            Some(entry) => entry.1 += 1,
            None => {
                self.counts
                    .insert_unique(spread(fp), (fp, 1), |&(f, _)| spread(f));
            }
        }
        self.fifo.push_back(fp);
        while self.fifo.len() > capacity.max(16) {
            if let Some(old) = self.fifo.pop_front() {
                self.forget(old);
            }
        }
    }

    /// Returns whether the key is remembered. It stays remembered until its copies leave the
    /// FIFO: forgetting it here would let the stale copy erase a later push of the same key.
    pub(crate) fn contains(&self, hash: u64) -> bool {
        let fp = fingerprint(hash);
        self.counts.find(spread(fp), |&(f, _)| f == fp).is_some()
    }

    fn forget(&mut self, fp: u32) {
        if let Ok(mut entry) = self.counts.find_entry(spread(fp), |&(f, _)| f == fp) {
            if entry.get().1 > 1 {
                entry.get_mut().1 -= 1;
            } else {
                entry.remove();
            }
        }
    }
}
