//! A cache key in 17 bytes: keys of up to 16 bytes live inside the slot itself, longer ones in
//! one heap allocation. A hit on a short key then reads no memory beyond the slot's cache line
//! to compare keys (one cache miss fewer per lookup than a boxed key), and the key costs no
//! allocation at all. Sixteen bytes hold the common `prefix:` + id keys (`session:4f9a2c1b`,
//! `key:000000012345`, a UUID's 16 raw bytes).
//!
//! Layout (`repr(C, packed)`, alignment 1, so the slot can place it in its last bytes): a
//! 16-byte union, inline the key's bytes, on the heap a pointer and the length; then one tag
//! byte, `0x80 | len` inline and 0 on the heap. The union is zeroed before a variant is written.

use std::ptr::NonNull;

const INLINE_MAX: usize = 16;
const INLINE_TAG: u8 = 0x80;

#[derive(Clone, Copy)]
#[repr(C)]
struct Heap {
    ptr: NonNull<u8>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C)]
union Repr {
    inline: [u8; 16],
    heap: Heap,
}

/// An owned key; see the module docs for its layout.
#[repr(C, packed)]
pub(crate) struct Key {
    repr: Repr,
    tag: u8,
}

// SAFETY: a `Key` owns its bytes exactly as a `Box<[u8]>` does (the heap pointer is unique to
// it and freed in `drop`), so it can move to and be shared between threads like one.
unsafe impl Send for Key {}
// SAFETY: as above; `&Key` only gives out `&[u8]`.
unsafe impl Sync for Key {}

const _: () = assert!(std::mem::size_of::<Key>() == 17);
const _: () = assert!(std::mem::align_of::<Key>() == 1);

impl Key {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_MAX {
            let mut inline = [0u8; 16];
            inline[..bytes.len()].copy_from_slice(bytes);
            Self {
                repr: Repr { inline },
                // In range: at most 16.
                tag: INLINE_TAG | bytes.len() as u8,
            }
        } else {
            let boxed: Box<[u8]> = bytes.into();
            let len = boxed.len();
            // `Box::into_raw` never returns null.
            let ptr =
                NonNull::new(Box::into_raw(boxed).cast::<u8>()).unwrap_or(NonNull::dangling());
            Self {
                repr: Repr {
                    heap: Heap { ptr, len },
                },
                tag: 0,
            }
        }
    }

    fn is_inline(&self) -> bool {
        self.tag & INLINE_TAG != 0
    }

    /// The heap variant, read unaligned (the key is packed).
    ///
    /// # Safety
    /// The heap variant must be the one written (`!self.is_inline()`).
    unsafe fn heap(&self) -> Heap {
        // SAFETY: `Heap` is `Copy` and fully initialised when it is the variant written (the
        // caller's promise); the read is unaligned because the key has alignment 1.
        unsafe { std::ptr::addr_of!(self.repr.heap).read_unaligned() }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.is_inline() {
            let len = usize::from(self.tag & !INLINE_TAG);
            // SAFETY: the inline variant is the one written (its tag bit is set, which a heap
            // key's tag never is); all 16 bytes are initialised, `len` is at most 16, and a
            // `u8` needs no alignment. The slice borrows `self`.
            unsafe { std::slice::from_raw_parts(std::ptr::addr_of!(self.repr).cast::<u8>(), len) }
        } else {
            // SAFETY: the heap variant is the one written: `ptr` and `len` come from one live
            // `Box<[u8]>` that this key owns and has not freed.
            unsafe {
                let heap = self.heap();
                std::slice::from_raw_parts(heap.ptr.as_ptr(), heap.len)
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
                let heap = self.heap();
                drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    heap.ptr.as_ptr(),
                    heap.len,
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
        for len in [0, 1, 7, 8, 14, 15, 16, 17, 18, 64, 1000] {
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
        let bytes = [0xFFu8; 16];
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
