//! The server's administration and security: ACL users, `CLIENT LIST`/`CLIENT KILL`, the idle
//! timeout, `CONFIG GET`/`SET`, keyspace notifications, and config validation.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use common::server::{Running, eventually};
use quipu::server::{NamespaceRule, Server, ServerConfig, UserRule};
use redis::{Commands, RedisResult};

fn courier() -> UserRule {
    UserRule {
        name: "courier".into(),
        password: "ruta-42".into(),
        commands: vec![
            "*".into(),
            "-flushall".into(),
            "-flushdb".into(),
            "-shutdown".into(),
        ],
        keys: vec!["delivery:42:*".into()],
        channels: vec!["delivery.42.*".into()],
    }
}

fn err_of<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    r.unwrap_err().to_string()
}

/// The redis crate shows a `NOPERM` reply as `NoPerm: <message>`.
fn noperm(e: &str) -> bool {
    e.contains("NoPerm") || e.contains("NOPERM")
}

#[test]
fn acl_users_are_held_to_their_commands_keys_and_channels() {
    let srv = Running::start(ServerConfig {
        password: Some("secret".into()),
        users: vec![courier()],
        ..ServerConfig::default()
    });
    let mut c = srv.con();
    assert!(err_of(c.get::<_, String>("x")).contains("NOAUTH"));
    let bad: RedisResult<()> = redis::cmd("AUTH").arg("courier").arg("wrong").query(&mut c);
    assert!(err_of(bad).contains("WRONGPASS"));
    let _: () = redis::cmd("AUTH")
        .arg("courier")
        .arg("ruta-42")
        .query(&mut c)
        .unwrap();
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut c).unwrap();
    assert_eq!(who, "courier");
    let _: () = c.set("delivery:42:eta", "12:05").unwrap();
    assert_eq!(c.get::<_, String>("delivery:42:eta").unwrap(), "12:05");
    let e = err_of(c.set::<_, _, ()>("delivery:43:eta", "x"));
    assert!(
        noperm(&e) && e.contains("No permissions to access a key"),
        "{e}"
    );
    let m: RedisResult<()> = redis::cmd("MSET")
        .arg("delivery:42:a")
        .arg(1)
        .arg("orders:1")
        .arg(2)
        .query(&mut c);
    assert!(noperm(&err_of(m)));
    assert!(noperm(&err_of(c.get::<_, Option<String>>("orders:1"))));
    let f: RedisResult<()> = redis::cmd("FLUSHALL").query(&mut c);
    assert!(err_of(f).contains("has no permissions to run the 'flushall' command"));
    let down: RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
    assert!(err_of(down).contains("has no permissions to run the 'shutdown' command"));
    let k: RedisResult<Vec<String>> = redis::cmd("KEYS").arg("*").query(&mut c);
    assert!(noperm(&err_of(k)));
    assert_eq!(
        c.publish::<_, _, i64>("delivery.42.gps", "-2.19,-79.88")
            .unwrap(),
        0
    );
    let e = err_of(c.publish::<_, _, i64>("delivery.7.gps", "x"));
    assert!(
        noperm(&e) && e.contains("No permissions to access a channel"),
        "{e}"
    );

    // Streams: the pipelined XADD path and blocking reads are held to the same lists, and a
    // refusal keeps the replies in order.
    let mut raw = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"AUTH courier ruta-42\r\nXADD delivery:42:gps * lat 1\r\nXADD orders:s * a 1\r\n\
          XADD delivery:42:gps * lat 2\r\nXREAD BLOCK 0 STREAMS orders:s $\r\nPING\r\n",
    )
    .unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.ends_with("+PONG\r\n") {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "+OK");
    assert!(lines[1].starts_with('$'), "{lines:?}");
    assert!(lines[3].starts_with("-NOPERM"), "{lines:?}");
    assert!(lines[4].starts_with('$'), "{lines:?}");
    assert!(
        lines[6].starts_with("-NOPERM"),
        "a refused XREAD BLOCK does not block: {lines:?}"
    );
    assert_eq!(lines[7], "+PONG");

    // The default user with the server password may do everything.
    let mut admin = srv.con();
    let _: () = redis::cmd("AUTH").arg("secret").query(&mut admin).unwrap();
    let _: () = admin.set("orders:1", "paid").unwrap();
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    assert_eq!(users, vec!["default", "courier"]);
    // HELLO AUTH logs in as a configured user too.
    let mut h = srv.con();
    let _: redis::Value = redis::cmd("HELLO")
        .arg(2)
        .arg("AUTH")
        .arg("courier")
        .arg("ruta-42")
        .query(&mut h)
        .unwrap();
    assert!(noperm(&err_of(h.get::<_, String>("orders:1"))));
    // What the courier was refused changed nothing.
    assert_eq!(admin.get::<_, String>("orders:1").unwrap(), "paid");
    assert!(!admin.exists::<_, bool>("delivery:43:eta").unwrap());
}

