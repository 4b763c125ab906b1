//! Connection and server commands.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::{Conn, Flow, table, wrong_args};
use crate::server::Shared;
use crate::server::acl::UserRule;
use crate::server::reply::Out;

/// The user `AUTH`/`HELLO AUTH` logs in as: `Some(None)` for `default`, `Some(Some(u))` for a
/// configured user, `None` for a bad name or password.
#[allow(
    clippy::option_option,
    reason = "default user vs configured user vs refused"
)]
fn authenticate(
    shared: &Shared,
    user: Option<&[u8]>,
    pass: &[u8],
) -> Option<Option<Arc<UserRule>>> {
    match user {
        None | Some(b"default") => shared
            .config
            .password
            .as_deref()
            .is_none_or(|p| p.as_bytes() == pass)
            .then_some(None),
        Some(name) => shared
            .users
            .iter()
            .find(|u| u.name.as_bytes() == name && u.password_is(pass))
            .map(|u| Some(Arc::clone(u))),
    }
}

pub(crate) fn exec(
    shared: &Arc<Shared>,
    conn: &mut Conn,
    cmd: &str,
    args: &[Bytes],
    out: &mut Out,
) -> Flow {
    match cmd {
        "ping" if args.len() > 2 => wrong_args(out, &args[0]),
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
        "shutdown" => return shutdown(shared, args, out),
        "save" if shared.saves.in_progress() => out.error(crate::server::save::IN_PROGRESS),
        "save" => match crate::server::save::save(shared) {
            Ok(()) => out.ok(),
            Err(e) => out.error(&format!("ERR {e}")),
        },
        "bgsave" => {
            let schedule = match &args[1..] {
                [] => false,
                [a] if a.eq_ignore_ascii_case(b"schedule") => true,
                _ => {
                    super::syntax(out);
                    return Flow::Continue;
                }
            };
            match crate::server::save::start_background(shared, schedule) {
                Ok(status) => out.simple(status),
                Err(e) => out.error(&e),
            }
        }
        "lastsave" => out.int(shared.saves.last() as i64),
        "reset" => {
            conn.sub = None;
            conn.multi = None;
            conn.watched.clear();
            conn.channels.clear();
            conn.patterns.clear();
            *conn.client.name.lock() = None;
            out.resp3 = false;
            conn.client.resp.store(2, Relaxed);
            conn.login(None);
            conn.authed = shared.config.password.is_none();
            out.simple("RESET");
        }
        "auth" => {
            let (user, pass) = match args.len() {
                2 => (None, &args[1]),
                3 => (Some(&args[1][..]), &args[2]),
                // Past the table's arity (-2): Redis answers a syntax error.
                _ => {
                    super::syntax(out);
                    return Flow::Continue;
                }
            };
            if user.is_none() && shared.config.password.is_none() && shared.users.is_empty() {
                out.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            } else if let Some(u) = authenticate(shared, user, pass) {
                conn.login(u);
                out.ok();
            } else {
                out.error("WRONGPASS invalid username-password pair or user is disabled.");
            }
        }
        "hello" => hello(shared, conn, args, out),
        "select" => {
            if super::database_zero(&args[1], out) {
                out.ok();
            }
        }
        "client" => client(shared, conn, args, out),
        "info" => info(shared, args, out),
        "role" => {
            // A leader without followers (no replication yet): Redis's reply for one.
            out.array(3);
            out.bulk(b"master");
            out.int(0);
            out.array(0);
        }
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            out.array(2);
            out.bulk(now.as_secs().to_string().as_bytes());
            out.bulk(now.subsec_micros().to_string().as_bytes());
        }
        "command" => command(args, out),
        "config" => config(shared, args, out),
        "acl" => acl(conn, shared, args, out),
        _ => out.error(&unknown_command(args)),
    }
    Flow::Continue
}

