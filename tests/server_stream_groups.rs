//! Black-box tests of stream consumer groups on `quipu serve` with the `redis` client crate:
//! XREADGROUP delivering each entry once, XACK, XPENDING, XCLAIM, XAUTOCLAIM, XINFO, and a
//! group across a server restart.

mod common;
mod streams_support;

use std::collections::BTreeSet;

use redis::Value;
use streams_support::*;

#[test]
fn xreadgroup_delivers_each_entry_to_exactly_one_consumer() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let _: () = query(
        &mut c,
        &["XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"],
    );
    let mut all = BTreeSet::new();
    for i in 0..200 {
        all.insert(xadd(&mut c, "jobs", "job", &i.to_string()));
    }
    let workers: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|name| {
            let mut con = srv.con();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let r: ReadReply = query(
                        &mut con,
                        &[
                            "XREADGROUP",
                            "GROUP",
                            "workers",
                            name,
                            "COUNT",
                            "3",
                            "BLOCK",
                            "200",
                            "STREAMS",
                            "jobs",
                            ">",
                        ],
                    );
                    if r.is_none() {
                        return mine;
                    }
                    mine.extend(ids(&r));
                }
            })
        })
        .collect();
    let got: Vec<Vec<String>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let union: BTreeSet<String> = got.iter().flatten().cloned().collect();
    assert_eq!(got[0].len() + got[1].len(), 200, "an entry went to both");
    assert_eq!(union, all);
    // A blocked XREADGROUP is woken by a new entry, which becomes pending for that consumer.
    let (reply, added) = wake_with_xadd(
        &srv,
        "jobs",
        vec![
            "XREADGROUP",
            "GROUP",
            "workers",
            "carol",
            "BLOCK",
            "0",
            "STREAMS",
            "jobs",
            ">",
        ],
    );
    let got = ids(&reply);
    assert!(got.iter().all(|id| added.contains(id)));
    let mine: Vec<Value> = query(
        &mut c,
        &["XPENDING", "jobs", "workers", "-", "+", "10", "carol"],
    );
    assert_eq!(mine.len(), got.len());
}

#[test]
fn xack_and_xpending() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..10)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let r: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "6",
            "STREAMS",
            "s",
            ">",
        ],
    );
    assert_eq!(self::ids(&r), ids[..6]);
    let r: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c2", "STREAMS", "s", ">"],
    );
    assert_eq!(self::ids(&r), ids[6..]);
    let summary: Value = query(&mut c, &["XPENDING", "s", "g"]);
    let Value::Array(s) = &summary else { panic!() };
    assert_eq!(int(&s[0]), 10);
    assert_eq!(text(&s[1]), ids[0]);
    assert_eq!(text(&s[2]), ids[9]);
    let per: Vec<(String, String)> = redis::from_redis_value_ref(&s[3]).unwrap();
    assert_eq!(per, [("c1".into(), "6".into()), ("c2".into(), "4".into())]);
    let acked: i64 = query(
        &mut c,
        &["XACK", "s", "g", &ids[0], &ids[1], &ids[7], "0-0"],
    );
    assert_eq!(acked, 3);
    let again: i64 = query(&mut c, &["XACK", "s", "g", &ids[0]]);
    assert_eq!(again, 0);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "100"]);
    let pending: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    let want: Vec<&String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 1, 7].contains(i))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(pending, want);
    assert!(rows.iter().all(|r| r.3 == 1));
    assert_eq!(rows[0].1, "c1");
    let c2: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "100", "c2"]);
    assert_eq!(c2.len(), 3);
    let exclusive: Vec<(String, String, i64, i64)> = query(
        &mut c,
        &["XPENDING", "s", "g", &format!("({}", ids[2]), "+", "2"],
    );
    assert_eq!(
        exclusive.iter().map(|r| &r.0).collect::<Vec<_>>(),
        [&ids[3], &ids[4]]
    );
    let idle: Vec<Value> = query(
        &mut c,
        &["XPENDING", "s", "g", "IDLE", "100000", "-", "+", "10"],
    );
    assert!(idle.is_empty());
    // Re-reading its history redelivers a consumer's own pending entries.
    let r: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", "s", "0"],
    );
    assert_eq!(self::ids(&r), ids[2..6]);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "1"]);
    assert_eq!(rows[0].3, 2);
    // NOACK reads leave nothing pending.
    xadd(&mut c, "s", "i", "10");
    let _: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "NOACK",
            "STREAMS",
            "s",
            ">",
        ],
    );
    let summary: Vec<Value> = query(&mut c, &["XPENDING", "s", "g"]);
    assert_eq!(int(&summary[0]), 7);
}

