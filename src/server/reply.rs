//! RESP reply encoding into the connection's output buffer, RESP2 or RESP3 (`HELLO 3`).

use bytes::{BufMut, BytesMut};

/// The output buffer of one connection.
#[derive(Debug, Default)]
pub struct Out {
    /// Encoded replies not yet written.
    pub buf: BytesMut,
    /// RESP3 after `HELLO 3`.
    pub resp3: bool,
}

impl Out {
    fn int_line(&mut self, prefix: u8, n: i64) {
        let mut b = itoa::Buffer::new();
        self.buf.put_u8(prefix);
        self.buf.put_slice(b.format(n).as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        self.buf.put_u8(b'+');
        self.buf.put_slice(s.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// An error; `msg` starts with its code (`ERR`, `WRONGTYPE` …).
    pub fn error(&mut self, msg: &str) {
        self.buf.put_u8(b'-');
        // A reply line cannot hold a newline.
        for &c in msg.as_bytes() {
            self.buf
                .put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        self.buf.put_slice(b"\r\n");
    }

    /// An integer.
    pub fn int(&mut self, n: i64) {
        self.int_line(b':', n);
    }

    /// A bulk string.
    pub fn bulk(&mut self, data: &[u8]) {
        self.int_line(b'$', data.len() as i64);
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// Text for people to read (`INFO`, `CLIENT LIST`): a verbatim string of format `txt` in
    /// RESP3, as Redis sends it, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        if !self.resp3 {
            return self.bulk(text);
        }
        self.int_line(b'=', text.len() as i64 + 4);
        self.buf.put_slice(b"txt:");
        self.buf.put_slice(text);
        self.buf.put_slice(b"\r\n");
    }

    /// A bulk string or null.
    pub fn opt_bulk(&mut self, data: Option<&[u8]>) {
        match data {
            Some(d) => self.bulk(d),
            None => self.null(),
        }
    }

    /// Null (`$-1` in RESP2, `_` in RESP3).
    pub fn null(&mut self) {
        if self.resp3 {
            self.buf.put_slice(b"_\r\n");
        } else {
            self.buf.put_slice(b"$-1\r\n");
        }
    }

    /// A null array (`*-1` in RESP2, null in RESP3): XREAD with nothing, an aborted EXEC.
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.null();
        } else {
            self.buf.extend_from_slice(b"*-1\r\n");
        }
    }

    /// An array header of `n` elements.
    pub fn array(&mut self, n: usize) {
        self.int_line(b'*', n as i64);
    }

    /// A map header of `n` pairs (a flat array of 2n in RESP2).
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.int_line(b'%', n as i64);
        } else {
            self.array(n * 2);
        }
    }

    /// A set header of `n` elements (an array in RESP2).
    pub fn set(&mut self, n: usize) {
        if self.resp3 {
            self.int_line(b'~', n as i64);
        } else {
            self.array(n);
        }
    }

    /// An array of simple strings: what a `HELP` subcommand answers.
    pub fn simple_lines(&mut self, lines: &[&str]) {
        self.array(lines.len());
        for l in lines {
            self.simple(l);
        }
    }

    /// A push header (pub/sub messages; an array in RESP2).
    pub fn push(&mut self, n: usize) {
        if self.resp3 {
            self.int_line(b'>', n as i64);
        } else {
            self.array(n);
        }
    }
}