/// `COMMAND`, `COMMAND COUNT | INFO [name …] | LIST [FILTERBY ACLCAT cat | PATTERN glob] |
/// GETKEYS command arg …`, from the command table, with Redis 7's reply shape (tips and key
/// specs empty). `COMMAND DOCS` is an unknown subcommand, on purpose: redis-cli then falls back
/// to the help it carries, which has every command's arguments for its hints.
fn command(args: &[Bytes], out: &mut Out) {
    if args.len() > 1 && !super::subcommand_fits(out, args) {
        return;
    }
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_lowercase());
    match sub.as_deref() {
        None => {
            out.array(table::top_level().count());
            for s in table::top_level() {
                command_entry(s, out);
            }
        }
        Some("count") => out.int(table::top_level().count() as i64),
        Some("info") if args.len() == 2 => command(&args[..1], out),
        Some("info") => {
            out.array(args.len() - 2);
            for name in &args[2..] {
                match table::spec(&String::from_utf8_lossy(name).to_lowercase()) {
                    Some(s) => command_entry(s, out),
                    None => out.null(),
                }
            }
        }
        Some("list") => command_list(args, out),
        Some("getkeys") => {
            let name = String::from_utf8_lossy(&args[2]).to_lowercase();
            let Some(s) = table::spec(&name) else {
                return out.error("ERR Invalid command specified");
            };
            if !table::arity_fits(s.arity, args.len() - 2) {
                return out.error("ERR Invalid number of arguments specified for command");
            }
            let keys = table::key_positions(&args[2..]);
            if keys.is_empty() {
                return out.error("ERR The command has no key arguments");
            }
            out.array(keys.len());
            for i in keys {
                out.bulk(&args[2 + i]);
            }
        }
        // subcommand_fits let through only the subcommands above.
        Some(_) => out.error("ERR syntax error"),
    }
}

/// `COMMAND LIST [FILTERBY ACLCAT cat | PATTERN glob | MODULE name]`.
fn command_list(args: &[Bytes], out: &mut Out) {
    let filter = match &args[2..] {
        [] => None,
        [by, kind, value]
            if by.eq_ignore_ascii_case(b"filterby")
                && [&b"aclcat"[..], b"pattern", b"module"]
                    .iter()
                    .any(|k| kind.eq_ignore_ascii_case(k)) =>
        {
            // Names are lower case; Redis matches a pattern ignoring case.
            Some((
                String::from_utf8_lossy(kind).to_lowercase(),
                value.to_ascii_lowercase(),
            ))
        }
        _ => return super::syntax(out),
    };
    // Every command and subcommand (`acl|users`), each container before its own, as Redis.
    let names: Vec<&str> = table::top_level()
        .flat_map(|s| std::iter::once(s).chain(table::subcommands_of(s.name)))
        .filter(|s| match &filter {
            None => true,
            Some((kind, value)) => match kind.as_str() {
                "aclcat" => s
                    .categories
                    .iter()
                    .any(|c| c.as_bytes().eq_ignore_ascii_case(value)),
                "pattern" => crate::glob::glob_match(value, s.name.as_bytes()),
                // No modules.
                _ => false,
            },
        })
        .map(|s| s.name)
        .collect();
    out.array(names.len());
    for n in names {
        out.bulk(n.as_bytes());
    }
}

/// One command's `COMMAND INFO` entry, Redis 7's ten fields, its subcommands nested.
fn command_entry(s: &table::Spec, out: &mut Out) {
    out.array(10);
    out.bulk(s.name.as_bytes());
    out.int(i64::from(s.arity));
    out.set(s.flags.len());
    for f in s.flags {
        out.simple(f);
    }
    out.int(i64::from(s.first));
    out.int(i64::from(s.last));
    out.int(i64::from(s.step));
    out.set(s.categories.len());
    for c in s.categories {
        out.simple(&format!("@{c}"));
    }
    // Tips and key specs.
    out.set(0);
    out.array(0);
    if s.name.contains('|') {
        out.array(0);
    } else {
        let subs: Vec<_> = table::subcommands_of(s.name).collect();
        out.array(subs.len());
        for sub in subs {
            command_entry(sub, out);
        }
    }
}

