//! Keys and ciphertexts of the sealing layer: master keys (from configuration), per-tenant data
//! keys (random, stored wrapped by a master key), the two ciphers with associated data, and the
//! keyed equality tokens.
//!
//! A ciphertext (a record's value, metadata, properties or attributes, or an object chunk of up
//! to a mebibyte) is AES-256-GCM, which the processor runs in hardware (AES-NI, VAES), under a
//! key of its own: `[FORMAT][data key id: 8][salt: 16][ciphertext][tag: 16]`, the key being
//! HMAC-SHA-256 of a random 128-bit salt under a subkey of the data key. No key ever sees two
//! nonces (the GCM nonce is fixed; a salt collision is a birthday event over 2^128 values, about
//! 2^-65 after 2^32 encryptions), so GCM's limit on random 96-bit nonces does not apply and no
//! counter has to survive restarts or be shared between nodes; it is the construction of Tink's
//! AES-GCM-HKDF streaming segments. Ciphertexts of format 1 (XChaCha20-Poly1305 with a random
//! 192-bit nonce: `[1][data key id: 8][nonce: 24][ciphertext and tag]`), written by earlier
//! versions, still open.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngExt;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::types::TenantId;

/// The format version of every new ciphertext (its first byte, and part of its associated data).
pub const FORMAT: u8 = 2;
/// The format of ciphertexts written by earlier versions (XChaCha20-Poly1305), still opened.
pub const XCHACHA_FORMAT: u8 = 1;
/// Bytes a ciphertext adds to its plaintext: format, key id, salt, tag.
pub const OVERHEAD: usize = HEADER + TAG_BYTES;
const SALT_BYTES: usize = 16;
const HEADER: usize = 1 + KEY_ID_BYTES + SALT_BYTES;
/// Bytes a format-1 ciphertext adds: format, key id, nonce, tag.
const XCHACHA_OVERHEAD: usize = 1 + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES;

const KEY_ID_BYTES: usize = 8;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// Equality tokens are 72 bits: a collision only adds a candidate that is filtered after
/// decryption, so they need not resist more than chance.
const TOKEN_BYTES: usize = 9;

type HmacSha256 = Hmac<Sha256>;

/// Fills `N` bytes from the operating system's generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        Error::internal(
            "the operating system's random generator failed",
            Some(e.into()),
        )
    })?;
    Ok(bytes)
}

fn prf(key: &[u8], label: &[u8]) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of every length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(label);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// A key-encryption key: 32 bytes from the key file or the environment. Its id (a digest of the
/// key, not the key) names it in every data-key record it wraps.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

impl MasterKey {
    /// A master key of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = prf(&bytes, b"p8fs master key id");
        let id = crate::object::hex(&digest[..8]);
        Self {
            bytes: Zeroizing::new(bytes),
            id,
        }
    }

    /// A new random master key.
    pub fn generate() -> Result<Self> {
        Ok(Self::from_bytes(random::<32>()?))
    }

    /// Parses the text form (base64url of the 32 bytes, padding optional).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                Error::invalid(
                    "master_key",
                    "must be 32 bytes in base64url (43 characters)",
                )
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The text form: base64url of the 32 bytes.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(*self.bytes))
    }

    /// The key's id (16 hex digits of a digest of it).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.bytes).into())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// The master keys a store may be wrapped with: the first is current (it wraps new data keys and
/// re-wrapped ones); the others are retired but still open what they wrapped.
#[derive(Clone, Debug)]
pub struct MasterKeys(Vec<MasterKey>);

impl MasterKeys {
    /// `current` first, then retired keys. Duplicates are dropped.
    pub fn new(current: MasterKey, retired: impl IntoIterator<Item = MasterKey>) -> Self {
        let mut keys = vec![current];
        for key in retired {
            if keys.iter().all(|k| k.id != key.id) {
                keys.push(key);
            }
        }
        Self(keys)
    }

    /// The key that wraps.
    pub fn current(&self) -> &MasterKey {
        &self.0[0]
    }

    /// The key with this id.
    pub fn find(&self, id: &str) -> Option<&MasterKey> {
        self.0.iter().find(|k| k.id == id)
    }

    /// Every key, current first.
    pub fn all(&self) -> &[MasterKey] {
        &self.0
    }
}