fn client_id(c: &mut redis::Connection) -> i64 {
    redis::cmd("CLIENT").arg("ID").query(c).unwrap()
}

#[test]
fn client_list_shows_every_connection_and_kill_closes_one() {
    let srv = Running::start(ServerConfig::default());
    let mut a = srv.con();
    let mut b = srv.con();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("dispatcher")
        .query(&mut a)
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tracker")
        .query(&mut b)
        .unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut a).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("name=dispatcher") && list.contains("name=tracker"),
        "{list}"
    );
    let bad: RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("two words")
        .query(&mut a);
    assert!(bad.is_err());

    let b_id = client_id(&mut b);
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(b_id)
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        b.get::<_, Option<String>>("k").is_err(),
        "a killed client is disconnected"
    );
    let list: String = eventually(5, || {
        let l: String = redis::cmd("CLIENT").arg("LIST").query(&mut a).unwrap();
        (l.lines().count() == 1).then_some(l)
    });
    assert!(list.contains("name=dispatcher"));
    // SKIPME yes (the default) spares the caller; the old form wants an exact address.
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("default")
        .query(&mut a)
        .unwrap();
    assert_eq!(n, 0);
    let old: RedisResult<()> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("127.0.0.1:1")
        .query(&mut a);
    assert!(err_of(old).contains("No such client"));
    assert_eq!(a.get::<_, Option<String>>("k").unwrap(), None);
}

/// `CLIENT LIST TYPE` and `CLIENT LIST ID`, with Redis 7.0's errors for what does not parse.
#[test]
fn client_list_filters_by_type_and_id() {
    let srv = Running::start(ServerConfig::default());
    let mut a = srv.con();
    let mut b = srv.con();
    let mut ps = b.as_pubsub();
    ps.subscribe("orders").unwrap();
    let a_id = client_id(&mut a);
    let list = |c: &mut redis::Connection, args: &[&str]| -> RedisResult<String> {
        redis::cmd("CLIENT").arg("LIST").arg(args).query(c)
    };
    let ids = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(list(&mut a, &[]).unwrap()).len(), 2);
    assert_eq!(
        ids(list(&mut a, &["TYPE", "normal"]).unwrap()),
        [format!("id={a_id}")]
    );
    let pubsub = list(&mut a, &["type", "PUBSUB"]).unwrap();
    assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
    assert!(pubsub.contains(" sub=1 "), "{pubsub}");
    assert_eq!(list(&mut a, &["TYPE", "replica"]).unwrap(), "");
    // Unknown ids are left out; the order is the order asked.
    assert_eq!(
        ids(list(&mut a, &["ID", "999999", &a_id.to_string(), "-3"]).unwrap()),
        [format!("id={a_id}")]
    );
    for (args, error) in [
        (&["TYPE", "inf"][..], "Unknown client type 'inf'"),
        (&["ID", "abc"], "Invalid client ID"),
        (&["ID"], "syntax error"),
        (&["TYPE"], "syntax error"),
        (&["TYPE", "normal", "x"], "syntax error"),
        (&["foo", "bar"], "syntax error"),
    ] {
        let got = err_of(list(&mut a, args));
        assert!(got.contains(error), "{args:?}: {got}");
    }
}

