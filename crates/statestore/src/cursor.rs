//! Sealed SCAN cursors for clients whose keys are restricted by a policy. A plain cursor is
//! the last key examined, which may be one the client cannot read; sealed, it is
//! `nonce ‖ ChaCha20-Poly1305(key)` under a key drawn at start and never leaving the process,
//! so the client can pass it back but learns nothing of the key but its length. A cursor
//! that does not open (forged, or from before a restart) is refused as a syntax error.

use bytes::Bytes;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens cursors; one per state store.
pub(crate) struct CursorSeal {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl CursorSeal {
    /// A seal with a fresh random key; `None` if the system has no randomness to give.
    pub(crate) fn new() -> Option<Self> {
        let rng = SystemRandom::new();
        let mut raw = [0u8; 32];
        rng.fill(&mut raw).ok()?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &raw).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
            rng,
        })
    }

    /// The sealed form of the position `key`; `None` if no nonce could be drawn.
    pub(crate) fn seal(&self, key: &[u8]) -> Option<Bytes> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut body = key.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&body);
        Some(Bytes::from(out))
    }

    /// The position a sealed cursor stands for, if it is one of ours.
    pub(crate) fn open(&self, cursor: &[u8]) -> Option<Vec<u8>> {
        if cursor.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = cursor.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::CursorSeal;

    #[test]
    fn sealed_cursors_open_and_hide_the_key() {
        let Some(seal) = CursorSeal::new() else {
            panic!("no randomness");
        };
        let Some(c) = seal.seal(b"clients/other/secret") else {
            panic!("seal");
        };
        assert!(!c.windows(6).any(|w| w == b"client"));
        assert_eq!(seal.open(&c).as_deref(), Some(&b"clients/other/secret"[..]));
        let mut forged = c.to_vec();
        if let Some(last) = forged.last_mut() {
            *last ^= 1;
        }
        assert_eq!(seal.open(&forged), None);
        assert_eq!(seal.open(b"clients/other/secret"), None);
        let Some(other) = CursorSeal::new() else {
            panic!("no randomness");
        };
        assert_eq!(other.open(&c), None, "a restart's key opens nothing");
    }
}
