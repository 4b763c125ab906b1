//! A cache key in 16 bytes: keys of up to 15 bytes live inside the slot itself, longer ones in
//! one heap allocation. A hit on a short key then reads no memory beyond the slot's cache line
//! to compare keys (one cache miss fewer per lookup than a boxed key), and the key costs no
//! allocation at all.
//!
//! Layout (`repr(C)` union of 16 bytes): inline, bytes 0..len hold the key and byte 15 holds
//! `0x80 | len`; on the heap, a pointer and the length as 8 little-endian bytes, whose last
//! byte (byte 15 on 64-bit targets, where a pointer is 8 bytes) is 0 since a length is below
//! 2^56. The union is zeroed before a variant is written, so byte 15 is initialised in both.

use std::ptr::NonNull;

const INLINE_MAX: usize = 15;
const INLINE_TAG: u8 = 0x80;

#[derive(Clone, Copy)]
#[repr(C)]
struct Heap {
    ptr: NonNull<u8>,
    len: [u8; 8],
}

#[repr(C)]
union Repr {
    inline: [u8; 16],
    heap: Heap,
}

/// An owned key; see the module docs for its layout.
pub(crate) struct Key(Repr);

// SAFETY: a `Key` owns its bytes exactly as a `Box<[u8]>` does (the heap pointer is unique to
// it and freed in `drop`), so it can move to and be shared between threads like one.
unsafe impl Send for Key {}
// SAFETY: as above; `&Key` only gives out `&[u8]`.
unsafe impl Sync for Key {}

const _: () = assert!(std::mem::size_of::<Key>() == 16);

impl Key {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        let mut repr = Repr { inline: [0; 16] };
        if bytes.len() <= INLINE_MAX {
            let mut inline = [0u8; 16];
            inline[..bytes.len()].copy_from_slice(bytes);
            // In range: at most 15.
            inline[15] = INLINE_TAG | bytes.len() as u8;
            repr.inline = inline;
        } else {
            let boxed: Box<[u8]> = bytes.into();
            let len = boxed.len() as u64;
            // `Box::into_raw` never returns null.
            let ptr =
                NonNull::new(Box::into_raw(boxed).cast::<u8>()).unwrap_or(NonNull::dangling());
            repr.heap = Heap {
                ptr,
                len: len.to_le_bytes(),
            };
        }
        Self(repr)
    }

    fn tag(&self) -> u8 {
        // SAFETY: byte 15 is initialised whichever variant was written: the union is zeroed
        // first, then either the inline array (all 16 bytes) or `Heap` (its `len` bytes cover
        // byte 15 on 64-bit targets, and on smaller ones byte 15 keeps its zero) is written.
        unsafe { self.0.inline[15] }
    }

    fn is_inline(&self) -> bool {
        self.tag() & INLINE_TAG != 0
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.is_inline() {
            let len = usize::from(self.tag() & !INLINE_TAG);
            // SAFETY: the inline variant is the one written (its tag bit is set, which a heap
            // length's top byte never is); all 16 bytes are initialised.
            let inline = unsafe { &self.0.inline };
            &inline[..len]
        } else {
            // SAFETY: the heap variant is the one written: `ptr` and `len` come from one live
            // `Box<[u8]>` that this key owns and has not freed.
            unsafe {
                let heap = self.0.heap;
                let len = u64::from_le_bytes(heap.len) as usize;
                std::slice::from_raw_parts(heap.ptr.as_ptr(), len)
            }
        }
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.is_inline() {
            // SAFETY: the heap variant is the one written; rebuilding the `Box<[u8]>` from the
            // pointer and length `Box::into_raw` gave frees it exactly once (drop runs once).
            unsafe {
                let heap = self.0.heap;
                let len = u64::from_le_bytes(heap.len) as usize;
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    heap.ptr.as_ptr(),
                    len,
                )));
            }
        }
    }
}

impl Default for Key {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        Self::new(self.as_bytes())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_length_around_the_boundary() {
        for len in [0, 1, 7, 8, 14, 15, 16, 17, 64, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let k = Key::new(&bytes);
            assert_eq!(k.as_bytes(), &bytes[..], "len {len}");
            assert_eq!(k.is_inline(), len <= INLINE_MAX);
            let c = k.clone();
            drop(k);
            assert_eq!(c.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn bytes_with_the_high_bit_set_stay_inline_and_intact() {
        let bytes = [0xFFu8; 15];
        let k = Key::new(&bytes);
        assert!(k.is_inline());
        assert_eq!(k.as_bytes(), &bytes);
        let long = [0xFFu8; 300];
        let k = Key::new(&long);
        assert!(!k.is_inline());
        assert_eq!(k.as_bytes(), &long);
    }

    #[test]
    fn moves_between_threads() {
        let keys: Vec<Key> = (0..100).map(|i| Key::new(&vec![i as u8; i])).collect();
        let back = std::thread::spawn(move || keys).join().unwrap();
        for (i, k) in back.iter().enumerate() {
            assert_eq!(k.as_bytes(), &vec![i as u8; i][..]);
        }
    }
}