/// Redis 7's reply to an unknown command: its name (at most `SHOWN_MAX` bytes), then each
/// argument quoted and followed by a space while the arguments shown are under `SHOWN_MAX`
/// bytes, the last one cut to fit.
pub(crate) fn unknown_command(args: &[Bytes]) -> String {
    use super::SHOWN_MAX;
    let mut shown = Vec::new();
    for a in &args[1..] {
        if shown.len() >= SHOWN_MAX {
            break;
        }
        let room = SHOWN_MAX - shown.len();
        // Up to a NUL, as Redis's `%.*s` reads it.
        let a = &a[..a.len().min(room)];
        let a = &a[..a.iter().position(|&b| b == 0).unwrap_or(a.len())];
        shown.push(b'\'');
        shown.extend_from_slice(a);
        shown.extend_from_slice(b"' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        super::shown(&args[0]),
        String::from_utf8_lossy(&shown)
    )
}

fn hello(shared: &Arc<Shared>, conn: &mut Conn, args: &[Bytes], out: &mut Out) {
    let mut i = 1;
    let mut proto = None;
    if let Some(v) = args.get(1) {
        match super::parse_i64(v) {
            Some(2) => proto = Some(false),
            Some(3) => proto = Some(true),
            Some(_) => {
                out.error("NOPROTO unsupported protocol version");
                return;
            }
            None => {
                out.error("ERR Protocol version is not an integer or out of range");
                return;
            }
        }
        i = 2;
    }
    while i < args.len() {
        match String::from_utf8_lossy(&args[i]).to_lowercase().as_str() {
            "auth" if i + 2 < args.len() => {
                match authenticate(shared, Some(&args[i + 1]), &args[i + 2]) {
                    Some(u) => conn.login(u),
                    None => {
                        out.error("WRONGPASS invalid username-password pair or user is disabled.");
                        return;
                    }
                }
                i += 3;
            }
            "setname" if i + 1 < args.len() => {
                *conn.client.name.lock() = Some(String::from_utf8_lossy(&args[i + 1]).into_owned());
                i += 2;
            }
            _ => {
                out.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    super::shown(&args[i])
                ));
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
        conn.client.resp.store(if p { 3 } else { 2 }, Relaxed);
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
    let sub = String::from_utf8_lossy(sub).to_lowercase();
    if !super::subcommand_fits(out, args) {
        return;
    }
    match sub.as_str() {
        "setname" => {
            if args[2].iter().any(|&b| b == b' ' || !b.is_ascii_graphic()) {
                return out.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            let name = String::from_utf8_lossy(&args[2]).into_owned();
            *conn.client.name.lock() = (!name.is_empty()).then_some(name);
            out.ok();
        }
        "getname" => {
            let name = conn.client.name.lock().clone();
            out.opt_bulk(name.as_deref().map(str::as_bytes));
        }
        "id" => out.int(conn.id as i64),
        // Client libraries announce themselves (Redis 7.2); quipu checks and forgets it.
        "setinfo" => {
            let attr = String::from_utf8_lossy(&args[2]).to_lowercase();
            if attr != "lib-name" && attr != "lib-ver" {
                return out.error(&format!(
                    "ERR Unrecognized option '{}'",
                    super::shown(&args[2])
                ));
            }
            if args[3].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return out.error(&format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    super::shown(&args[2])
                ));
            }
            out.ok()
        }
        // Accepted for clients that send it; no client is evicted for memory in quipu.
        "no-evict" => match String::from_utf8_lossy(&args[2]).to_lowercase().as_str() {
            "on" | "off" => out.ok(),
            _ => out.error("ERR syntax error"),
        },
        "info" => out.verbatim(conn.client.line().as_bytes()),
        "list" => client_list(shared, args, out),
        "kill" => kill(shared, conn, args, out),
        // Refused by the check above.
        _ => out.error("ERR unknown subcommand"),
    }
}

/// `CLIENT LIST [TYPE normal|master|replica|slave|pubsub] | [ID id ...]`, with Redis 7.0's
/// errors. A client is of type `pubsub` while it holds a subscription; quipu has no
/// replicas or masters, so those types list nobody.
fn client_list(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let option = args.get(2).map(|a| a.to_ascii_lowercase());
    let clients = match option.as_deref() {
        None => shared.clients.list(),
        Some(b"type") if args.len() == 4 => {
            let pubsub = match args[3].to_ascii_lowercase().as_slice() {
                b"normal" => false,
                b"pubsub" => true,
                b"master" | b"replica" | b"slave" => return out.bulk(b""),
                _ => {
                    return out.error(&format!(
                        "ERR Unknown client type '{}'",
                        super::shown(&args[3])
                    ));
                }
            };
            let mut all = shared.clients.list();
            all.retain(|c| (c.subscriptions.load(Relaxed) > 0) == pubsub);
            all
        }
        Some(b"id") if args.len() > 3 => {
            let mut found = Vec::new();
            for arg in &args[3..] {
                let Some(id) = std::str::from_utf8(arg)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                else {
                    return out.error("ERR Invalid client ID");
                };
                found.extend(u64::try_from(id).ok().and_then(|id| shared.clients.get(id)));
            }
            found
        }
        Some(_) => return super::syntax(out),
    };
    let text: String = clients.iter().map(|c| c.line()).collect();
    out.verbatim(text.as_bytes());
}

/// `CLIENT KILL addr` (old form: OK or an error) and `CLIENT KILL [ID id] [ADDR addr]
/// [USER name] [SKIPME yes|no]` (the number killed).
fn kill(shared: &Arc<Shared>, conn: &Conn, args: &[Bytes], out: &mut Out) {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(&args[2]);
        return match shared.clients.list().iter().find(|c| c.addr == addr) {
            Some(c) => {
                c.kill();
                out.ok();
            }
            None => out.error("ERR No such client"),
        };
    }
    if args.len() < 4 || !args.len().is_multiple_of(2) {
        return super::syntax(out);
    }
    let (mut id, mut addr, mut user, mut skipme) = (None, None, None, true);
    for pair in args[2..].chunks(2) {
        let v = String::from_utf8_lossy(&pair[1]).into_owned();
        match String::from_utf8_lossy(&pair[0]).to_lowercase().as_str() {
            "id" => match v.parse::<u64>() {
                Ok(n) => id = Some(n),
                Err(_) => return out.error("ERR client-id should be greater than 0"),
            },
            "addr" => addr = Some(v),
            "user" => user = Some(v),
            "skipme" => match v.as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return super::syntax(out),
            },
            _ => return super::syntax(out),
        }
    }
    let mut n = 0;
    for c in shared.clients.list() {
        let hit = id.is_none_or(|i| c.id == i)
            && addr.as_ref().is_none_or(|a| &c.addr == a)
            && user.as_ref().is_none_or(|u| *c.user.lock() == *u)
            && !(skipme && c.id == conn.id);
        if hit {
            c.kill();
            n += 1;
        }
    }
    out.int(n);
}

