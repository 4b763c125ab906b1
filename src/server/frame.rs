//! RESP request framing: bytes → one command's arguments. A whole frame must be buffered before
//! anything is returned (`Incomplete` otherwise), and a malformed one is `Invalid` with the
//! reason Redis gives. Both RESP arrays of bulk strings and inline commands (telnet, nc) are
//! accepted.

use std::ops::Range;

/// Why no command came out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More bytes are needed.
    Incomplete,
    /// The bytes can never form a valid command; the connection should be closed after the
    /// error reply, as Redis does.
    Invalid(String),
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bulk string.
    pub max_bulk: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline: 64 * 1024,
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        // A byte scan for '\r' (vectorised by the compiler), then a check of the next byte.
        let cr = at + buf.get(at..)?.iter().position(|&b| b == b'\r')?;
        match buf.get(cr + 1) {
            Some(b'\n') => return Some(cr),
            Some(_) => at = cr + 1,
            None => return None,
        }
    }
}

fn parse_len(line: &[u8], what: &str) -> Result<i64, ParseError> {
    parse_int(line).ok_or_else(|| ParseError::Invalid(format!("Protocol error: invalid {what}")))
}

/// An integer as Redis reads one (`string2ll`), for lengths in frames and for every integer
/// argument or stored value: an optional `-`, then digits without leading zeros (`0` alone is
/// zero), within `i64`. `+5`, `007`, `-0`, ` 1` and `1 ` are not integers.
pub(crate) fn parse_int(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let lead_ok = match digits {
        [b'0'] => digits.len() == b.len(),
        [b'1'..=b'9', ..] => true,
        _ => false,
    };
    if !lead_ok || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Only ASCII digits and a sign remain, so the standard parser decides the range.
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Parses one command at the start of `buf`: the byte ranges of its arguments and the number
/// of bytes it spans. An empty inline line yields no arguments (skip it).
///
/// # Errors
/// [`ParseError::Incomplete`] or [`ParseError::Invalid`].
pub fn parse(buf: &[u8], limits: &Limits) -> Result<(Vec<Range<usize>>, usize), ParseError> {
    let mut args = Vec::new();
    let used = parse_into(buf, limits, &mut args)?;
    Ok((args, used))
}

/// [`parse`] into `args` (cleared first), so a connection reuses one vector for every
/// command instead of allocating one each.
///
/// # Errors
/// As [`parse`]; `args` is then unspecified.
pub fn parse_into(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<usize, ParseError> {
    args.clear();
    match buf.first() {
        None => Err(ParseError::Incomplete),
        Some(b'*') => parse_array(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

fn parse_array(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<usize, ParseError> {
    let Some(end) = find_crlf(buf, 1) else {
        if buf.len() > 64 {
            return Err(ParseError::Invalid(
                "Protocol error: invalid multibulk length".into(),
            ));
        }
        return Err(ParseError::Incomplete);
    };
    let n = parse_len(&buf[1..end], "multibulk length")?;
    if n > limits.max_args as i64 {
        return Err(ParseError::Invalid(
            "Protocol error: invalid multibulk length".into(),
        ));
    }
    let mut pos = end + 2;
    if n <= 0 {
        return Ok(pos);
    }
    for _ in 0..n {
        match buf.get(pos) {
            None => return Err(ParseError::Incomplete),
            Some(b'$') => {}
            Some(&c) => {
                return Err(ParseError::Invalid(format!(
                    "Protocol error: expected '$', got '{}'",
                    c as char
                )));
            }
        }
        let Some(end) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > 32 {
                return Err(ParseError::Invalid(
                    "Protocol error: invalid bulk length".into(),
                ));
            }
            return Err(ParseError::Incomplete);
        };
        let len = parse_len(&buf[pos + 1..end], "bulk length")?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ParseError::Invalid(
                "Protocol error: invalid bulk length".into(),
            ));
        }
        let start = end + 2;
        let stop = start + len as usize;
        if buf.len() < stop + 2 {
            return Err(ParseError::Incomplete);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ParseError::Invalid(
                "Protocol error: bulk string not terminated by CRLF".into(),
            ));
        }
        args.push(start..stop);
        pos = stop + 2;
    }
    Ok(pos)
}

fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<usize, ParseError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline {
            return Err(ParseError::Invalid(
                "Protocol error: too big inline request".into(),
            ));
        }
        return Err(ParseError::Incomplete);
    };
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let line = &buf[..line_end];
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        if line[i] == b'"' || line[i] == b'\'' {
            let quote = line[i];
            let start = i + 1;
            let Some(close) = line[start..].iter().position(|&b| b == quote) else {
                return Err(ParseError::Invalid(
                    "Protocol error: unbalanced quotes in request".into(),
                ));
            };
            args.push(start..start + close);
            i = start + close + 1;
        } else {
            let start = i;
            while i < line.len() && !line[i].is_ascii_whitespace() {
                i += 1;
            }
            args.push(start..i);
        }
    }
    Ok(nl + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), ParseError> {
        let (r, n) = parse(buf, &Limits::default())?;
        Ok((r.into_iter().map(|r| &buf[r]).collect(), n))
    }

    #[test]
    fn integers_read_as_redis_reads_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-12", Some(-12)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("99999999999999999999", None),
            ("+5", None),
            ("007", None),
            ("-0", None),
            ("-", None),
            ("", None),
            (" 1", None),
            ("1 ", None),
            ("1.0", None),
            ("0x10", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn arrays_inline_and_partial_frames() {
        let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        assert_eq!(
            args(cmd).unwrap(),
            (vec![&b"SET"[..], b"k", b"hello"], cmd.len())
        );
        for cut in 0..cmd.len() {
            assert_eq!(
                args(&cmd[..cut]).unwrap_err(),
                ParseError::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(args(b"PING\r\n").unwrap(), (vec![&b"PING"[..]], 6));
        assert_eq!(
            args(b"set k \"a b\"\n").unwrap().0,
            vec![&b"set"[..], b"k", b"a b"]
        );
        assert_eq!(args(b"\r\n").unwrap(), (vec![], 2));
    }

    #[test]
    fn a_lone_cr_is_not_a_line_end() {
        let l = Limits::default();
        // The length line "1\r" is not a number: the first CR without LF is skipped over.
        assert!(matches!(
            parse(b"*1\r\r\n$1\r\na\r\n", &l),
            Err(ParseError::Invalid(_))
        ));
        // Data may hold CR: bulk strings are read by length.
        let (args, used) = parse(b"*1\r\n$3\r\na\rb\r\n", &l).unwrap();
        assert_eq!(
            (args.len(), args.first().cloned(), used),
            (1, Some(8..11), 13)
        );
        let mut reused = vec![0..1, 2..3];
        assert_eq!(
            parse_into(b"*1\r\n$1\r\nx\r\n", &l, &mut reused).unwrap(),
            11
        );
        assert_eq!(
            (reused.len(), reused.first().cloned()),
            (1, Some(8..9)),
            "cleared, then filled"
        );
        assert!(matches!(parse(b"*1\r", &l), Err(ParseError::Incomplete)));
    }

    #[test]
    fn malformed_frames_are_invalid() {
        for bad in [
            &b"*x\r\n"[..],
            b"*1\r\n:5\r\n",
            b"*1\r\n$-3\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*1\r\n$99999999999999999999\r\n",
            b"set k \"open\n",
        ] {
            assert!(matches!(args(bad), Err(ParseError::Invalid(_))), "{bad:?}");
        }
        let limits = Limits {
            max_bulk: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse(b"*1\r\n$11\r\n", &limits),
            Err(ParseError::Invalid(_))
        ));
    }
}
