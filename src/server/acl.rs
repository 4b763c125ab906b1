//! ACL users: who may run which commands on which keys and channels.
//!
//! The `default` user has every permission and the server's `password`. Configured users
//! (`[[users]]` in the TOML file) authenticate with `AUTH <user> <password>` or
//! `HELLO 3 AUTH <user> <password>` and are held to their lists. Errors are Redis 7's `NOPERM`
//! replies.

use bytes::Bytes;
use serde::Deserialize;

use super::cmd::table;
use crate::glob::glob_match;

/// One ACL user of the server config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UserRule {
    /// The user name (`AUTH <name> <password>`).
    pub name: String,
    /// Its password.
    pub password: String,
    /// Commands it may run, lower case: names, `*` for all (the default), a subcommand as
    /// `container|sub`, Redis's categories as `@read` or `+@read` (`@all` for all), and any of
    /// them after `-` to take it away again (`["*", "-@dangerous", "-client|kill"]`); later
    /// entries win.
    #[serde(default = "everything")]
    pub commands: Vec<String>,
    /// Globs of the keys it may touch (default `*`).
    #[serde(default = "everything")]
    pub keys: Vec<String>,
    /// Globs of the channels it may publish and subscribe to (default `*`). A `PSUBSCRIBE`
    /// pattern must itself match one of them.
    #[serde(default = "everything")]
    pub channels: Vec<String>,
}

fn everything() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command itself.
    Command,
    /// One of its keys.
    Key,
    /// One of its channels.
    Channel,
}

impl UserRule {
    /// Whether the password is this user's (compared in constant time for equal lengths).
    pub fn password_is(&self, pass: &[u8]) -> bool {
        let want = self.password.as_bytes();
        want.len() == pass.len() && want.iter().zip(pass).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }

    fn may_run(&self, cmd: &str, args: &[Bytes]) -> bool {
        // The subcommand's row for a container (`client|kill` is @dangerous, `client|id` not).
        let spec = args
            .get(1)
            .and_then(|sub| table::subcommand(cmd, sub))
            .or_else(|| table::spec(cmd));
        let sub = spec
            .and_then(|s| s.name.split_once('|'))
            .map(|(_, sub)| sub);
        let names = |rule: &str| {
            rule == "*"
                || rule == cmd
                || sub.is_some_and(|sub| {
                    rule.strip_prefix(cmd)
                        .and_then(|r| r.strip_prefix('|'))
                        .is_some_and(|r| r == sub)
                })
                || rule.strip_prefix('@').is_some_and(|cat| {
                    cat == "all" || spec.is_some_and(|s| s.categories.contains(&cat))
                })
        };
        let mut allowed = false;
        for c in &self.commands {
            match c.strip_prefix('-') {
                Some(denied) if names(denied) => allowed = false,
                Some(_) => {}
                None if names(c.strip_prefix('+').unwrap_or(c)) => allowed = true,
                None => {}
            }
        }
        allowed
    }

    fn all_keys(&self) -> bool {
        self.keys.iter().any(|k| k == "*")
    }

    fn may_key(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|g| glob_match(g.as_bytes(), key))
    }

    fn may_channel(&self, channel: &[u8]) -> bool {
        self.channels
            .iter()
            .any(|g| glob_match(g.as_bytes(), channel))
    }

    /// Checks one command (`cmd` lower case, `args[0]` its name) against the user's lists.
    ///
    /// # Errors
    /// What the user may not do.
    pub fn check(&self, cmd: &str, args: &[Bytes]) -> Result<(), Denied> {
        if !self.may_run(cmd, args) {
            return Err(Denied::Command);
        }
        match key_positions(cmd, args) {
            Keys::All => {
                if !self.all_keys() {
                    return Err(Denied::Key);
                }
            }
            Keys::At(list) => {
                if !list
                    .iter()
                    .all(|&i| args.get(i).is_none_or(|k| self.may_key(k)))
                {
                    return Err(Denied::Key);
                }
            }
        }
        let channels: &[Bytes] = match cmd {
            "publish" => args.get(1..2).unwrap_or(&[]),
            "subscribe" | "psubscribe" => args.get(1..).unwrap_or(&[]),
            _ => &[],
        };
        if !channels.iter().all(|c| self.may_channel(c)) {
            return Err(Denied::Channel);
        }
        Ok(())
    }
}

/// The reply to a refused command.
pub fn denied_reply(user: &str, cmd: &str, why: Denied) -> String {
    match why {
        Denied::Command => {
            format!("NOPERM User {user} has no permissions to run the '{cmd}' command")
        }
        Denied::Key => "NOPERM No permissions to access a key".to_owned(),
        Denied::Channel => "NOPERM No permissions to access a channel".to_owned(),
    }
}

