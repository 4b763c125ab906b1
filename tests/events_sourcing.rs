//! Event sourcing: concurrent appends with one expected version (exactly one wins), streams
//! read back and rebuilt across a reopen, aggregates snapshotted in the store, and a projection
//! rebuilt from offset 0 equal to the one maintained incrementally.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use quipu::{
    Aggregate, Error, EventError, EventStore, ExpectedVersion, NewEvent, Projection,
    ProjectionRunner, Quipu, SNAPSHOT_TABLE, StoredEvent,
};
use serde::{Deserialize, Serialize};

#[test]
fn concurrent_appends_at_one_expected_version_exactly_one_wins() {
    let dir = common::tempdir();
    let db = Quipu::open(dir.path()).unwrap();
    let events = EventStore::open(db.log(), "ledger", db.store().clone(), 0).unwrap();
    events
        .append(
            "acct-1",
            ExpectedVersion::NoStream,
            &[NewEvent::new("Opened", "{}")],
        )
        .unwrap();
    for round in 0..20u64 {
        let n = 8;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|w| {
                let (events, barrier) = (events.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    events.append(
                        "acct-1",
                        ExpectedVersion::Exact(1 + round),
                        &[NewEvent::new("Deposited", format!("{w}"))],
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {wins} writers won");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(
                r,
                Err(Error::Event(EventError::Conflict { actual, .. })) if *actual == 2 + round
            ));
        }
    }
    let all = events.read("acct-1", 1).unwrap();
    assert_eq!(all.len(), 21);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64 + 1)
    );
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Account {
    balance: i64,
    events: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";

    fn apply(&mut self, e: &StoredEvent) {
        let amount: i64 = std::str::from_utf8(&e.data).unwrap().parse().unwrap_or(0);
        match e.kind.as_str() {
            "Deposited" => self.balance += amount,
            "Withdrawn" => self.balance -= amount,
            _ => {}
        }
        self.events += 1;
    }
}

#[test]
fn streams_survive_reopen_and_aggregates_use_snapshots() {
    let dir = common::tempdir();
    {
        let db = Quipu::open(dir.path()).unwrap();
        let events = EventStore::open(db.log(), "ledger", db.store().clone(), 10).unwrap();
        for i in 0..25 {
            let kind = if i % 5 == 4 { "Withdrawn" } else { "Deposited" };
            events
                .append(
                    "acct-9",
                    ExpectedVersion::Exact(i),
                    &[NewEvent::new(kind, "10")],
                )
                .unwrap();
        }
        let (acct, v) = events.load::<Account>("acct-9").unwrap();
        assert_eq!((acct.balance, acct.events, v), (150, 25, 25));
        assert!(
            db.store()
                .get(SNAPSHOT_TABLE, b"account/acct-9")
                .unwrap()
                .is_some()
        );
    }
    let db = Quipu::open(dir.path()).unwrap();
    let events = EventStore::open(db.log(), "ledger", db.store().clone(), 10).unwrap();
    assert_eq!(events.version("acct-9"), 25, "index rebuilt from the log");
    events
        .append(
            "acct-9",
            ExpectedVersion::Exact(25),
            &[NewEvent::new("Deposited", "1")],
        )
        .unwrap();
    let (acct, v) = events.load::<Account>("acct-9").unwrap();
    assert_eq!((acct.balance, v), (151, 26));
    assert!(
        events
            .append(
                "acct-9",
                ExpectedVersion::NoStream,
                &[NewEvent::new("Opened", "")]
            )
            .is_err()
    );
}

/// Balances per account, a read model.
#[derive(Default)]
struct Balances {
    by_account: BTreeMap<String, i64>,
}

impl Projection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn apply(&mut self, e: &StoredEvent) -> Result<(), Error> {
        let amount: i64 = std::str::from_utf8(&e.data).unwrap().parse().unwrap_or(0);
        let b = self.by_account.entry(e.stream.clone()).or_default();
        match e.kind.as_str() {
            "Deposited" => *b += amount,
            "Withdrawn" => *b -= amount,
            _ => {}
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Error> {
        self.by_account.clear();
        Ok(())
    }
}

#[test]
fn a_rebuilt_projection_equals_the_incremental_one() {
    let dir = common::tempdir();
    let db = Quipu::open(dir.path()).unwrap();
    let events = EventStore::open(db.log(), "ledger", db.store().clone(), 0).unwrap();
    let mut live = ProjectionRunner::new(db.log(), &events, Balances::default()).unwrap();
    let mut rng = 7u64;
    for step in 0..300u64 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let acct = format!("acct-{}", rng >> 60);
        let kind = if rng & 3 == 0 {
            "Withdrawn"
        } else {
            "Deposited"
        };
        events
            .append(
                &acct,
                ExpectedVersion::Any,
                &[NewEvent::new(kind, format!("{}", (rng >> 32) % 100))],
            )
            .unwrap();
        if step % 37 == 0 {
            live.run_once().unwrap();
        }
    }
    live.run_once().unwrap();
    let mut rebuilt = ProjectionRunner::new(db.log(), &events, Balances::default()).unwrap();
    assert_eq!(rebuilt.rebuild().unwrap(), 300);
    assert_eq!(
        rebuilt.projection().by_account,
        live.projection().by_account
    );
    assert!(live.projection().by_account.len() > 5);
    // The live runner's checkpoint holds: a new runner of the same name starts after it.
    drop(live);
    let mut resumed = ProjectionRunner::new(db.log(), &events, Balances::default()).unwrap();
    assert_eq!(resumed.run_once().unwrap(), 0);
}
