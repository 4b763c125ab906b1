//! Black-box tests of transactions on `quipu serve`: MULTI/EXEC/DISCARD with Redis 7's
//! replies and errors, WATCH/UNWATCH, EXEC's isolation from other clients' commands, and
//! XADD inside a transaction.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use common::server::Running;
use quipu::server::ServerConfig;
use redis::{Commands, Value};

fn serve() -> Running {
    Running::start(ServerConfig::default())
}

/// The RESP frames of `cmds` (each split on spaces), sent on one connection.
fn frames(cmds: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        let parts: Vec<&str> = c.split(' ').collect();
        out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
        for p in parts {
            out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
        }
    }
    out
}

/// An ACL user with password `pw`, these commands, every key and no channel.
fn user(name: &str, commands: &[&str]) -> quipu::server::UserRule {
    quipu::server::UserRule {
        name: name.into(),
        password: "pw".into(),
        commands: commands.iter().map(|&c| c.into()).collect(),
        keys: vec!["*".into()],
        channels: vec![],
    }
}

fn raw(srv: &Running, cmds: &[&str]) -> String {
    String::from_utf8(srv.raw(&frames(cmds))).unwrap()
}

#[test]
fn exec_replies_every_queued_command_in_order_with_runtime_errors_inside() {
    let srv = serve();
    let mut c = srv.con();
    let (set, incr, get): (String, i64, String) = redis::pipe()
        .atomic()
        .set("n", 41)
        .incr("n", 1)
        .get("n")
        .query(&mut c)
        .unwrap();
    assert_eq!((set.as_str(), incr, get.as_str()), ("OK", 42, "42"));
    // A command that fails when it runs fails alone, inside the array; the others ran.
    assert_eq!(
        raw(
            &srv,
            &["MULTI", "SET s abc", "INCR s", "SET t 1", "EXEC", "GET t"]
        ),
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n\
         -ERR value is not an integer or out of range\r\n+OK\r\n$1\r\n1\r\n"
    );
    // An empty transaction, and a blocking read that does not block inside one.
    assert_eq!(
        raw(
            &srv,
            &[
                "MULTI",
                "EXEC",
                "MULTI",
                "XREAD BLOCK 0 STREAMS none $",
                "EXEC"
            ]
        ),
        "+OK\r\n*0\r\n+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n"
    );
}