/// `CLIENT SETINFO` as Redis 7.2 checks it: the two attributes client libraries send, values
/// without spaces or control characters.
#[test]
fn client_setinfo_takes_the_library_attributes_only() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    let setinfo = |c: &mut redis::Connection, attr: &str, value: &str| -> RedisResult<()> {
        redis::cmd("CLIENT")
            .arg("SETINFO")
            .arg(attr)
            .arg(value)
            .query(c)
    };
    setinfo(&mut c, "LIB-NAME", "redis-rs").unwrap();
    setinfo(&mut c, "lib-ver", "0.27.0").unwrap();
    let got = err_of(setinfo(&mut c, "GET", "x"));
    assert!(got.contains("Unrecognized option 'GET'"), "{got}");
    let got = err_of(setinfo(&mut c, "lib-name", "two words"));
    assert!(got.contains("lib-name cannot contain spaces"), "{got}");
}

/// Setup scripts written for Redis set an LRU or LFU policy: both are what quipu's eviction
/// does, so they are taken (and read back); a policy quipu cannot follow is refused, and the
/// one in force stays.
#[test]
fn config_set_maxmemory_policy_takes_the_policies_quipu_follows() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    let set = |c: &mut redis::Connection, value: &str| -> RedisResult<()> {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(value)
            .query(c)
    };
    let policy = |c: &mut redis::Connection| -> String {
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(c)
            .unwrap();
        got[1].clone()
    };
    set(&mut c, "ALLKEYS-LFU").unwrap();
    assert_eq!(policy(&mut c), "allkeys-lfu");
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let freq: RedisResult<i64> = redis::cmd("OBJECT").arg("FREQ").arg("k").query(&mut c);
    assert!(err_of(freq).contains("keeps no LFU counter"));
    let got = err_of(set(&mut c, "noeviction"));
    assert!(got.contains("'noeviction' is not supported"), "{got}");
    let got = err_of(set(&mut c, "bogus"));
    assert!(got.contains("must be one of the following"), "{got}");
    assert_eq!(
        policy(&mut c),
        "allkeys-lfu",
        "a refused value changes nothing"
    );
    set(&mut c, "allkeys-lru").unwrap();
    assert_eq!(policy(&mut c), "allkeys-lru");
}

#[test]
fn idle_clients_are_closed_after_the_timeout_but_subscribers_stay() {
    let srv = Running::start(ServerConfig::default());
    let mut admin = srv.con();
    let bad: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("timeout")
        .arg("soon")
        .query(&mut admin);
    assert!(err_of(bad).contains("couldn't be parsed into an integer"));
    for (value, error) in [
        ("-1", "must be between 0 and 2147483647 inclusive"),
        ("2147483648", "must be between 0 and 2147483647 inclusive"),
        ("14924288240401799340", "couldn't be parsed into an integer"),
    ] {
        let bad: RedisResult<()> = redis::cmd("CONFIG")
            .arg("SET")
            .arg("timeout")
            .arg(value)
            .query(&mut admin);
        let got = err_of(bad);
        assert!(got.contains(error), "{value}: {got}");
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("timeout")
        .arg(1)
        .query(&mut admin)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("timeout")
        .query(&mut admin)
        .unwrap();
    assert_eq!(got, vec!["timeout", "1"]);
    // A glob over names, as Redis matches them: the eviction policy comes with maxmemory.
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory*")
        .query(&mut admin)
        .unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    let policy = got.iter().position(|n| n == "maxmemory-policy").unwrap();
    assert_eq!(got[policy + 1], "allkeys-lru");

    let mut sub = srv.con();
    let mut ps = sub.as_pubsub();
    ps.subscribe("news").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let mut idle = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let started = std::time::Instant::now();
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // The subscriber idled as long and still gets messages.
    std::thread::sleep(Duration::from_millis(300));
    let mut publisher = srv.con();
    assert_eq!(
        publisher
            .publish::<_, _, i64>("news", "still here")
            .unwrap(),
        1
    );
    let msg = ps.get_message().unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "still here");
}