fn config(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let Some(sub) = args.get(1) else {
        return wrong_args(out, &args[0]);
    };
    let sub = String::from_utf8_lossy(sub).to_lowercase();
    if !super::subcommand_fits(out, args) {
        return;
    }
    match sub.as_str() {
        "get" => {
            let known = [
                ("maxmemory", shared.config.max_bytes.to_string()),
                // Inserts evict (S3-FIFO) to stay in budget: the role of Redis's LRU and LFU
                // policies over all keys.
                (
                    "maxmemory-policy",
                    if shared.lfu_named.load(Relaxed) {
                        "allkeys-lfu"
                    } else {
                        "allkeys-lru"
                    }
                    .to_owned(),
                ),
                ("maxclients", shared.config.max_clients.to_string()),
                ("port", shared.config.port.to_string()),
                ("bind", shared.config.bind.clone()),
                ("timeout", shared.timeout_secs.load(Relaxed).to_string()),
                ("notify-keyspace-events", shared.db.notifier.letters()),
                ("appendonly", "yes".to_owned()),
                ("appendfsync", shared.config.appendfsync.clone()),
                ("proto-max-bulk-len", shared.config.max_bulk.to_string()),
                // Redis's "<seconds> <changes>": a save every `save_secs`, changes or not.
                (
                    "save",
                    match shared.config.save_secs {
                        0 => String::new(),
                        n => format!("{n} 0"),
                    },
                ),
                ("databases", "1".to_owned()),
            ];
            let mut hits: Vec<&(&str, String)> = Vec::new();
            for pattern in &args[2..] {
                let pattern = pattern.to_ascii_lowercase();
                for kv in &known {
                    if crate::glob::glob_match(&pattern, kv.0.as_bytes())
                        && !hits.iter().any(|h| h.0 == kv.0)
                    {
                        hits.push(kv);
                    }
                }
            }
            out.map(hits.len());
            for (k, v) in hits {
                out.bulk(k.as_bytes());
                out.bulk(v.as_bytes());
            }
        }
        "set" if args.len() >= 4 && args.len().is_multiple_of(2) => config_set(shared, args, out),
        "set" => wrong_args(out, b"config|set"),
        "resetstat" => out.ok(),
        // Refused by the check above.
        _ => out.error("ERR unknown subcommand"),
    }
}