/// A tenant's data key: derives the key of each ciphertext and keys its equality tokens.
pub struct DataKey {
    id: [u8; KEY_ID_BYTES],
    /// Derives each ciphertext's key from its salt.
    keys: HmacSha256,
    tokens: HmacSha256,
    /// Opens format-1 ciphertexts.
    xchacha: XChaCha20Poly1305,
}

/// A data key's plain bytes, only ever held while it is wrapped or unwrapped.
pub(crate) struct DataKeyBytes {
    pub(crate) id: [u8; KEY_ID_BYTES],
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

impl DataKeyBytes {
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self {
            id: random()?,
            secret: Zeroizing::new(random()?),
        })
    }

    /// The data key, with its two subkeys derived from the secret.
    pub(crate) fn open(&self) -> DataKey {
        let encryption = prf(&*self.secret, b"p8fs data encryption v1");
        let tokens = prf(&*self.secret, b"p8fs equality tokens v1");
        let keys = prf(&*self.secret, b"p8fs message keys v2");
        DataKey {
            id: self.id,
            keys: <HmacSha256 as Mac>::new_from_slice(&*keys).unwrap_or_else(|_| unreachable!()),
            tokens: <HmacSha256 as Mac>::new_from_slice(&*tokens)
                .unwrap_or_else(|_| unreachable!()),
            xchacha: XChaCha20Poly1305::new((&*encryption).into()),
        }
    }

    /// Wraps the secret under `master`, bound to the tenant and the key id.
    pub(crate) fn wrap(&self, master: &MasterKey, tenant: &TenantId) -> Result<String> {
        let nonce = random::<NONCE_BYTES>()?;
        let aad = wrap_aad(tenant, &self.id);
        let ciphertext = master
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &*self.secret,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::internal("cannot wrap a data key", None))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Unwraps what [`DataKeyBytes::wrap`] made for `tenant` and `id`.
    pub(crate) fn unwrap(
        master: &MasterKey,
        tenant: &TenantId,
        id: [u8; KEY_ID_BYTES],
        wrapped: &str,
    ) -> Result<Self> {
        let failed = || {
            Error::internal(
                format!(
                    "the data key of tenant {tenant} does not open with master key {}: it was \
                     wrapped for another tenant or altered",
                    master.id
                ),
                None,
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(wrapped.as_bytes())
            .map_err(|_| failed())?;
        if bytes.len() != NONCE_BYTES + 32 + TAG_BYTES {
            return Err(failed());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let aad = wrap_aad(tenant, &id);
        let plain = Zeroizing::new(
            master
                .cipher()
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| failed())?,
        );
        let secret = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| failed())?;
        Ok(Self {
            id,
            secret: Zeroizing::new(secret),
        })
    }
}

fn undecryptable(context: &Context<'_>) -> Error {
    Error::internal(
        format!(
            "the {} does not decrypt: it was sealed for another record or tenant, or altered",
            context.describe()
        ),
        None,
    )
}

fn wrap_aad(tenant: &TenantId, id: &[u8]) -> Vec<u8> {
    let mut aad = b"p8fs data key v1\0".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(0);
    aad.extend_from_slice(id);
    aad
}

/// Parses a data key id (16 hex digits).
pub(crate) fn parse_key_id(text: &str) -> Option<[u8; KEY_ID_BYTES]> {
    crate::object::unhex(text).and_then(|b| <[u8; KEY_ID_BYTES]>::try_from(b.as_slice()).ok())
}

/// What a ciphertext is bound to besides its data key: the tenant, the capability and the
/// record (key, id, blob and chunk), so a stored value moved anywhere else fails to open.
pub struct Context<'a> {
    pub tenant: &'a TenantId,
    pub capability: &'static str,
    pub record: &'a [&'a [u8]],
}

impl Context<'_> {
    fn aad(&self, format: u8, key_id: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"p8fs sealed\0");
        aad.push(format);
        aad.extend_from_slice(self.tenant.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.capability.as_bytes());
        for part in self.record {
            // Length-prefixed, so parts cannot run into each other.
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(key_id);
        aad
    }

    fn describe(&self) -> String {
        let record: Vec<String> = self
            .record
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        format!(
            "{} record {:?} of tenant {}",
            self.capability,
            record.join("/"),
            self.tenant
        )
    }
}

