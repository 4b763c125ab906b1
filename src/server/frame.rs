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
    if !lead_ok || digits.len() > 19 {
        return None;
    }
    // Accumulated towards the sign, so `i64::MIN` fits; every frame's lengths pass here (four
    // per `PUBLISH`), where `str::parse` after a UTF-8 check cost a tenth of the server's CPU.
    let negative = digits.len() != b.len();
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// Parses one command at the start of `buf`: the byte ranges of its arguments and the number
/// of bytes it spans. An empty inline line yields no arguments (skip it). An inline
/// command's quoted arguments are unescaped in place, inside the bytes it spans.
///
/// # Errors
/// [`ParseError::Incomplete`] or [`ParseError::Invalid`].
pub fn parse(buf: &mut [u8], limits: &Limits) -> Result<(Vec<Range<usize>>, usize), ParseError> {
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
    buf: &mut [u8],
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

/// One inline command line, split as Redis splits it (`sdssplitargs`): arguments separated by
/// blanks; `"…"` with the escapes `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>`;
/// `'…'` with `\'`; a quote may start inside an argument (`a"b c"` is `ab c`) but a closing
/// quote must end it. Quoted arguments
/// are unescaped in place (never longer than what they were written as), so every argument
/// is still a range of `buf`.
fn parse_inline(
    buf: &mut [u8],
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
    let unbalanced = || ParseError::Invalid("Protocol error: unbalanced quotes in request".into());
    // C's `isspace`, which Redis skips between arguments.
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    loop {
        while i < line_end && blank(buf[i]) {
            i += 1;
        }
        if i >= line_end {
            break;
        }
        // `w` writes the argument's bytes at or behind `i`, which reads them.
        let start = i;
        let mut w = i;
        let mut quote = None;
        loop {
            let Some(&b) = buf[..line_end].get(i) else {
                if quote.is_some() {
                    return Err(unbalanced());
                }
                break;
            };
            let next = buf[..line_end].get(i + 1).copied();
            match quote {
                Some(q) if b == q => {
                    if next.is_some_and(|n| !blank(n)) {
                        return Err(unbalanced());
                    }
                    i += 1;
                    break;
                }
                Some(b'"') if b == b'\\' && next.is_some() => {
                    let hex = |k: usize| {
                        buf[..line_end]
                            .get(k)
                            .and_then(|&h| char::from(h).to_digit(16))
                    };
                    if let (Some(b'x'), Some(hi), Some(lo)) = (next, hex(i + 2), hex(i + 3)) {
                        buf[w] = (hi * 16 + lo) as u8;
                        i += 4;
                    } else {
                        buf[w] = match next.unwrap_or_default() {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        };
                        i += 2;
                    }
                    w += 1;
                }
                Some(b'\'') if b == b'\\' && next == Some(b'\'') => {
                    buf[w] = b'\'';
                    w += 1;
                    i += 2;
                }
                Some(_) => {
                    buf[w] = b;
                    w += 1;
                    i += 1;
                }
                None if matches!(b, b' ' | b'\t' | b'\n' | b'\r') => break,
                None if b == b'"' || b == b'\'' => {
                    quote = Some(b);
                    i += 1;
                }
                None => {
                    buf[w] = b;
                    w += 1;
                    i += 1;
                }
            }
        }
        args.push(start..w);
    }
    Ok(nl + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(buf: &[u8]) -> Result<(Vec<Vec<u8>>, usize), ParseError> {
        let mut buf = buf.to_vec();
        let (r, n) = parse(&mut buf, &Limits::default())?;
        Ok((r.into_iter().map(|r| buf[r].to_vec()).collect(), n))
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
            ("12a", None),
            ("-1-", None),
            ("1\u{e9}", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
        // Every value round-trips, near both ends of the range and across digit counts.
        let mut x: i64 = 1;
        let mut values = vec![i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1];
        while let Some(next) = x.checked_mul(7) {
            values.extend([x, -x, x - 1, 1 - x, x + 1]);
            x = next;
        }
        for v in values {
            assert_eq!(parse_int(v.to_string().as_bytes()), Some(v), "{v}");
        }
        assert_eq!(parse_int(b"12\xff"), None);
    }

    #[test]
    fn arrays_inline_and_partial_frames() {
        let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        assert_eq!(
            args(cmd).unwrap(),
            (
                vec![b"SET".to_vec(), b"k".to_vec(), b"hello".to_vec()],
                cmd.len()
            )
        );
        for cut in 0..cmd.len() {
            assert_eq!(
                args(&cmd[..cut]).unwrap_err(),
                ParseError::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(args(b"PING\r\n").unwrap(), (vec![b"PING".to_vec()], 6));
        assert_eq!(args(b"\r\n").unwrap(), (vec![], 2));
    }

    /// Each line's arguments as redis-server 7.0.15 splits it (checked against it), or `None`
    /// for its "unbalanced quotes" error.
    #[test]
    fn inline_lines_split_as_redis_splits_them() {
        /// A line and its arguments (`None`: refused).
        type Case = (&'static [u8], Option<&'static [&'static [u8]]>);
        let cases: &[Case] = &[
            (b"set k \"a b\"", Some(&[b"set", b"k", b"a b"])),
            (br#"ECHO "a\x41\n""#, Some(&[b"ECHO", b"aA\n"])),
            (br"ECHO 'it\'s'", Some(&[b"ECHO", b"it's"])),
            (br"ECHO 'a\nb'", Some(&[b"ECHO", br"a\nb"])),
            (br#"ECHO a"b c""#, Some(&[b"ECHO", b"ab c"])),
            (br#"ECHO "\q\\\"""#, Some(&[b"ECHO", br#"q\""#])),
            (br#"ECHO "\x4g""#, Some(&[b"ECHO", b"x4g"])),
            (br#"ECHO "\t\r\b\a""#, Some(&[b"ECHO", b"\t\r\x08\x07"])),
            (br"ECHO 'a\\b'", Some(&[b"ECHO", br"a\\b"])),
            (br#"ECHO """#, Some(&[b"ECHO", b""])),
            (b"  ECHO \x0b  x  ", Some(&[b"ECHO", b"x"])),
            (b"ECHO\x0cx a\x0bb", Some(&[b"ECHO\x0cx", b"a\x0bb"])),
            (br#"ECHO "ab"c"#, None),
            (br"ECHO 'ab'c", None),
            (br#"ECHO a"b"c"#, None),
            (br#"ECHO "open"#, None),
            (br#"ECHO "x\""#, None),
        ];
        for (line, want) in cases {
            let mut input = line.to_vec();
            input.extend_from_slice(b"\r\nPING\r\n");
            let got = args(&input);
            match want {
                Some(want) => {
                    let (got, used) = got.unwrap_or_else(|e| panic!("{line:?}: {e:?}"));
                    assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
                    assert_eq!(used, line.len() + 2, "{line:?}");
                }
                None => assert!(
                    matches!(got, Err(ParseError::Invalid(ref e)) if e.contains("unbalanced quotes")),
                    "{line:?}: {got:?}"
                ),
            }
        }
    }

    /// `arg` written as redis-cli quotes an argument (`sdscatrepr`): in double quotes, with
    /// `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` for other unprintable bytes.
    fn quoted(arg: &[u8]) -> Vec<u8> {
        let mut q = vec![b'"'];
        for &b in arg {
            match b {
                b'\\' | b'"' => q.extend_from_slice(&[b'\\', b]),
                b'\n' => q.extend_from_slice(br"\n"),
                b'\r' => q.extend_from_slice(br"\r"),
                b'\t' => q.extend_from_slice(br"\t"),
                0x07 => q.extend_from_slice(br"\a"),
                0x08 => q.extend_from_slice(br"\b"),
                b' '..=b'~' => q.push(b),
                _ => q.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        q.push(b'"');
        q
    }

    proptest::proptest! {
        /// Any arguments, quoted as redis-cli quotes them, come back as they were.
        #[test]
        fn quoted_inline_arguments_come_back_as_they_were(
            argv in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..12), 1..6)
        ) {
            let mut line = Vec::new();
            for a in &argv {
                line.extend_from_slice(&quoted(a));
                line.push(b' ');
            }
            line.extend_from_slice(b"\r\n");
            let (got, used) = args(&line).unwrap();
            proptest::prop_assert_eq!(used, line.len());
            proptest::prop_assert_eq!(got, argv);
        }

        /// Lines of quotes, escapes and blanks never panic, and what parses lies in order
        /// inside the line.
        #[test]
        fn any_inline_line_parses_inside_itself(
            picks in proptest::collection::vec(0usize..12, 0..40)
        ) {
            const PARTS: [&[u8]; 12] =
                [b"\"", b"'", b"\\", b"x", b"4", b"f", b" ", b"\t", b"\r", b"a", b"\x0b", b"\\x"];
            let mut line: Vec<u8> = picks.iter().flat_map(|&i| PARTS[i].iter().copied()).collect();
            line.push(b'\n');
            let mut buf = line.clone();
            if let Ok((ranges, used)) = parse(&mut buf, &Limits::default()) {
                proptest::prop_assert_eq!(used, line.len());
                let mut at = 0;
                for r in ranges {
                    proptest::prop_assert!(at <= r.start && r.start <= r.end && r.end <= used);
                    at = r.end;
                }
            }
        }
    }

    #[test]
    fn a_lone_cr_is_not_a_line_end() {
        let l = Limits::default();
        // The length line "1\r" is not a number: the first CR without LF is skipped over.
        assert!(matches!(
            parse(&mut b"*1\r\r\n$1\r\na\r\n".to_vec(), &l),
            Err(ParseError::Invalid(_))
        ));
        // Data may hold CR: bulk strings are read by length.
        let (args, used) = parse(&mut b"*1\r\n$3\r\na\rb\r\n".to_vec(), &l).unwrap();
        assert_eq!(
            (args.len(), args.first().cloned(), used),
            (1, Some(8..11), 13)
        );
        let mut reused = vec![0..1, 2..3];
        assert_eq!(
            parse_into(&mut b"*1\r\n$1\r\nx\r\n".to_vec(), &l, &mut reused).unwrap(),
            11
        );
        assert_eq!(
            (reused.len(), reused.first().cloned()),
            (1, Some(8..9)),
            "cleared, then filled"
        );
        assert!(matches!(
            parse(&mut b"*1\r".to_vec(), &l),
            Err(ParseError::Incomplete)
        ));
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
            parse(&mut b"*1\r\n$11\r\n".to_vec(), &limits),
            Err(ParseError::Invalid(_))
        ));
    }
}