/// The events of string, hash and generic commands, in order, as Redis 7.0.15 published them
/// for the same commands (a capture from `redis-server`, `notify-keyspace-events KA`).
#[test]
fn keyspace_events_of_string_hash_and_generic_commands_are_redis_s() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "KA"])
        .query(&mut c)
        .unwrap();
    let mut sub = srv.con();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyspace@0__:*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let commands: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["SET", "a", "2", "EX", "100"],
        &["INCR", "n"],
        &["APPEND", "a", "x"],
        &["DEL", "a", "n", "zz"],
        &["HSET", "h", "f", "v"],
        &["HSETNX", "h", "f", "w"],
        &["HSETNX", "h", "g", "w"],
        &["HINCRBY", "h", "c", "1"],
        &["HINCRBYFLOAT", "h", "d", "1.5"],
        &["HDEL", "h", "f", "g", "c", "d"],
        &["SET", "b", "1"],
        &["COPY", "b", "b2"],
        &["RENAME", "b", "c"],
        &["GETDEL", "c"],
        &["SETEX", "d", "100", "v"],
        &["EXPIRE", "d", "200"],
        &["PERSIST", "d"],
        &["PERSIST", "d"],
        &["PEXPIRE", "d", "50000"],
        &["GETEX", "d", "PERSIST"],
        &["GETEX", "d", "EX", "100"],
        &["INCRBYFLOAT", "f", "1"],
        &["SETRANGE", "sr", "0", "x"],
        &["SETRANGE", "sr", "0", ""],
        &["MSET", "m1", "1", "m2", "2"],
        &["EXPIRE", "m1", "-1"],
        &["SET", "sentinel", "1"],
    ];
    for cmd in commands {
        let _: redis::Value = redis::cmd(cmd[0]).arg(&cmd[1..]).query(&mut c).unwrap();
    }
    let mut got = Vec::new();
    loop {
        let m = ps.get_message().unwrap();
        let key = m
            .get_channel_name()
            .trim_start_matches("__keyspace@0__:")
            .to_owned();
        let event: String = m.get_payload().unwrap();
        let done = key == "sentinel";
        got.push((key, event));
        if done {
            break;
        }
    }
    let want = [
        ("a", "set"),
        ("a", "set"),
        ("a", "expire"),
        ("n", "incrby"),
        ("a", "append"),
        ("a", "del"),
        ("n", "del"),
        ("h", "hset"),
        ("h", "hset"),
        ("h", "hincrby"),
        ("h", "hincrbyfloat"),
        ("h", "hdel"),
        ("h", "del"),
        ("b", "set"),
        ("b2", "copy_to"),
        ("b", "rename_from"),
        ("c", "rename_to"),
        ("c", "del"),
        ("d", "set"),
        ("d", "expire"),
        ("d", "expire"),
        ("d", "persist"),
        ("d", "expire"),
        ("d", "persist"),
        ("d", "expire"),
        ("f", "incrbyfloat"),
        ("sr", "setrange"),
        ("m1", "set"),
        ("m2", "set"),
        ("m1", "del"),
        ("sentinel", "set"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, e)| ((*k).to_owned(), (*e).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn keyspace_notifications_report_set_del_expired_and_evicted() {
    let srv = Running::start(ServerConfig {
        namespaces: vec![NamespaceRule {
            prefix: "tiny:".into(),
            name: "tiny".into(),
            max_bytes: Some(8 * 1024),
            ttl_secs: None,
            critical: false,
        }],
        ..ServerConfig::default()
    });
    let mut admin = srv.con();
    let bad: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KEq")
        .query(&mut admin);
    assert!(err_of(bad).contains("Invalid event class"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KEA")
        .query(&mut admin)
        .unwrap();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut admin)
        .unwrap();
    assert_eq!(got, vec!["notify-keyspace-events", "AKE"]);

    let mut sub = srv.con();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:*").unwrap();
    ps.subscribe("__keyspace@0__:order:1").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut next = || {
        let m = ps.get_message().unwrap();
        (
            m.get_channel_name().to_owned(),
            m.get_payload::<String>().unwrap(),
        )
    };

    let _: () = admin.set("order:1", "paid").unwrap();
    let mut got = [next(), next()];
    got.sort();
    assert_eq!(
        got,
        [
            ("__keyevent@0__:set".to_owned(), "order:1".to_owned()),
            ("__keyspace@0__:order:1".to_owned(), "set".to_owned()),
        ]
    );
    let _: i64 = admin.del("order:1").unwrap();
    let mut got = [next(), next()];
    got.sort();
    assert_eq!(
        got[0],
        ("__keyevent@0__:del".to_owned(), "order:1".to_owned())
    );
    assert_eq!(
        got[1],
        ("__keyspace@0__:order:1".to_owned(), "del".to_owned())
    );

    let _: () = redis::cmd("SET")
        .arg("otp:9")
        .arg("1234")
        .arg("PX")
        .arg(50)
        .query(&mut admin)
        .unwrap();
    assert_eq!(
        next(),
        ("__keyevent@0__:set".to_owned(), "otp:9".to_owned())
    );
    assert_eq!(
        next(),
        ("__keyevent@0__:expire".to_owned(), "otp:9".to_owned())
    );
    // Expired by the background sweep, without anyone reading the key.
    assert_eq!(
        next(),
        ("__keyevent@0__:expired".to_owned(), "otp:9".to_owned())
    );

    let value = "x".repeat(1000);
    for i in 0..20 {
        let _: () = admin.set(format!("tiny:{i}"), &value).unwrap();
    }
    // 20 KB into an 8 KiB namespace: some of the keys just set are evicted and reported.
    let evicted = (0..40)
        .map(|_| next())
        .find(|(ch, _)| ch == "__keyevent@0__:evicted");
    assert!(evicted.is_some_and(|(_, key)| key.starts_with("tiny:")));
}

#[test]
fn bad_server_settings_are_refused_at_start() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = common::tempdir();
    let config = |f: fn(&mut ServerConfig)| {
        let mut c = ServerConfig {
            data_dir: dir.path().to_owned(),
            port: 0,
            http_port: 0,
            ..ServerConfig::default()
        };
        f(&mut c);
        c
    };
    let e = rt
        .block_on(Server::start(config(|c| {
            c.appendfsync = "sometimes".into()
        })))
        .unwrap_err();
    assert!(e.to_string().contains("appendfsync"), "{e}");
    let e = rt
        .block_on(Server::start(config(|c| {
            c.users = vec![courier(), courier()]
        })))
        .unwrap_err();
    assert!(e.to_string().contains("courier"), "{e}");
}

#[test]
fn a_subscriber_that_stops_reading_is_disconnected_and_the_server_stays_up() {
    let srv = Running::start(ServerConfig::default());
    let mut stalled = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    std::io::Write::write_all(&mut stalled, b"SUBSCRIBE firehose\r\n").unwrap();
    let mut publisher = srv.con();
    eventually(10, || {
        let n: i64 = publisher.publish("firehose", "hello").unwrap();
        (n == 1).then_some(())
    });
    // Never read from `stalled`: socket buffers fill, then its bounded queue, then it is cut
    // off (Redis's pub/sub output-buffer limit).
    let payload = vec![b'x'; 4096];
    let mut delivered_to_nobody = false;
    for _ in 0..40_000 {
        let n: i64 = publisher.publish("firehose", &payload).unwrap();
        if n == 0 {
            delivered_to_nobody = true;
            break;
        }
    }
    assert!(
        delivered_to_nobody,
        "the stalled subscriber was never disconnected"
    );
    // Its connection closes even though its socket never drained.
    eventually(10, || {
        let numsub: (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("firehose")
            .query(&mut publisher)
            .unwrap();
        (numsub.1 == 0).then_some(())
    });
    let mut rest = Vec::new();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        !rest.is_empty(),
        "what was written before the cut-off is still readable"
    );
    let _: () = publisher.set("still", "serving").unwrap();
    assert_eq!(publisher.get::<_, String>("still").unwrap(), "serving");
}

fn commands_processed(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The `field:value` pairs of one `INFO` reply, and its section titles in order.
fn info_fields(text: &str) -> (std::collections::HashMap<String, String>, Vec<String>) {
    let mut fields = std::collections::HashMap::new();
    let mut titles = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# ") {
            titles.push(t.to_owned());
        } else if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.to_owned(), v.to_owned());
        }
    }
    (fields, titles)
}