impl DataKey {
    /// Encrypts `plaintext` for `context`.
    pub fn seal(&self, context: &Context<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(context, plaintext, &mut out)?;
        Ok(out)
    }

    /// Appends `plaintext` encrypted for `context` to `out`:
    /// `[FORMAT][key id][salt][ciphertext][tag]`.
    pub fn seal_into(
        &self,
        context: &Context<'_>,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // Salts need only be unique: the thread's generator (ChaCha12, seeded and reseeded from
        // the operating system) spares a system call per record.
        let salt: [u8; SALT_BYTES] = rand::rng().random();
        out.reserve(plaintext.len() + OVERHEAD);
        out.push(FORMAT);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&salt);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let aad = context.aad(FORMAT, &self.id);
        let tag = self
            .message_key(&salt)?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(&aad),
                &mut out[start..],
            )
            .map_err(|_| Error::internal("cannot encrypt a record", None))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts what [`DataKey::seal`] made for the same `context` with this key. Anything else
    /// (another tenant, record or key, altered bytes) is an `Internal` error saying so.
    pub fn open(&self, context: &Context<'_>, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.first() == Some(&XCHACHA_FORMAT) {
            return self.open_xchacha(context, sealed);
        }
        self.open_in(context, sealed.to_vec(), 0)
    }

    /// As [`DataKey::open`], for a ciphertext stored from byte `at` of `stored`: it is decrypted
    /// in place and the plaintext returned in `stored`'s buffer.
    pub fn open_in(
        &self,
        context: &Context<'_>,
        mut stored: Vec<u8>,
        at: usize,
    ) -> Result<Vec<u8>> {
        let sealed = stored.get(at..).unwrap_or_default();
        if sealed.first() == Some(&XCHACHA_FORMAT) {
            return self.open_xchacha(context, sealed);
        }
        self.check_header(context, sealed, FORMAT, OVERHEAD)?;
        let key = self.message_key(&sealed[1 + KEY_ID_BYTES..HEADER])?;
        let aad = context.aad(FORMAT, &self.id);
        let plain = key
            .open_within(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(&aad),
                &mut stored,
                at + HEADER..,
            )
            .map_err(|_| undecryptable(context))?
            .len();
        stored.truncate(plain);
        Ok(stored)
    }

    /// Opens a format-1 ciphertext (XChaCha20-Poly1305).
    fn open_xchacha(&self, context: &Context<'_>, sealed: &[u8]) -> Result<Vec<u8>> {
        self.check_header(context, sealed, XCHACHA_FORMAT, XCHACHA_OVERHEAD)?;
        let (nonce, ciphertext) = sealed[1 + KEY_ID_BYTES..].split_at(NONCE_BYTES);
        let aad = context.aad(XCHACHA_FORMAT, &self.id);
        self.xchacha
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable(context))
    }

    /// The key of the ciphertext with this salt.
    fn message_key(&self, salt: &[u8]) -> Result<LessSafeKey> {
        let mut mac = self.keys.clone();
        mac.update(salt);
        let derived = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let key = UnboundKey::new(&AES_256_GCM, &*derived)
            .map_err(|_| Error::internal("cannot make a message key", None))?;
        Ok(LessSafeKey::new(key))
    }

    /// Checks a ciphertext's length, format and data key id.
    fn check_header(
        &self,
        context: &Context<'_>,
        sealed: &[u8],
        format: u8,
        overhead: usize,
    ) -> Result<()> {
        if sealed.len() < overhead || sealed[0] != format {
            return Err(Error::internal(
                format!(
                    "the {} is not sealed in format {format}",
                    context.describe()
                ),
                None,
            ));
        }
        let id = &sealed[1..1 + KEY_ID_BYTES];
        if id != self.id {
            return Err(Error::internal(
                format!(
                    "the {} was sealed with data key {}, not the tenant's key {}: it belongs to \
                     another tenant or store",
                    context.describe(),
                    crate::object::hex(id),
                    crate::object::hex(&self.id)
                ),
                None,
            ));
        }
        Ok(())
    }

    /// The equality token of some canonical bytes (base64url, 12 characters).
    pub fn token(&self, canonical: &[u8]) -> String {
        let mut mac = self.tokens.clone();
        mac.update(canonical);
        let digest = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(&digest[..TOKEN_BYTES])
    }

    /// The key's id.
    pub fn id(&self) -> [u8; KEY_ID_BYTES] {
        self.id
    }

    /// A format-1 ciphertext (XChaCha20-Poly1305, random 192-bit nonce), as earlier versions
    /// sealed.
    #[cfg(test)]
    pub(crate) fn seal_format_one(&self, context: &Context<'_>, plaintext: &[u8]) -> Vec<u8> {
        let nonce = random::<NONCE_BYTES>().unwrap();
        let aad = context.aad(XCHACHA_FORMAT, &self.id);
        let ciphertext = self
            .xchacha
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .unwrap();
        let mut old = vec![XCHACHA_FORMAT];
        old.extend_from_slice(&self.id);
        old.extend_from_slice(&nonce);
        old.extend_from_slice(&ciphertext);
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context<'a>(tenant: &'a TenantId, record: &'a [&'a [u8]]) -> Context<'a> {
        Context {
            tenant,
            capability: "chunk",
            record,
        }
    }

    #[test]
    fn ciphertexts_open_only_in_their_context_and_with_their_key() {
        let key = DataKeyBytes::generate().unwrap().open();
        let tenant = TenantId::new("alpha").unwrap();
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut stored = b"head".to_vec();
        key.seal_into(&context(&tenant, &[b"7", b"0"]), &plain, &mut stored)
            .unwrap();
        assert_eq!(stored.len(), 4 + plain.len() + OVERHEAD);
        assert!(!stored.windows(64).any(|w| w == &plain[..64]));
        let opened = key
            .open_in(&context(&tenant, &[b"7", b"0"]), stored.clone(), 4)
            .unwrap();
        assert_eq!(opened, plain);

        // Another index, tenant or key, or a flipped bit: refused.
        let moved = key.open_in(&context(&tenant, &[b"7", b"1"]), stored.clone(), 4);
        assert!(moved.unwrap_err().to_string().contains("does not decrypt"));
        let other = TenantId::new("beta").unwrap();
        assert!(
            key.open_in(&context(&other, &[b"7", b"0"]), stored.clone(), 4)
                .is_err()
        );
        let stranger = DataKeyBytes::generate().unwrap().open();
        let err = stranger
            .open_in(&context(&tenant, &[b"7", b"0"]), stored.clone(), 4)
            .unwrap_err();
        assert!(err.to_string().contains("data key"), "{err}");
        let mut flipped = stored.clone();
        let last = flipped.len() - 20;
        flipped[last] ^= 1;
        assert!(
            key.open_in(&context(&tenant, &[b"7", b"0"]), flipped, 4)
                .is_err()
        );
        // Truncated below the header: refused, no panic.
        assert!(
            key.open_in(&context(&tenant, &[b"7", b"0"]), stored[..20].to_vec(), 4)
                .is_err()
        );
        assert!(
            key.open_in(&context(&tenant, &[b"7", b"0"]), vec![], 4)
                .is_err()
        );

        // Two seals of the same bytes differ (a fresh salt each time).
        let mut again = b"head".to_vec();
        key.seal_into(&context(&tenant, &[b"7", b"0"]), &plain, &mut again)
            .unwrap();
        assert_ne!(again, stored);
    }

    #[test]
    fn empty_plaintexts_seal_and_open() {
        let key = DataKeyBytes::generate().unwrap().open();
        let tenant = TenantId::new("alpha").unwrap();
        let mut stored = Vec::new();
        key.seal_into(&context(&tenant, &[]), &[], &mut stored)
            .unwrap();
        assert_eq!(
            key.open_in(&context(&tenant, &[]), stored, 0).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn format_one_ciphertexts_still_open() {
        let key = DataKeyBytes::generate().unwrap().open();
        let tenant = TenantId::new("alpha").unwrap();
        let ctx = context(&tenant, &[b"k1"]);
        let old = key.seal_format_one(&ctx, b"an old value");
        assert_eq!(key.open(&ctx, &old).unwrap(), b"an old value");
        let mut stored = b"head".to_vec();
        stored.extend_from_slice(&old);
        assert_eq!(key.open_in(&ctx, stored, 4).unwrap(), b"an old value");
        assert!(key.open(&context(&tenant, &[b"k2"]), &old).is_err());
        // New ciphertexts are in the current format.
        assert_eq!(key.seal(&ctx, b"new").unwrap()[0], FORMAT);
    }
}