#[test]
fn xclaim_and_xautoclaim_move_idle_entries() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..6)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: ReadReply = query(
        &mut c,
        &["XREADGROUP", "GROUP", "g", "dead", "STREAMS", "s", ">"],
    );
    // Not idle long enough: nothing moves.
    let none: Vec<Entry> = query(&mut c, &["XCLAIM", "s", "g", "live", "3600000", &ids[0]]);
    assert!(none.is_empty());
    let got: Vec<Entry> = query(&mut c, &["XCLAIM", "s", "g", "live", "0", &ids[0], &ids[1]]);
    assert_eq!(
        got.iter().map(|e| &e.0).collect::<Vec<_>>(),
        [&ids[0], &ids[1]]
    );
    assert_eq!(got[0].1, ["i", "0"]);
    let rows: Vec<(String, String, i64, i64)> =
        query(&mut c, &["XPENDING", "s", "g", "-", "+", "10", "live"]);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.1 == "live" && r.3 == 2));
    // JUSTID leaves the delivery count; IDLE backdates the delivery.
    let just: Vec<String> = query(
        &mut c,
        &[
            "XCLAIM", "s", "g", "live", "0", &ids[2], "IDLE", "500000", "JUSTID",
        ],
    );
    assert_eq!(just, [ids[2].clone()]);
    let rows: Vec<(String, String, i64, i64)> = query(
        &mut c,
        &["XPENDING", "s", "g", "IDLE", "400000", "-", "+", "10"],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3, 1);
    // XAUTOCLAIM takes what has been idle long enough, COUNT at a time, with a cursor.
    let r: (String, Vec<Entry>, Vec<String>) =
        query(&mut c, &["XAUTOCLAIM", "s", "g", "rescuer", "400000", "-"]);
    assert_eq!(r.0, "0-0");
    assert_eq!(r.1.iter().map(|e| &e.0).collect::<Vec<_>>(), [&ids[2]]);
    let r: (String, Vec<String>, Vec<String>) = query(
        &mut c,
        &[
            "XAUTOCLAIM",
            "s",
            "g",
            "rescuer",
            "0",
            "-",
            "COUNT",
            "2",
            "JUSTID",
        ],
    );
    assert_eq!(r.1, [ids[0].clone(), ids[1].clone()]);
    assert_eq!(r.0, ids[2]);
    assert!(r.2.is_empty());
    let r: (String, Vec<String>, Vec<String>) = query(
        &mut c,
        &[
            "XAUTOCLAIM",
            "s",
            "g",
            "rescuer",
            "0",
            &r.0,
            "COUNT",
            "10",
            "JUSTID",
        ],
    );
    assert_eq!(r.1, ids[2..].to_vec());
    assert_eq!(r.0, "0-0");
    let summary: Value = query(&mut c, &["XPENDING", "s", "g"]);
    let Value::Array(s) = summary else { panic!() };
    let per: Vec<(String, String)> = redis::from_redis_value_ref(&s[3]).unwrap();
    assert_eq!(per, [("rescuer".into(), "6".into())]);
    // FORCE claims an entry nobody was delivered.
    let extra = xadd(&mut c, "s", "i", "6");
    let got: Vec<String> = query(
        &mut c,
        &[
            "XCLAIM", "s", "g", "live", "1000", &extra, "FORCE", "JUSTID",
        ],
    );
    assert_eq!(got, [extra]);
    assert_eq!(
        err(
            &mut c,
            &["XAUTOCLAIM", "s", "g", "x", "0", "-", "COUNT", "0"]
        ),
        "COUNT must be > 0"
    );
    // A claim that takes nothing leaves no consumer behind, as in Redis.
    let none: Vec<Entry> = query(&mut c, &["XCLAIM", "s", "g", "ghost", "3600000", &ids[0]]);
    assert!(none.is_empty());
    let _: Value = query(&mut c, &["XAUTOCLAIM", "s", "g", "ghost2", "3600000", "-"]);
    let rows: Vec<Vec<Value>> = query(&mut c, &["XINFO", "CONSUMERS", "s", "g"]);
    let names: Vec<String> = rows
        .iter()
        .map(|r| redis::from_redis_value_ref(&r[1]).unwrap())
        .collect();
    assert_eq!(names, ["dead", "live", "rescuer"]);
}

