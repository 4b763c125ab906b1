//! Idempotent publish: message ids remembered for a window, oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Dedup {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `id` at `now`; false if it was seen within the window.
    pub(crate) fn first_time(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((at, old)) = self.order.pop_front()
                && self.seen.get(&old) == Some(&at)
            {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_ids_for_the_window_only() {
        let mut d = Dedup::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(d.first_time("pay-1", t0));
        assert!(!d.first_time("pay-1", t0 + Duration::from_secs(9)));
        assert!(d.first_time("pay-2", t0 + Duration::from_secs(9)));
        assert!(d.first_time("pay-1", t0 + Duration::from_secs(11)));
        assert!(!d.first_time("pay-2", t0 + Duration::from_secs(11)));
    }
}
