//! Connection and server commands.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::{Conn, Flow, wrong_args};
use crate::server::Shared;
use crate::server::reply::Out;

fn auth_ok(shared: &Shared, user: Option<&[u8]>, pass: &[u8]) -> bool {
    let user_ok = user.is_none_or(|u| u == b"default");
    user_ok
        && shared
            .config
            .password
            .as_deref()
            .is_none_or(|p| p.as_bytes() == pass)
}

pub(crate) fn exec(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    cmd: &str,
    args: &[Bytes],
    out: &mut Out,
) -> Flow {
    match cmd {
        "ping" => {
            if conn.subscriptions() > 0 && !out.resp3 {
                out.array(2);
                out.bulk(b"pong");
                out.bulk(args.get(1).map_or(&b""[..], |m| &m[..]));
            } else {
                match args.get(1) {
                    Some(m) => out.bulk(m),
                    None => out.simple("PONG"),
                }
            }
        }
        "echo" => match args.get(1) {
            Some(m) if args.len() == 2 => out.bulk(m),
            _ => wrong_args(out, &args[0]),
        },
        "quit" => {
            out.ok();
            return Flow::Close;
        }
        "reset" => {
            conn.sub = None;
            conn.channels.clear();
            conn.patterns.clear();
            conn.name = None;
            out.resp3 = false;
            conn.authed = shared.config.password.is_none();
            out.simple("RESET");
        }
        "auth" => {
            let (user, pass) = match args.len() {
                2 => (None, &args[1]),
                3 => (Some(&args[1][..]), &args[2]),
                _ => {
                    wrong_args(out, &args[0]);
                    return Flow::Continue;
                }
            };
            if shared.config.password.is_none() {
                out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            } else if auth_ok(shared, user, pass) {
                conn.authed = true;
                out.ok();
            } else {
                out.error("WRONGPASS invalid username-password pair or user is disabled.");
            }
        }
        "hello" => hello(shared, conn, args, out),
        "select" => match args.get(1).map(|a| &a[..]) {
            Some(b"0") => out.ok(),
            Some(_) => out.error("ERR DB index is out of range"),
            None => wrong_args(out, &args[0]),
        },
        "client" => client(shared, conn, args, out),
        "info" => info(shared, out),
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            out.array(2);
            out.bulk(now.as_secs().to_string().as_bytes());
            out.bulk(now.subsec_micros().to_string().as_bytes());
        }
        "command" => {
            // Enough for redis-cli and client libraries: they tolerate an empty table.
            match args
                .get(1)
                .map(|a| String::from_utf8_lossy(a).to_lowercase())
            {
                Some(s) if s == "count" => out.int(0),
                _ => out.array(0),
            }
        }
        "config" => config(shared, args, out),
        _ => {
            let shown: Vec<String> = args[1..]
                .iter()
                .take(8)
                .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
                .collect();
            out.error(&format!(
                "ERR unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&args[0]),
                shown.join(" ")
            ));
        }
    }
    Flow::Continue
}

fn hello(shared: &Arc<Shared>, conn: &mut Conn, args: &[Bytes], out: &mut Out) {
    let mut i = 1;
    let mut proto = None;
    if let Some(v) = args.get(1) {
        match v.as_ref() {
            b"2" => proto = Some(false),
            b"3" => proto = Some(true),
            _ => {
                out.error("NOPROTO unsupported protocol version");
                return;
            }
        }
        i = 2;
    }
    while i < args.len() {
        match String::from_utf8_lossy(&args[i]).to_lowercase().as_str() {
            "auth" if i + 2 < args.len() => {
                if !auth_ok(shared, Some(&args[i + 1]), &args[i + 2])
                    && shared.config.password.is_some()
                {
                    out.error("WRONGPASS invalid username-password pair or user is disabled.");
                    return;
                }
                conn.authed = true;
                i += 3;
            }
            "setname" if i + 1 < args.len() => {
                conn.name = Some(String::from_utf8_lossy(&args[i + 1]).into_owned());
                i += 2;
            }
            _ => {
                out.error("ERR syntax error in HELLO option");
                return;
            }
        }
    }
    if !conn.authed {
        out.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if let Some(p) = proto {
        out.resp3 = p;
    }
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"redis");
    out.bulk(b"version");
    out.bulk(b"7.0.0");
    out.bulk(b"proto");
    out.int(if out.resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(conn.id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
}

fn client(shared: &Arc<Shared>, conn: &mut Conn, args: &[Bytes], out: &mut Out) {
    let Some(sub) = args.get(1) else {
        return wrong_args(out, &args[0]);
    };
    match String::from_utf8_lossy(sub).to_lowercase().as_str() {
        "setname" if args.len() == 3 => {
            conn.name = Some(String::from_utf8_lossy(&args[2]).into_owned());
            out.ok();
        }
        "getname" => out.opt_bulk(conn.name.as_deref().map(str::as_bytes)),
        "id" => out.int(conn.id as i64),
        "setinfo" => out.ok(),
        "list" | "info" => {
            let line = format!(
                "id={} addr={} name={} db=0 resp={}\n",
                conn.id,
                conn.addr,
                conn.name.as_deref().unwrap_or(""),
                if out.resp3 { 3 } else { 2 }
            );
            out.bulk(line.as_bytes());
        }
        "kill" => {
            let _ = shared;
            out.error("ERR No such client");
        }
        _ => out.error("ERR unknown subcommand or wrong number of arguments for 'client'"),
    }
}

fn config(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let Some(sub) = args.get(1) else {
        return wrong_args(out, &args[0]);
    };
    match String::from_utf8_lossy(sub).to_lowercase().as_str() {
        "get" if args.len() >= 3 => {
            let known = [
                ("maxmemory", shared.config.max_bytes.to_string()),
                ("port", shared.config.port.to_string()),
                ("bind", shared.config.bind.clone()),
                ("appendonly", "no".to_owned()),
                ("save", String::new()),
                ("databases", "1".to_owned()),
            ];
            let pattern = &args[2];
            let hits: Vec<&(&str, String)> = known
                .iter()
                .filter(|(k, _)| {
                    crate::glob::glob_match(&pattern.to_ascii_lowercase(), k.as_bytes())
                })
                .collect();
            out.map(hits.len());
            for (k, v) in hits {
                out.bulk(k.as_bytes());
                out.bulk(v.as_bytes());
            }
        }
        "set" => out.error("ERR CONFIG SET is not supported for this parameter"),
        "resetstat" => out.ok(),
        _ => out.error("ERR unknown subcommand or wrong number of arguments for 'config'"),
    }
}

fn info(shared: &Arc<Shared>, out: &mut Out) {
    let (mut hits, mut misses, mut bytes, mut keys) = (0, 0, 0, 0);
    for ns in shared.db.namespaces() {
        let s = ns.stats();
        hits += s.hits;
        misses += s.misses;
        bytes += s.bytes;
        keys += s.entries;
    }
    let st = &shared.stats;
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\nquipu_version:{}\r\nredis_mode:standalone\r\nos:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n\
         # Clients\r\nconnected_clients:{}\r\n\r\n\
         # Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\n\r\n\
         # Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\r\n\
         # Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        shared.config.port,
        shared.started.elapsed().as_secs(),
        st.clients.load(Relaxed),
        bytes,
        shared.config.max_bytes,
        st.connections.load(Relaxed),
        st.commands.load(Relaxed),
        hits,
        misses,
        keys,
    );
    out.bulk(text.as_bytes());
}