#[test]
fn xinfo_reports_streams_groups_and_consumers() {
    let dir = common::tempdir();
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let ids: Vec<String> = (0..5)
        .map(|i| xadd(&mut c, "s", "i", &i.to_string()))
        .collect();
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "g", "0"]);
    let _: () = query(&mut c, &["XGROUP", "CREATE", "s", "late", "$"]);
    let _: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c1",
            "COUNT",
            "2",
            "STREAMS",
            "s",
            ">",
        ],
    );
    let info: Value = query(&mut c, &["XINFO", "STREAM", "s"]);
    assert_eq!(int(&field(&info, "length")), 5);
    assert_eq!(int(&field(&info, "entries-added")), 5);
    assert_eq!(int(&field(&info, "groups")), 2);
    assert_eq!(text(&field(&info, "last-generated-id")), ids[4]);
    assert_eq!(text(&field(&info, "recorded-first-entry-id")), ids[0]);
    let first: Entry = redis::from_redis_value_ref(&field(&info, "first-entry")).unwrap();
    assert_eq!(first, (ids[0].clone(), vec!["i".into(), "0".into()]));
    let last: Entry = redis::from_redis_value_ref(&field(&info, "last-entry")).unwrap();
    assert_eq!(last.0, ids[4]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(text(&field(g, "name")), "g");
    assert_eq!(int(&field(g, "consumers")), 1);
    assert_eq!(int(&field(g, "pending")), 2);
    assert_eq!(text(&field(g, "last-delivered-id")), ids[1]);
    assert_eq!(int(&field(g, "entries-read")), 2);
    assert_eq!(int(&field(g, "lag")), 3);
    let late = &groups[1];
    assert_eq!(text(&field(late, "name")), "late");
    assert_eq!(int(&field(late, "lag")), 0);
    let consumers: Vec<Value> = query(&mut c, &["XINFO", "CONSUMERS", "s", "g"]);
    assert_eq!(consumers.len(), 1);
    assert_eq!(text(&field(&consumers[0], "name")), "c1");
    assert_eq!(int(&field(&consumers[0], "pending")), 2);
    assert!(int(&field(&consumers[0], "inactive")) >= 0);
    let created: i64 = query(&mut c, &["XGROUP", "CREATECONSUMER", "s", "g", "c2"]);
    assert_eq!(created, 1);
    let again: i64 = query(&mut c, &["XGROUP", "CREATECONSUMER", "s", "g", "c2"]);
    assert_eq!(again, 0);
    let consumers: Vec<Value> = query(&mut c, &["XINFO", "CONSUMERS", "s", "g"]);
    assert_eq!(int(&field(&consumers[1], "inactive")), -1);
    let dropped: i64 = query(&mut c, &["XGROUP", "DELCONSUMER", "s", "g", "c1"]);
    assert_eq!(dropped, 2);
    // SETID takes `-` and `+` as well (the first and last IDs); CREATE refuses them.
    let _: () = query(&mut c, &["XGROUP", "SETID", "s", "g", "-"]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(int(&field(&groups[0], "lag")), 5);
    let _: () = query(&mut c, &["XGROUP", "SETID", "s", "g", "+"]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(int(&field(&groups[0], "lag")), 0);
    for id in ["-", "+"] {
        let e = err(&mut c, &["XGROUP", "CREATE", "s", "g3", id]);
        assert!(e.contains("Invalid stream ID"), "{id}: {e}");
    }
    let _: () = query(&mut c, &["XGROUP", "SETID", "s", "g", "$"]);
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "s"]);
    assert_eq!(int(&field(&groups[0], "pending")), 0);
    assert_eq!(int(&field(&groups[0], "lag")), 0);
    let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "s", "late"]);
    assert_eq!(destroyed, 1);
    let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "s", "late"]);
    assert_eq!(destroyed, 0);
    assert_eq!(err(&mut c, &["XINFO", "STREAM", "nope"]), "no such key");
}

#[test]
fn a_group_survives_a_restart_and_unacked_entries_come_back() {
    let dir = common::tempdir();
    let ids: Vec<String>;
    {
        let srv = serve_in(dir.path());
        let mut c = srv.con();
        ids = (0..10)
            .map(|i| xadd(&mut c, "orders", "n", &i.to_string()))
            .collect();
        let _: () = query(&mut c, &["XGROUP", "CREATE", "orders", "billing", "0"]);
        let _: () = query(&mut c, &["XGROUP", "CREATE", "orders", "gone", "0"]);
        let destroyed: i64 = query(&mut c, &["XGROUP", "DESTROY", "orders", "gone"]);
        assert_eq!(destroyed, 1);
        let r: ReadReply = query(
            &mut c,
            &[
                "XREADGROUP",
                "GROUP",
                "billing",
                "c1",
                "COUNT",
                "6",
                "STREAMS",
                "orders",
                ">",
            ],
        );
        assert_eq!(self::ids(&r).len(), 6);
        let acked: i64 = query(
            &mut c,
            &[
                "XACK", "orders", "billing", &ids[0], &ids[1], &ids[2], &ids[4],
            ],
        );
        assert_eq!(acked, 4);
        srv.stop();
    }
    let srv = serve_in(dir.path());
    let mut c = srv.con();
    let groups: Vec<Value> = query(&mut c, &["XINFO", "GROUPS", "orders"]);
    assert_eq!(groups.len(), 1, "the destroyed group must stay destroyed");
    assert_eq!(text(&field(&groups[0], "name")), "billing");
    assert!(err(&mut c, &["XGROUP", "CREATE", "orders", "billing", "0"]).contains("BUSYGROUP"));
    // The pending list is not kept: what was delivered and not acknowledged is delivered
    // again (at-least-once), from the lowest unacknowledged entry on.
    let r: ReadReply = query(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "billing",
            "c1",
            "STREAMS",
            "orders",
            ">",
        ],
    );
    let again = self::ids(&r);
    // A clean shutdown committed the lowest unacknowledged entry: 3.
    assert_eq!(again, ids[3..]);
}