/// `CONFIG SET` of what can change at run time; all pairs are checked before any applies.
fn config_set(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let mut timeout = None;
    let mut events = None;
    let mut lfu = None;
    for pair in args[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        match name.as_str() {
            "timeout" => match value.parse::<i64>() {
                Ok(v) => match u64::try_from(v) {
                    Ok(v) if v <= i32::MAX as u64 => timeout = Some(v),
                    _ => {
                        return out.error(
                            "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive",
                        );
                    }
                },
                Err(_) => {
                    return out.error(
                        "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument couldn't be parsed into an integer",
                    );
                }
            },
            "notify-keyspace-events" => events = Some(value),
            "maxmemory-policy" => match value.to_lowercase().as_str() {
                "allkeys-lru" => lfu = Some(false),
                "allkeys-lfu" => lfu = Some(true),
                "volatile-lru" | "volatile-lfu" | "volatile-random" | "volatile-ttl"
                | "allkeys-random" | "noeviction" => {
                    return out.error(&format!(
                        "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - quipu evicts from all keys by S3-FIFO (allkeys-lru or allkeys-lfu); '{}' is not supported",
                        super::shown(value.as_bytes())
                    ));
                }
                _ => {
                    return out.error(
                        "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction",
                    );
                }
            },
            _ => {
                return out.error(&format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                    super::shown(name.as_bytes())
                ));
            }
        }
    }
    if let Some(letters) = &events
        && shared.db.notifier.check(letters).is_err()
    {
        return out.error(
            "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.",
        );
    }
    if let Some(letters) = events {
        let _ = shared.db.notifier.configure(&letters);
    }
    if let Some(t) = timeout {
        shared.timeout_secs.store(t, Relaxed);
    }
    if let Some(lfu) = lfu {
        shared.lfu_named.store(lfu, Relaxed);
    }
    out.ok();
}

fn acl(conn: &Conn, shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    if !super::subcommand_fits(out, args) {
        return;
    }
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_lowercase());
    match sub.as_deref() {
        Some("whoami") => {
            let name = conn.user.as_ref().map_or("default", |u| &u.name);
            out.bulk(name.as_bytes());
        }
        Some("users") => {
            out.array(shared.users.len() + 1);
            out.bulk(b"default");
            for u in shared.users.iter() {
                out.bulk(u.name.as_bytes());
            }
        }
        // The table has a row for every subcommand above.
        _ => out.error(&format!(
            "ERR unknown subcommand '{}'. Try ACL HELP.",
            super::shown(&args[1])
        )),
    }
}