/// Where a command's keys are.
enum Keys {
    /// It reaches every key (KEYS, SCAN, FLUSHDB …): the user needs `*`.
    All,
    /// At these argument positions.
    At(Vec<usize>),
}

fn key_positions(cmd: &str, args: &[Bytes]) -> Keys {
    match cmd {
        // quipu's rule, stricter than Redis's: a command that reaches every key needs `*`.
        "keys" | "scan" | "flushdb" | "flushall" | "dbsize" | "randomkey" => Keys::All,
        _ => Keys::At(table::key_positions(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::cmd::table::tests::args;

    fn courier() -> UserRule {
        UserRule {
            name: "courier".into(),
            password: "pw".into(),
            commands: vec!["*".into(), "-flushall".into()],
            keys: vec!["delivery:42:*".into()],
            channels: vec!["delivery.42.*".into()],
        }
    }

    #[test]
    fn commands_keys_and_channels_are_checked() {
        let u = courier();
        assert_eq!(u.check("get", &args("GET delivery:42:eta")), Ok(()));
        assert_eq!(
            u.check("get", &args("GET delivery:43:eta")),
            Err(Denied::Key)
        );
        assert_eq!(
            u.check("mset", &args("MSET delivery:42:a 1 delivery:43:b 2")),
            Err(Denied::Key)
        );
        assert_eq!(
            u.check("mset", &args("MSET delivery:42:a delivery:43:b")),
            Ok(())
        );
        assert_eq!(u.check("flushall", &args("FLUSHALL")), Err(Denied::Command));
        assert_eq!(u.check("keys", &args("KEYS *")), Err(Denied::Key));
        assert_eq!(
            u.check("publish", &args("PUBLISH delivery.42.gps x")),
            Ok(())
        );
        assert_eq!(
            u.check("publish", &args("PUBLISH delivery.7.gps x")),
            Err(Denied::Channel)
        );
        assert_eq!(
            u.check("psubscribe", &args("PSUBSCRIBE delivery.42.*")),
            Ok(())
        );
        assert_eq!(
            u.check("psubscribe", &args("PSUBSCRIBE delivery.*")),
            Err(Denied::Channel)
        );
        assert_eq!(
            u.check(
                "xread",
                &args("XREAD COUNT 1 STREAMS delivery:42:s other 0 0")
            ),
            Err(Denied::Key)
        );
        assert_eq!(
            u.check("xread", &args("XREAD STREAMS delivery:42:s 0")),
            Ok(())
        );
    }

    #[test]
    fn categories_and_subcommands_grant_and_deny_as_in_redis() {
        let mut u = courier();
        u.commands = vec!["@read".into(), "+@hash".into(), "-hgetall".into()];
        assert_eq!(u.check("get", &args("GET delivery:42:a")), Ok(()));
        assert_eq!(u.check("hset", &args("HSET delivery:42:h f v")), Ok(()));
        assert_eq!(
            u.check("hgetall", &args("HGETALL delivery:42:h")),
            Err(Denied::Command)
        );
        assert_eq!(
            u.check("set", &args("SET delivery:42:a 1")),
            Err(Denied::Command)
        );
        u.commands = vec!["@all".into(), "-@dangerous".into(), "client|kill".into()];
        assert_eq!(u.check("flushall", &args("FLUSHALL")), Err(Denied::Command));
        assert_eq!(
            u.check("keys", &args("KEYS delivery:42:*")),
            Err(Denied::Command)
        );
        // CLIENT KILL is @dangerous, CLIENT ID is not: the subcommand's categories count.
        assert_eq!(u.check("client", &args("CLIENT ID")), Ok(()));
        assert_eq!(u.check("client", &args("CLIENT KILL 1.2.3.4:5")), Ok(()));
        u.commands = vec!["*".into(), "-client|kill".into()];
        assert_eq!(
            u.check("client", &args("CLIENT KILL 1.2.3.4:5")),
            Err(Denied::Command)
        );
        assert_eq!(u.check("client", &args("CLIENT ID")), Ok(()));
        assert_eq!(
            u.check("client", &args("CLIENT kill x")),
            Err(Denied::Command)
        );
    }

    #[test]
    fn a_later_grant_overrides_an_earlier_denial() {
        let mut u = courier();
        u.commands = vec!["-*".into(), "get".into()];
        assert_eq!(u.check("get", &args("GET delivery:42:a")), Ok(()));
        assert_eq!(
            u.check("set", &args("SET delivery:42:a 1")),
            Err(Denied::Command)
        );
        assert!(u.password_is(b"pw"));
        assert!(!u.password_is(b"pW"));
        assert!(!u.password_is(b"pw2"));
    }
}
