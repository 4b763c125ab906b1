//! INCRBYFLOAT and HINCRBYFLOAT arithmetic in C's `long double`, as Redis does it.
//!
//! Redis reads floats with `strtold` and prints sums with `%.17Lf` less trailing zeros, in an
//! 80-bit x87 `long double` on x86_64. In that precision `0.1 + 0.2` prints as `0.3` and
//! integers up to 2^64 stay exact; with Rust's `f64` the same sums printed
//! `0.30000000000000004` and `9223372036854775808`. Rust has no `long double`, so the
//! arithmetic is csrc/long_double.c (built by build.rs), called here and nowhere else.

use std::ffi::{c_char, c_int, c_long, c_uchar};

unsafe extern "C" {
    fn quipu_ld_check(s: *const c_uchar, len: usize) -> c_int;
    fn quipu_ld_add(
        cur: *const c_uchar,
        cur_len: usize,
        has_cur: c_int,
        by: *const c_uchar,
        by_len: usize,
        out: *mut c_char,
        out_len: usize,
    ) -> c_long;
}

/// Room for a sum's text: Redis's `MAX_LONG_DOUBLE_CHARS`.
const TEXT_ROOM: usize = 5 * 1024;

/// What a float argument or stored value reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Float {
    /// Not a float as Redis reads one (also `nan`, a leading space, trailing bytes).
    Invalid,
    /// A float, finite.
    Finite,
    /// `inf` or a value past the `long double` range.
    Infinite,
}

/// Reads `b` as Redis's `string2ld` does.
pub(crate) fn check(b: &[u8]) -> Float {
    // SAFETY: the pointer and length describe `b`, which outlives the call; the C side only
    // reads those `len` bytes (it copies them into a buffer of its own).
    match unsafe { quipu_ld_check(b.as_ptr(), b.len()) } {
        1 => Float::Finite,
        2 => Float::Infinite,
        _ => Float::Invalid,
    }
}

/// Why a sum was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The current value is not a float.
    Current,
    /// The increment is not a float.
    Increment,
    /// The sum is NaN or infinite (or too long to print, which Redis refuses too).
    NotFinite,
}

/// `current + by` (0 when there is no current value), printed as Redis prints it.
pub(crate) fn add(current: Option<&[u8]>, by: &[u8]) -> Result<String, AddError> {
    // On the stack: only the sum's few bytes are copied out.
    let mut out = [0u8; TEXT_ROOM];
    let (cur, cur_len) = current.map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
    // SAFETY: each pointer and length describe a live slice (`cur` is only read when
    // `has_cur` is 1, and then describes `current`); `out` is `TEXT_ROOM` writable bytes and
    // the C side writes at most `out_len` of them (snprintf's bound), returning how many.
    let n = unsafe {
        quipu_ld_add(
            cur,
            cur_len,
            c_int::from(current.is_some()),
            by.as_ptr(),
            by.len(),
            out.as_mut_ptr().cast::<c_char>(),
            out.len(),
        )
    };
    match n {
        -1 => Err(AddError::Current),
        -2 => Err(AddError::Increment),
        n if n <= 0 => Err(AddError::NotFinite),
        n => {
            let text = out.get(..usize::try_from(n).map_err(|_| AddError::NotFinite)?);
            // printf of a number writes ASCII only.
            let text = text.and_then(|t| std::str::from_utf8(t).ok());
            text.map(str::to_owned).ok_or(AddError::NotFinite)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(cur: Option<&str>, by: &str) -> Result<String, AddError> {
        add(cur.map(str::as_bytes), by.as_bytes())
    }

    #[test]
    fn sums_print_as_redis_prints_them() {
        // Each expected text is what redis-server 7.0.15 on x86_64 replied.
        assert_eq!(sum(Some("0.1"), "0.2").unwrap(), "0.3");
        assert_eq!(sum(Some("0.3"), "10.05").unwrap(), "10.35");
        assert_eq!(sum(Some("10.35"), "1.1").unwrap(), "11.45");
        assert_eq!(sum(Some("5.0e3"), "2.0e2").unwrap(), "5200");
        assert_eq!(sum(Some("5200"), "1e20").unwrap(), "100000000000000005200");
        assert_eq!(
            sum(None, "9223372036854775807").unwrap(),
            "9223372036854775807"
        );
        assert_eq!(sum(Some("0x10"), "1").unwrap(), "17");
        assert_eq!(sum(Some("-1"), "1").unwrap(), "0");
        assert_eq!(sum(None, "-0.0").unwrap(), "0");
        assert_eq!(sum(None, "+5").unwrap(), "5");
        assert_eq!(sum(None, "1e400").unwrap().len(), 401);
    }

    #[test]
    fn what_redis_refuses_is_refused() {
        assert_eq!(sum(Some("abc"), "1"), Err(AddError::Current));
        assert_eq!(sum(Some(""), "1"), Err(AddError::Current));
        assert_eq!(sum(Some("1"), " 1"), Err(AddError::Increment));
        assert_eq!(sum(Some("1"), "1 "), Err(AddError::Increment));
        assert_eq!(sum(Some("1"), "nan"), Err(AddError::Increment));
        assert_eq!(sum(Some("1"), "1\0"), Err(AddError::Increment));
        assert_eq!(sum(Some("1"), "inf"), Err(AddError::NotFinite));
        assert_eq!(sum(Some("1e4932"), "1e4932"), Err(AddError::NotFinite));
        let long = "1".repeat(TEXT_ROOM);
        assert_eq!(sum(None, &long), Err(AddError::Increment));
    }

    #[test]
    fn floats_are_checked_as_redis_reads_them() {
        assert_eq!(check(b"1.5"), Float::Finite);
        assert_eq!(check(b"-inf"), Float::Infinite);
        assert_eq!(check(b"1e5000"), Float::Invalid);
        assert_eq!(check(b"nan"), Float::Invalid);
        assert_eq!(check(b""), Float::Invalid);
        assert_eq!(check(b"1e-5000"), Float::Invalid);
    }
}