/// `INFO [section …]`: Redis's field names for what quipu has, in the sections server,
/// clients, memory, persistence, stats, replication, cpu, cluster and keyspace; no section (or
/// `all`, `default`, `everything`) gives them all, an unknown one nothing, as in Redis.
fn info(shared: &Arc<Shared>, args: &[Bytes], out: &mut Out) {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "default" | "everything"));
    let mut text = String::new();
    for (name, body) in info_sections(shared) {
        if all || wanted.iter().any(|w| w == name) {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let mut title = name.to_owned();
            if name == "cpu" {
                title.make_ascii_uppercase();
            } else {
                title[..1].make_ascii_uppercase();
            }
            text.push_str(&format!("# {title}\r\n{body}"));
        }
    }
    out.verbatim(text.as_bytes());
}

/// The sections of `INFO`, each as `field:value` lines.
fn info_sections(shared: &Arc<Shared>) -> Vec<(&'static str, String)> {
    let (mut hits, mut misses, mut bytes, mut keys, mut expired, mut evicted) = (0, 0, 0, 0, 0, 0);
    // Keys with a time to live, and their milliseconds left in all.
    let (mut expires, mut ttl_ms) = (0u64, 0u128);
    for ns in shared.db.namespaces() {
        let (n, mean) = ns.expiring();
        expires += n;
        ttl_ms += u128::from(n) * super::shown_ttl(mean).as_millis();
        let s = ns.stats();
        hits += s.hits;
        misses += s.misses;
        bytes += s.bytes;
        keys += s.entries;
        expired += s.expired;
        evicted += s.evicted_size;
    }
    // Streams are keys too, as in DBSIZE.
    keys += crate::server::streams::keys(shared).len() as u64;
    let st = &shared.stats;
    let uptime = shared.started.elapsed().as_secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let executable = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let rss = resident_bytes();
    let max = shared.config.max_bytes;
    let lines = |fields: &[(&str, String)]| -> String {
        fields.iter().map(|(k, v)| format!("{k}:{v}\r\n")).collect()
    };
    vec![
        (
            "server",
            lines(&[
                ("redis_version", "7.0.0".into()),
                ("quipu_version", env!("CARGO_PKG_VERSION").into()),
                ("redis_mode", "standalone".into()),
                ("os", std::env::consts::OS.into()),
                ("arch_bits", usize::BITS.to_string()),
                ("process_id", std::process::id().to_string()),
                ("run_id", shared.run_id.clone()),
                ("tcp_port", shared.config.port.to_string()),
                ("server_time_usec", now.as_micros().to_string()),
                ("uptime_in_seconds", uptime.to_string()),
                ("uptime_in_days", (uptime / 86_400).to_string()),
                ("executable", executable),
            ]),
        ),
        (
            "clients",
            lines(&[
                ("connected_clients", st.clients.load(Relaxed).to_string()),
                ("maxclients", shared.config.max_clients.to_string()),
                ("blocked_clients", st.blocked.load(Relaxed).to_string()),
            ]),
        ),
        (
            "memory",
            lines(&[
                ("used_memory", bytes.to_string()),
                ("used_memory_human", human_bytes(bytes)),
                ("used_memory_rss", rss.to_string()),
                ("used_memory_rss_human", human_bytes(rss)),
                ("maxmemory", max.to_string()),
                ("maxmemory_human", human_bytes(max)),
            ]),
        ),
        (
            "persistence",
            lines(&[
                ("loading", "0".into()),
                (
                    "rdb_bgsave_in_progress",
                    u8::from(shared.saves.in_progress()).to_string(),
                ),
                ("rdb_last_save_time", shared.saves.last().to_string()),
                (
                    "rdb_last_bgsave_status",
                    if shared.saves.last_background_ok() {
                        "ok"
                    } else {
                        "err"
                    }
                    .into(),
                ),
                ("aof_enabled", "1".into()),
            ]),
        ),
        (
            "stats",
            lines(&[
                (
                    "total_connections_received",
                    st.connections.load(Relaxed).to_string(),
                ),
                (
                    "total_commands_processed",
                    st.commands.load(Relaxed).to_string(),
                ),
                (
                    "rejected_connections",
                    st.rejected.load(Relaxed).to_string(),
                ),
                ("expired_keys", expired.to_string()),
                ("evicted_keys", evicted.to_string()),
                ("keyspace_hits", hits.to_string()),
                ("keyspace_misses", misses.to_string()),
                (
                    "pubsub_channels",
                    shared.db.pubsub.channel_count().to_string(),
                ),
                (
                    "pubsub_patterns",
                    shared.db.pubsub.pattern_count().to_string(),
                ),
            ]),
        ),
        (
            // No replication yet: a leader without followers, as Redis reports one (clients
            // and tools read `role`).
            "replication",
            lines(&[
                ("role", "master".into()),
                ("connected_slaves", "0".into()),
                ("master_failover_state", "no-failover".into()),
                ("master_replid", shared.run_id.clone()),
                ("master_replid2", "0".repeat(40)),
                ("master_repl_offset", "0".into()),
                ("second_repl_offset", "-1".into()),
                ("repl_backlog_active", "0".into()),
                ("repl_backlog_size", "0".into()),
                ("repl_backlog_first_byte_offset", "0".into()),
                ("repl_backlog_histlen", "0".into()),
            ]),
        ),
        ("cpu", {
            let (user, sys) = cpu_seconds();
            lines(&[
                ("used_cpu_sys", format!("{sys:.6}")),
                ("used_cpu_user", format!("{user:.6}")),
                ("used_cpu_sys_children", "0.000000".into()),
                ("used_cpu_user_children", "0.000000".into()),
            ])
        }),
        ("cluster", lines(&[("cluster_enabled", "0".into())])),
        (
            "keyspace",
            if keys == 0 {
                // Redis lists only databases that hold keys.
                String::new()
            } else {
                let avg_ttl = ttl_ms.checked_div(u128::from(expires)).unwrap_or(0);
                format!("db0:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n")
            },
        ),
    ]
}