/// `INFO` gives Redis's sections and the fields monitoring tools read, and `INFO <section>`
/// only the sections asked for.
#[test]
fn info_has_redis_sections_and_fields_and_filters_by_section() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    let all: String = redis::cmd("INFO").query(&mut c).unwrap();
    let (f, titles) = info_fields(&all);
    assert_eq!(
        titles,
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "CPU",
            "Cluster",
            "Keyspace"
        ]
    );
    // A leader without followers, as ROLE says too; the CPU the process has used.
    assert_eq!(f["role"], "master");
    assert_eq!(f["connected_slaves"], "0");
    assert_eq!(f["master_replid"], f["run_id"]);
    assert_eq!(f["cluster_enabled"], "0");
    let cpu = |f: &std::collections::HashMap<String, String>| -> f64 {
        f["used_cpu_user"].parse::<f64>().unwrap() + f["used_cpu_sys"].parse::<f64>().unwrap()
    };
    let before = cpu(&f);
    // The server runs in this process: 100 ms of this thread's own CPU (ticks of 10 ms in
    // /proc/thread-self/stat, however busy the machine is) show in its figures.
    let thread_ticks = || -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
    };
    let start = thread_ticks();
    let mut x = 0u64;
    while thread_ticks() < start + 10 {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }
    let again: String = redis::cmd("INFO").arg("cpu").query(&mut c).unwrap();
    let after = cpu(&info_fields(&again).0);
    assert!(after >= before + 0.08, "{before} then {after}");
    let role: (String, i64, Vec<redis::Value>) = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(role, ("master".to_owned(), 0, vec![]));
    assert_eq!(f["process_id"], std::process::id().to_string());
    assert_eq!(f["run_id"].len(), 40);
    assert!(f["run_id"].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        f["maxclients"],
        ServerConfig::default().max_clients.to_string()
    );
    assert_eq!(f["blocked_clients"], "0");
    assert!(f["used_memory_rss"].parse::<u64>().unwrap() > 0);
    assert_eq!(
        f["used_memory_human"].chars().last(),
        Some('B'),
        "{}",
        f["used_memory_human"]
    );
    assert_eq!(f["maxmemory_human"], "1.00G");
    assert!(
        !f.contains_key("db0"),
        "no keyspace line for an empty database"
    );
    // A client blocked in XREAD is counted while it waits.
    let mut blocked = srv.con();
    let reader = std::thread::spawn(move || {
        let _: redis::Value = redis::cmd("XREAD")
            .arg(&["BLOCK", "3000", "STREAMS", "waiting", "$"])
            .query(&mut blocked)
            .unwrap();
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
        if info_fields(&text).0["blocked_clients"] == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never counted as blocked: {text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _: String = redis::cmd("XADD")
        .arg(&["waiting", "*", "f", "v"])
        .query(&mut c)
        .unwrap();
    reader.join().unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["k", "v", "PX", "1"])
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let _: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    let text: String = redis::cmd("INFO")
        .arg("STATS")
        .arg("keyspace")
        .query(&mut c)
        .unwrap();
    let (f, titles) = info_fields(&text);
    assert_eq!(titles, ["Stats", "Keyspace"]);
    assert_eq!(f["expired_keys"], "1");
    assert_eq!(f["db0"], "keys=1,expires=0,avg_ttl=0", "the stream");
    assert!(
        !f.contains_key("blocked_clients"),
        "a section not asked for"
    );
    // Keys with a time to live: counted, with the mean time they have left in milliseconds.
    for (key, secs) in [("a", "100"), ("b", "300")] {
        let _: () = redis::cmd("SET")
            .arg(&[key, "v", "EX", secs])
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET").arg(&["c", "v"]).query(&mut c).unwrap();
    let text: String = redis::cmd("INFO").arg("keyspace").query(&mut c).unwrap();
    let db0 = info_fields(&text).0["db0"].clone();
    let avg: u64 = db0
        .strip_prefix("keys=4,expires=2,avg_ttl=")
        .unwrap_or_else(|| panic!("{db0}"))
        .parse()
        .unwrap();
    assert!((190_000..=200_000).contains(&avg), "{db0}");
}

#[test]
fn info_counts_every_command_of_every_connection() {
    let srv = Running::start(ServerConfig::default());
    let mut observer = srv.con();
    let mut worker = srv.con();
    let before = commands_processed(&mut observer);
    let mut pipe = redis::pipe();
    for i in 0..10 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    pipe.cmd("XADD")
        .arg("s")
        .arg("*")
        .arg("f")
        .arg("v")
        .ignore();
    let _: () = pipe.query(&mut worker).unwrap();
    // 11 from the worker, and the observer's first INFO.
    assert_eq!(commands_processed(&mut observer) - before, 12);
}

/// `SHUTDOWN` with options it does not take, or `ABORT`, is an error and stops nothing; a
/// plain `SHUTDOWN` closes the connection without a reply, and the server stops accepting.
#[test]
fn shutdown_refuses_bad_options_and_otherwise_stops_the_server() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    for (args, reply) in [
        (&["ABORT"][..], "No shutdown in progress"),
        (&["SAVE", "NOSAVE"][..], "syntax error"),
        (&["ABORT", "NOW"][..], "syntax error"),
        (&["LATER"][..], "syntax error"),
    ] {
        let r: RedisResult<()> = redis::cmd("SHUTDOWN").arg(args).query(&mut c);
        let e = err_of(r);
        assert!(e.contains(reply), "SHUTDOWN {args:?}: {e}");
    }
    let _: () = c.set("still", "up").unwrap();
    assert_eq!(
        srv.raw(b"SHUTDOWN NOSAVE NOW\r\nPING\r\n"),
        b"",
        "no reply, closed"
    );
    eventually(10, || {
        TcpStream::connect(("127.0.0.1", srv.port))
            .is_err()
            .then_some(())
    });
}

/// `SAVE`, `BGSAVE` and `LASTSAVE` answer as Redis 7.0 does (replies checked against
/// redis-server 7.0.15), and `INFO persistence` follows the background save. What a save keeps
/// across a SIGKILL is tested in server_crash.rs.
#[test]
fn save_bgsave_and_lastsave_answer_as_redis() {
    let srv = Running::start(ServerConfig::default());
    let mut c = srv.con();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let started: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!((now() - 60..=now()).contains(&started), "{started}");
    std::thread::sleep(Duration::from_millis(1100));
    let ok: String = redis::cmd("SAVE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let saved: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(saved > started, "{saved} after {started}");
    let raw = |line: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std::io::Write::write_all(&mut s, line.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"\r\n")
            || got.iter().filter(|&&b| b == b'\n').count() < line.matches('\n').count()
        {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    };
    assert_eq!(raw("BGSAVE x\r\n"), "-ERR syntax error\r\n");
    assert_eq!(
        raw("SAVE x\r\n"),
        "-ERR wrong number of arguments for 'save' command\r\n"
    );
    assert_eq!(
        raw("LASTSAVE x\r\n"),
        "-ERR wrong number of arguments for 'lastsave' command\r\n"
    );
    // SAVE is refused inside MULTI, and the transaction with it.
    assert_eq!(
        raw("MULTI\r\nSAVE\r\nSET k v\r\nEXEC\r\n"),
        "+OK\r\n-ERR Command not allowed inside a transaction\r\n+QUEUED\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    let exists: i64 = redis::cmd("EXISTS").arg("k").query(&mut c).unwrap();
    assert_eq!(exists, 0);
    // BGSAVE in the background; while it runs, another is refused or scheduled.
    let started: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(started, "Background saving started");
    for _ in 0..3 {
        match redis::cmd("BGSAVE").query::<String>(&mut c) {
            Ok(s) => assert_eq!(s, "Background saving started", "the first one had ended"),
            Err(e) => assert!(e.to_string().contains("already in progress"), "{e}"),
        }
        let s: String = redis::cmd("BGSAVE").arg("SCHEDULE").query(&mut c).unwrap();
        assert!(
            ["Background saving started", "Background saving scheduled"].contains(&s.as_str()),
            "{s}"
        );
    }
    eventually(10, || {
        let text: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        let (f, _) = info_fields(&text);
        (f["rdb_bgsave_in_progress"] == "0").then_some(())
    });
    let text: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
    let (f, titles) = info_fields(&text);
    assert_eq!(titles, ["Persistence"]);
    assert_eq!(f["rdb_last_bgsave_status"], "ok");
    assert!(f["rdb_last_save_time"].parse::<i64>().unwrap() >= saved);
}