#[test]
fn a_command_refused_while_queueing_discards_the_transaction() {
    let srv = serve();
    assert_eq!(
        raw(
            &srv,
            &["MULTI", "SET a 1", "NOSUCH x", "GET", "EXEC", "GET a"]
        ),
        "+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n\
         -ERR wrong number of arguments for 'get' command\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    );
    assert_eq!(
        raw(&srv, &["MULTI", "CLIENT NOSUCH", "EXEC"]),
        "+OK\r\n-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // EXEC itself refused: the transaction is gone with the reason.
    assert_eq!(
        raw(&srv, &["MULTI", "SET a 1", "EXEC x", "EXEC", "GET a"]),
        "+OK\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of: wrong number of \
         arguments for 'exec' command\r\n-ERR EXEC without MULTI\r\n$-1\r\n"
    );
    // Errors that do not doom it: nested MULTI, WATCH inside MULTI.
    assert_eq!(
        raw(&srv, &["MULTI", "MULTI", "WATCH a", "SET a 2", "EXEC"]),
        "+OK\r\n-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n\
         +QUEUED\r\n*1\r\n+OK\r\n"
    );
    assert_eq!(
        raw(
            &srv,
            &[
                "EXEC",
                "DISCARD",
                "MULTI",
                "SET a 3",
                "DISCARD",
                "GET a",
                "DISCARD x"
            ]
        ),
        "-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n+QUEUED\r\n+OK\r\n\
         $1\r\n2\r\n-ERR wrong number of arguments for 'discard' command\r\n"
    );
    // RESET leaves the transaction; nothing queued ran.
    assert_eq!(
        raw(&srv, &["MULTI", "SET a 4", "RESET", "EXEC", "GET a"]),
        "+OK\r\n+QUEUED\r\n+RESET\r\n-ERR EXEC without MULTI\r\n$1\r\n2\r\n"
    );
}

#[test]
fn a_user_without_the_permission_cannot_queue_the_command() {
    let srv = Running::start(ServerConfig {
        users: vec![user("reader", &["+@read", "+@transaction", "+auth"])],
        ..ServerConfig::default()
    });
    let got = raw(
        &srv,
        &["AUTH reader pw", "MULTI", "GET a", "SET a 1", "EXEC"],
    );
    assert!(
        got.starts_with("+OK\r\n+OK\r\n+QUEUED\r\n-NOPERM User reader has no permissions"),
        "{got}"
    );
    assert!(
        got.ends_with("-EXECABORT Transaction discarded because of previous errors.\r\n"),
        "{got}"
    );
}

/// An `EXEC` refused by its own checks discards the transaction with the refusal's code, as
/// Redis 7 words it (`NOPERM`, `NOAUTH`; a generic `ERR` is dropped).
#[test]
fn exec_refused_itself_discards_with_the_reason() {
    let srv = Running::start(ServerConfig {
        password: Some("secret".into()),
        users: vec![user("noexec", &["+@all", "-exec"])],
        ..ServerConfig::default()
    });
    let got = raw(
        &srv,
        &["AUTH noexec pw", "MULTI", "SET a 1", "EXEC", "GET a"],
    );
    assert!(
        got.starts_with(
            "+OK\r\n+OK\r\n+QUEUED\r\n-EXECABORT Transaction discarded because of: NOPERM "
        ),
        "{got}"
    );
    assert!(got.ends_with("$-1\r\n"), "nothing ran: {got}");
    assert_eq!(
        raw(&srv, &["EXEC"]),
        "-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n"
    );
}

#[test]
fn watch_aborts_exec_once_another_client_changed_a_watched_key() {
    let srv = serve();
    let mut a = srv.con();
    let mut b = srv.con();
    let _: () = a.set("k", 1).unwrap();
    let exec = |c: &mut redis::Connection| -> Value {
        redis::cmd("MULTI").query::<()>(c).unwrap();
        redis::cmd("INCR").arg("k").query::<()>(c).unwrap();
        redis::cmd("EXEC").query(c).unwrap()
    };
    let watch = |c: &mut redis::Connection, key: &str| {
        redis::cmd("WATCH").arg(key).query::<()>(c).unwrap();
    };
    // Untouched: it runs.
    watch(&mut a, "k");
    assert_eq!(exec(&mut a), Value::Array(vec![Value::Int(2)]));
    // Each kind of change by another client aborts it: a write, a new expiry, a delete, the
    // key appearing, a stream entry.
    let changes: Vec<(&str, Vec<&str>)> = vec![
        ("k", vec!["SET", "k", "2"]),
        ("k", vec!["EXPIRE", "k", "100"]),
        ("k", vec!["DEL", "k"]),
        ("k", vec!["SET", "k", "5"]),
        ("s", vec!["XADD", "s", "*", "f", "v"]),
    ];
    for (key, change) in changes {
        watch(&mut a, key);
        let _: Value = redis::cmd(change[0])
            .arg(&change[1..])
            .query(&mut b)
            .unwrap();
        assert_eq!(exec(&mut a), Value::Nil, "after {change:?}");
        // EXEC unwatched: the next one runs.
        assert!(matches!(exec(&mut a), Value::Array(_)));
    }
    // UNWATCH and DISCARD forget the watched keys.
    watch(&mut a, "k");
    redis::cmd("UNWATCH").query::<()>(&mut a).unwrap();
    let _: () = b.set("k", 9).unwrap();
    assert_eq!(exec(&mut a), Value::Array(vec![Value::Int(10)]));
    watch(&mut a, "k");
    redis::cmd("MULTI").query::<()>(&mut a).unwrap();
    redis::cmd("DISCARD").query::<()>(&mut a).unwrap();
    let _: () = b.set("k", 20).unwrap();
    assert_eq!(exec(&mut a), Value::Array(vec![Value::Int(21)]));
    // A watched key that does not exist and stays so does not abort; RESP3 aborts with null.
    assert_eq!(
        raw(
            &srv,
            &["HELLO 3", "WATCH nothing", "MULTI", "GET k", "EXEC"]
        )
        .split_once("+OK\r\n")
        .map(|(_, rest)| rest.to_owned()),
        Some("+OK\r\n+QUEUED\r\n*1\r\n$2\r\n21\r\n".to_owned())
    );
    assert!(
        raw(
            &srv,
            &["HELLO 3", "WATCH k", "SET k 0", "MULTI", "GET k", "EXEC"]
        )
        .ends_with("+OK\r\n+QUEUED\r\n_\r\n")
    );
}

#[test]
fn optimistic_increments_with_watch_lose_no_update() {
    // The classic check-and-set loop from Redis's documentation, from several clients at once:
    // a write between one client's WATCH and EXEC must abort its EXEC, or an update is lost.
    let srv = serve();
    let clients = 4;
    let per_client = 100;
    std::thread::scope(|s| {
        for _ in 0..clients {
            let mut c = srv.con();
            s.spawn(move || {
                let mut done = 0;
                while done < per_client {
                    redis::cmd("WATCH")
                        .arg("counter")
                        .query::<()>(&mut c)
                        .unwrap();
                    let n: Option<i64> = c.get("counter").unwrap();
                    let r: Option<(String,)> = redis::pipe()
                        .atomic()
                        .set("counter", n.unwrap_or(0) + 1)
                        .query(&mut c)
                        .unwrap();
                    if r.is_some() {
                        done += 1;
                    }
                }
            });
        }
    });
    let mut c = srv.con();
    let total: i64 = c.get("counter").unwrap();
    assert_eq!(total, clients * per_client);
}

#[test]
fn no_command_of_another_client_runs_in_the_middle_of_an_exec() {
    // Transactions move two counters together; a client reads both at once (MGET), and
    // must never see one moved without the other. Two I/O threads, so commands of different
    // connections do run at the same time.
    let srv = Running::start(ServerConfig {
        threads: 2,
        ..ServerConfig::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let mut c = srv.con();
            let stop = Arc::clone(&stop);
            s.spawn(move || {
                for _ in 0..200 {
                    // Commands between the two moves widen the window a reader could see.
                    let mut p = redis::pipe();
                    p.atomic().incr("x", 1).ignore();
                    for i in 0..50 {
                        p.set(format!("pad{i}"), i).ignore();
                    }
                    let _: () = p.incr("y", 1).ignore().query(&mut c).unwrap();
                }
                stop.store(true, SeqCst);
            });
        }
        let mut c = srv.con();
        let mut reads = 0;
        while !stop.load(SeqCst) {
            let (x, y): (Option<i64>, Option<i64>) =
                redis::cmd("MGET").arg("x").arg("y").query(&mut c).unwrap();
            assert_eq!(x, y, "an MGET saw half of a transaction");
            reads += 1;
        }
        assert!(reads > 0);
    });
    let mut c = srv.con();
    let (x, y): (i64, i64) = redis::cmd("MGET").arg("x").arg("y").query(&mut c).unwrap();
    assert_eq!((x, y), (400, 400));
}

#[test]
fn xadds_inside_exec_are_appended_together_and_acknowledged_once_durable() {
    let srv = serve();
    let mut c = srv.con();
    let (a, set, b): (String, String, String) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("n")
        .arg("1")
        .set("last", "b")
        .cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("n")
        .arg("2")
        .query(&mut c)
        .unwrap();
    assert_eq!(set, "OK");
    let seq = |id: &str| id.split_once('-').unwrap().1.parse::<u64>().unwrap();
    assert_eq!(seq(&b), seq(&a) + 1, "{a} then {b}");
    // Acknowledged means readable: both entries are there, in order.
    let range: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let ids: Vec<&str> = range.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [a.as_str(), b.as_str()]);
    // A bad XADD fails alone inside the array; NOMKSTREAM on a missing stream is null.
    let got = raw(
        &srv,
        &[
            "MULTI",
            "XADD orders 1-1 f v",
            "XADD gone NOMKSTREAM * f v",
            "GET last",
            "EXEC",
        ],
    );
    assert_eq!(
        got,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n\
         -ERR quipu assigns stream IDs: use * as the ID\r\n$-1\r\n$1\r\nb\r\n"
    );
}

