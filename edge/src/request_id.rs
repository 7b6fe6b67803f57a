//! Request ids: 128 bits in the form of a random (version 4) UUID, made without a system call.
//!
//! The bits are SipHash-1-3, under a key the standard library draws from the operating system
//! once per thread (`RandomState`), of a per-thread counter: outside the process they are as
//! unpredictable as a random UUID's, and two ids of one thread never repeat. The edge and
//! `p8fs serve` both make their ids here.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A request id, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` in lowercase hexadecimal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 36]);

impl RequestId {
    /// A new id.
    pub fn new() -> Self {
        let (high, low) = GENERATOR.with(|(key, counter)| {
            let n = counter.get();
            counter.set(n.wrapping_add(2));
            let bits = |n: u64| {
                let mut hasher = key.build_hasher();
                hasher.write_u64(n);
                hasher.finish()
            };
            (bits(n), bits(n.wrapping_add(1)))
        });
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        // Version 4, variant 10xx (RFC 9562).
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(hyphenated(&bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hexadecimal digits and hyphens are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

thread_local! {
    /// This thread's key and counter.
    static GENERATOR: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
}

/// 16 bytes as 8-4-4-4-12 lowercase hexadecimal digits.
fn hyphenated(bytes: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            at += 1;
        }
        if let Some(pair) = text.get_mut(at..at + 2) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
        at += 2;
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_version_4_uuids_that_do_not_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = RequestId::new();
            let text = id.as_str();
            assert_eq!(text.len(), 36);
            for (index, c) in text.char_indices() {
                if matches!(index, 8 | 13 | 18 | 23) {
                    assert_eq!(c, '-', "{text}");
                } else {
                    assert!(matches!(c, '0'..='9' | 'a'..='f'), "{text}");
                }
            }
            assert_eq!(&text[14..15], "4", "{text}");
            assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
            assert!(seen.insert(text.to_owned()), "{text} repeated");
        }
        // Another thread draws another key.
        let other = std::thread::spawn(|| RequestId::new().as_str().to_owned())
            .join()
            .unwrap();
        assert!(!seen.contains(&other));
    }

    #[test]
    fn hyphenation() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(
            std::str::from_utf8(&hyphenated(&bytes)).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
    }
}