/// The process's user and system CPU time in seconds (`utime` and `stime` of
/// /proc/self/stat, in the kernel's fixed 100 ticks a second), zero where unknown.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) as f64 / 100.0, ticks(12) as f64 / 100.0)
}

/// The process's resident memory in bytes (`VmRSS` of /proc/self/status), 0 where unknown.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}

/// Bytes as Redis's `*_human` fields print them: `529B`, `1.50K`, `1.00G`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

/// `SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]`: stops the server as SIGTERM does (stop
/// accepting, finish the commands in flight, flush the log, snapshot critical namespaces). The
/// log is flushed and the snapshots taken whatever the options: `NOSAVE` would lose
/// acknowledged writes, and there is no save to wait for (`NOW`) or to force (`FORCE`); they
/// are accepted for the scripts that pass them. As in Redis, success closes the connection
/// without a reply; `ABORT` answers that no shutdown is in progress (one cannot be stopped).
fn shutdown(shared: &Shared, args: &[Bytes], out: &mut Out) -> Flow {
    let mut abort = false;
    let (mut save, mut nosave) = (false, false);
    for arg in &args[1..] {
        match arg.to_ascii_lowercase().as_slice() {
            b"nosave" => nosave = true,
            b"save" => save = true,
            b"now" | b"force" => {}
            b"abort" => abort = true,
            _ => {
                super::syntax(out);
                return Flow::Continue;
            }
        }
    }
    if save && nosave || abort && args.len() > 2 {
        super::syntax(out);
        return Flow::Continue;
    }
    if abort {
        out.error("ERR No shutdown in progress.");
        return Flow::Continue;
    }
    shared.stop.send_replace(true);
    Flow::Close
}
