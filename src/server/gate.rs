//! The gate that makes `EXEC` atomic: every command runs in a shared section, an `EXEC`'s
//! queued commands in an exclusive one that no other command overlaps.
//!
//! Commands run from every I/O thread, so a global read-write lock would put one contended
//! cache line under every command. Instead each thread has its own slot (on its own cache
//! line) that it marks while it runs a command: the common path writes only its own line and
//! reads a flag that changes only around an `EXEC`. An exclusive section closes the gate,
//! waits for every marked slot to clear, runs, then reopens it. Both sides write their flag,
//! then read the other's, all sequentially consistent (Dekker's pattern): a command and an
//! `EXEC` cannot both miss each other. No section spans an `.await`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// One thread's mark: set while the thread runs a command. On a cache line of its own, so
/// marking it never touches another thread's.
#[repr(align(128))]
struct Slot(AtomicBool);

impl std::ops::Deref for Slot {
    type Target = AtomicBool;
    fn deref(&self) -> &AtomicBool {
        &self.0
    }
}

/// Every thread's slot, for the exclusive side to wait on.
static SLOTS: Mutex<Vec<Weak<Slot>>> = Mutex::new(Vec::new());

/// Set while an exclusive section runs or waits to.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// One exclusive section at a time.
static EXCLUSIVE_LOCK: Mutex<()> = Mutex::new(());

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot(AtomicBool::new(false)));
        let mut all = SLOTS.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&slot));
        slot
    };
    /// Whether this thread is inside an exclusive section (its commands then pass at once).
    static IN_EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Clears this thread's slot when the section ends, by return or by panic.
struct Release<'a>(&'a Slot);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

/// Runs `f` (one command) while no exclusive section runs. Sections nest: a command that
/// runs inside another, or inside an exclusive section on this thread, passes at once.
pub(crate) fn shared<T>(f: impl FnOnce() -> T) -> T {
    if IN_EXCLUSIVE.get() {
        return f();
    }
    // Borrowed, not cloned: a clone would write the slot's reference count twice per command.
    SLOT.with(|slot| {
        if slot.load(SeqCst) {
            return f();
        }
        loop {
            slot.store(true, SeqCst);
            if !CLOSED.load(SeqCst) {
                break;
            }
            // An exclusive section is running or waiting: step aside until it is done.
            slot.store(false, SeqCst);
            wait_while(&CLOSED, 100);
        }
        let _release = Release(slot);
        f()
    })
}

/// Waits for `flag` to clear: `spins` turns of spinning (the other side's section is short),
/// then yielding the core.
fn wait_while(flag: &AtomicBool, spins: u32) {
    let mut spun = 0;
    while flag.load(SeqCst) {
        if spun < spins {
            std::hint::spin_loop();
            spun += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Reopens the gate when the exclusive section ends, by return or by panic.
struct Reopen;

impl Drop for Reopen {
    fn drop(&mut self) {
        IN_EXCLUSIVE.set(false);
        CLOSED.store(false, SeqCst);
    }
}

/// Runs `f` (an `EXEC`'s commands) with no command of any other thread running meanwhile.
pub(crate) fn exclusive<T>(f: impl FnOnce() -> T) -> T {
    if IN_EXCLUSIVE.get() {
        return f();
    }
    let _one = EXCLUSIVE_LOCK.lock();
    let own = SLOT.with(Arc::clone);
    CLOSED.store(true, SeqCst);
    let _reopen = Reopen;
    let slots: Vec<Arc<Slot>> = SLOTS.lock().iter().filter_map(Weak::upgrade).collect();
    for slot in slots.iter().filter(|s| !Arc::ptr_eq(s, &own)) {
        wait_while(slot, 1000);
    }
    IN_EXCLUSIVE.set(true);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn no_command_runs_between_the_steps_of_an_exclusive_section() {
        // Writers move a pair of counters apart and back inside shared sections; an exclusive
        // section reads them twice: it must never see a half-done move, nor a change between
        // its two reads.
        let a = Arc::new(AtomicU64::new(0));
        let b = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let (a, b, stop) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        shared(|| {
                            a.fetch_add(1, SeqCst);
                            std::hint::spin_loop();
                            b.fetch_add(1, SeqCst);
                        });
                    }
                })
            })
            .collect();
        // The writers must be running before the sections start: on a loaded machine the
        // 2,000 sections could otherwise all end before a writer got a core.
        let start = std::time::Instant::now();
        while a.load(SeqCst) < 100 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the writers never ran"
            );
            std::thread::yield_now();
        }
        for _ in 0..2000 {
            exclusive(|| {
                let (x, y) = (a.load(SeqCst), b.load(SeqCst));
                assert_eq!(x, y, "a command was half done");
                std::hint::spin_loop();
                assert_eq!(a.load(SeqCst), x, "a command ran inside the section");
                // Nested sections on the exclusive thread pass.
                shared(|| a.load(SeqCst));
            });
        }
        stop.store(true, SeqCst);
        for w in writers {
            w.join().unwrap();
        }
    }

    #[test]
    fn a_panic_inside_either_section_leaves_the_gate_usable() {
        let r = std::panic::catch_unwind(|| shared(|| panic!("in a command")));
        assert!(r.is_err());
        let r = std::panic::catch_unwind(|| exclusive(|| panic!("in an exec")));
        assert!(r.is_err());
        // Another thread still gets in, and so does this one.
        let t = std::thread::spawn(|| shared(|| 7));
        assert_eq!(t.join().unwrap(), 7);
        assert_eq!(exclusive(|| shared(|| 8)), 8);
        assert!(!CLOSED.load(SeqCst));
    }
}