/// A watched key counts as touched by any write, as in Redis, even one that leaves it as it
/// was (created and deleted, given the deadline it had); reads, writes of other keys and
/// writes that change nothing do not touch it. Each outcome was taken from redis-server 7.0.15
/// given the same commands.
#[test]
fn watch_sees_every_write_of_the_key_as_redis_does() {
    let srv = serve();
    let cases: &[(&[&str], bool)] = &[
        (&["WATCH k", "SET k 1", "DEL k"], false),
        (
            &[
                "SET k 1 EXAT 1896524554",
                "WATCH k",
                "EXPIREAT k 1896524554",
            ],
            false,
        ),
        (&["WATCH h", "HSET h f -1", "RENAME h a"], false),
        (&["SET s 1", "WATCH d", "COPY s d"], false),
        (&["SET k 1", "WATCH k", "COPY k d"], true),
        (&["SET k 1", "WATCH k", "RENAME k k"], true),
        (&["SET k 1", "SET d 2", "WATCH d", "RENAMENX k d"], true),
        (&["SET k 1", "WATCH k", "TOUCH k"], true),
        (&["WATCH k", "INCRBYFLOAT k 1e-400", "DEL k"], false),
        (&["SET k 1", "WATCH k", "FLUSHALL"], false),
        (&["SET k 1", "WATCH k", "GET k"], true),
        (&["SET k 1", "WATCH k", "SET other 1"], true),
        (&["SET k 1", "WATCH k", "PERSIST k"], true),
        (&["SET k 1", "WATCH k", "EXPIRE k 100 GT"], true),
        (&["SET k 1", "WATCH k", "SET k 2 NX"], true),
        (&["SET k 1", "WATCH k", "DEL nothere"], true),
        (&["WATCH k", "FLUSHALL"], true),
        // A stream flushed and created again has the offsets it had: still a write.
        (
            &["XADD s * f v", "WATCH s", "FLUSHDB", "XADD s * f v"],
            false,
        ),
        (&["XADD s * f v", "WATCH s", "FLUSHALL"], false),
    ];
    for (before, runs) in cases {
        let mut cmds = vec!["FLUSHALL"];
        cmds.extend_from_slice(before);
        // QUIT closes the connection, so the read ends there.
        cmds.extend_from_slice(&["MULTI", "PING", "EXEC", "QUIT"]);
        let reply = raw(&srv, &cmds);
        let ran = reply.ends_with("*1\r\n+PONG\r\n+OK\r\n");
        assert!(
            ran || reply.ends_with("*-1\r\n+OK\r\n"),
            "{before:?}: {reply:?}"
        );
        assert_eq!(ran, *runs, "{before:?}: {reply:?}");
    }
    // A write by another connection between WATCH and EXEC touches the key too.
    let mut c = srv.con();
    let mut other = srv.con();
    let _: () = redis::cmd("WATCH").arg("lock").query(&mut c).unwrap();
    let _: () = other.set("lock", "held").unwrap();
    let _: i64 = other.del("lock").unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["lock", "mine"])
        .query(&mut c)
        .unwrap();
    let r: Value = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(r, Value::Nil, "the other client's SET and DEL touched it");
    let got: Option<String> = c.get("lock").unwrap();
    assert_eq!(got, None);
    // After UNWATCH another client's write aborts nothing.
    let _: () = redis::cmd("WATCH").arg("lock").query(&mut c).unwrap();
    let _: () = redis::cmd("UNWATCH").query(&mut c).unwrap();
    let _: () = other.set("lock", "held").unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["lock", "mine"])
        .query(&mut c)
        .unwrap();
    let r: Vec<String> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(r, ["OK"]);
    let got: Option<String> = c.get("lock").unwrap();
    assert_eq!(got.as_deref(), Some("mine"));
}
