//! The ghost FIFO of S3-FIFO: fingerprints of keys recently evicted from the small queue, so a
//! key that comes back soon is admitted straight to the main queue.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// Fingerprints (32 bits of the key's hash) in FIFO order. Each push gets a sequence number and
/// `latest` maps a fingerprint to its newest one: a key found here on re-admission is
/// forgotten at once, and a copy leaving the FIFO forgets the key only if it is still the
/// newest copy, so an old copy never erases a later eviction of the same key. Bounded by the
/// number of live entries in the shard, as in the S3-FIFO paper.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    fifo: VecDeque<(u32, u32)>,
    latest: HashTable<(u32, u32)>,
    next_seq: u32,
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
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        match self.latest.find_mut(spread(fp), |&(f, _)| f == fp) {
            Some(entry) => entry.1 = seq,
            None => {
                self.latest
                    .insert_unique(spread(fp), (fp, seq), |&(f, _)| spread(f));
            }
        }
        self.fifo.push_back((fp, seq));
        while self.fifo.len() > capacity.max(16) {
            if let Some((old, old_seq)) = self.fifo.pop_front()
                && let Ok(entry) = self
                    .latest
                    .find_entry(spread(old), |&(f, s)| f == old && s == old_seq)
            {
                entry.remove();
            }
        }
    }

    /// Returns whether the key was remembered, and forgets it.
    pub(crate) fn remove(&mut self, hash: u64) -> bool {
        let fp = fingerprint(hash);
        match self.latest.find_entry(spread(fp), |&(f, _)| f == fp) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_copy_does_not_erase_a_later_eviction() {
        let mut g = Ghost::default();
        g.push(7, 16);
        assert!(g.remove(7), "re-admitted");
        g.push(7, 16); // evicted again
        for h in 100..115 {
            g.push(h, 16); // the first copy of 7 leaves the FIFO
        }
        assert!(g.remove(7), "the later eviction is still remembered");
        assert!(!g.remove(7));
    }

    #[test]
    fn bounded_by_capacity() {
        let mut g = Ghost::default();
        for h in 0..1000 {
            g.push(h, 100);
        }
        assert!(!g.remove(0));
        assert!(g.remove(999));
        assert!(g.fifo.len() <= 100);
    }
}
