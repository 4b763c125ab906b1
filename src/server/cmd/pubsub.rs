//! Pub/sub commands. Messages reach the connection through its `Subscription`, which the
//! connection loop drains between commands.

use bytes::Bytes;

use super::{Conn, wrong_args};
use crate::glob::glob_match;
use crate::pubsub::{SlowConsumer, SubscriptionConfig};
use crate::server::Shared;
use crate::server::db::Db;
use crate::server::reply::Out;

/// Messages a subscriber may have queued before it is disconnected (Redis's pub/sub
/// output-buffer limit plays this role).
const SUBSCRIBER_QUEUE: usize = 16 * 1024;

/// The reply to a channel name or pattern that is not UTF-8: quipu's channels are text, and
/// two such names must not meet as one (Redis's are bytes).
pub(crate) const NOT_TEXT: &str = "ERR quipu channel names and patterns must be UTF-8";

/// Every name of `names` as text, or `None` when one is not UTF-8.
fn texts(names: &[Bytes]) -> Option<Vec<&str>> {
    names.iter().map(|n| std::str::from_utf8(n).ok()).collect()
}

/// `PUBLISH`: on a durable channel the message is logged (fsynced) before it is published.
pub(crate) fn publish(shared: &Shared, args: &[Bytes], out: &mut Out) {
    if args.len() != 3 {
        return wrong_args(out, &args[0]);
    }
    let Ok(channel) = std::str::from_utf8(&args[1]) else {
        return out.error(NOT_TEXT);
    };
    match shared.channels.publish_blocking(channel, detach(&args[2])) {
        Ok(r) => out.int(r.receivers as i64),
        Err(e) => out.error(&format!("ERR {e}")),
    }
}

/// Payloads up to this size are copied out of the connection's input buffer before they are
/// published.
pub(crate) const DETACH_MAX: usize = 4096;

/// A published payload as subscribers' queues will hold it. A slice of the input buffer would
/// keep the whole buffer (16 KiB and more) alive for as long as any queue holds the message:
/// a slow subscriber's 1,000 queued messages of 20 bytes would pin 16 MB. Small payloads are
/// copied (as Redis does); a large one shares the buffer, which it mostly fills anyway.
pub(crate) fn detach(payload: &Bytes) -> Bytes {
    if payload.len() <= DETACH_MAX {
        Bytes::copy_from_slice(payload)
    } else {
        payload.clone()
    }
}

pub(crate) fn subscribe(db: &Db, conn: &mut Conn, cmd: &str, args: &[Bytes], out: &mut Out) {
    if args.len() < 2 {
        return wrong_args(out, &args[0]);
    }
    // All or none: a name that is not text subscribes nothing.
    let Some(names) = texts(&args[1..]) else {
        return out.error(NOT_TEXT);
    };
    let sub = conn.sub.get_or_insert_with(|| {
        db.pubsub.subscribe(
            &[],
            SubscriptionConfig::default()
                .with_capacity(SUBSCRIBER_QUEUE)
                .with_policy(SlowConsumer::Disconnect),
        )
    });
    for name in names {
        let name = name.to_owned();
        if cmd == "subscribe" {
            sub.add_channel(&name);
            if !conn.channels.contains(&name) {
                conn.channels.push(name.clone());
            }
        } else {
            sub.add_pattern(&name);
            if !conn.patterns.contains(&name) {
                conn.patterns.push(name.clone());
            }
        }
        out.push(3);
        out.bulk(cmd.as_bytes());
        out.bulk(name.as_bytes());
        out.int((conn.channels.len() + conn.patterns.len()) as i64);
    }
}

pub(crate) fn unsubscribe(conn: &mut Conn, cmd: &str, args: &[Bytes], out: &mut Out) {
    let channel_kind = cmd == "unsubscribe";
    let names: Vec<String> = if args.len() > 1 {
        let Some(names) = texts(&args[1..]) else {
            return out.error(NOT_TEXT);
        };
        names.into_iter().map(str::to_owned).collect()
    } else if channel_kind {
        conn.channels.clone()
    } else {
        conn.patterns.clone()
    };
    if names.is_empty() {
        out.push(3);
        out.bulk(cmd.as_bytes());
        out.null();
        out.int(conn.subscriptions() as i64);
    }
    for name in names {
        if let Some(sub) = &conn.sub {
            if channel_kind {
                sub.remove_channel(&name);
            } else {
                sub.remove_pattern(&name);
            }
        }
        if channel_kind {
            conn.channels.retain(|c| c != &name);
        } else {
            conn.patterns.retain(|p| p != &name);
        }
        out.push(3);
        out.bulk(cmd.as_bytes());
        out.bulk(name.as_bytes());
        out.int(conn.subscriptions() as i64);
    }
    if conn.subscriptions() == 0 {
        conn.sub = None;
    }
}

pub(crate) fn introspect(db: &Db, args: &[Bytes], out: &mut Out) {
    let Some(sub) = args.get(1) else {
        return wrong_args(out, &args[0]);
    };
    let sub = String::from_utf8_lossy(sub).to_lowercase();
    if !super::subcommand_fits(out, args) {
        return;
    }
    match sub.as_str() {
        "channels" if args.len() > 3 => super::subcommand_syntax_error(out, args),
        "channels" => {
            let pattern = args.get(2).map_or(&b"*"[..], |p| &p[..]);
            let chans: Vec<String> = db
                .pubsub
                .channels("*")
                .into_iter()
                .filter(|c| glob_match(pattern, c.as_bytes()))
                .collect();
            out.array(chans.len());
            for c in chans {
                out.bulk(c.as_bytes());
            }
        }
        "numsub" => {
            out.array((args.len() - 2) * 2);
            for c in &args[2..] {
                out.bulk(c);
                // A name that is not text has no subscribers (none could subscribe to it).
                let n = std::str::from_utf8(c).map_or(0, |c| db.pubsub.subscribers(c));
                out.int(n as i64);
            }
        }
        "numpat" => out.int(db.pubsub.pattern_count() as i64),
        "help" => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Prints this help.",
            ];
            out.simple_lines(&lines);
        }
        // Refused by the check above.
        _ => out.error("ERR unknown subcommand"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_are_copied_out_of_the_input_buffer() {
        let input = Bytes::from(vec![7u8; 64 * 1024]);
        let small = input.slice(100..120);
        let detached = detach(&small);
        assert_eq!(detached, small);
        assert_ne!(
            detached.as_ptr(),
            small.as_ptr(),
            "a copy, not a view of the buffer"
        );
        let large = input.slice(0..32 * 1024);
        assert_eq!(detach(&large).as_ptr(), large.as_ptr(), "shared");
    }
}
