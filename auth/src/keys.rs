//! The signing key ring: Ed25519 keys with a `kid`, persisted owner-only in one JSON file,
//! published as a JWKS, rotated while serving.
//!
//! The file is `<dir>/keys.json` (mode 0600, in a directory created 0700). Each key is stored
//! with its JWK fields (`kid`, `x`, and the private seed as `d`, base64url), its creation time
//! and, once superseded, the time it retires. A retired key is neither published nor accepted;
//! until then it only verifies tokens it signed before rotation. The `kid` is the RFC 7638
//! thumbprint of the public key. Secret material never appears in `Debug` output or errors.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p8fs_core::error::Source;
use p8fs_core::{Clock, Error, Result, Timestamp};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::random_bytes;

/// The name of the key file inside the key directory.
pub const KEY_FILE_NAME: &str = "keys.json";

const FORMAT: u32 = 1;
const ALG: &str = "EdDSA";

/// The Ed25519 keys that sign and verify access tokens. Thread-safe: rotation swaps the ring
/// under a lock while other threads keep signing and verifying.
pub struct KeyRing {
    file: PathBuf,
    clock: Arc<dyn Clock>,
    ring: RwLock<Ring>,
}

struct Ring {
    /// The `kid` of the key that signs new tokens.
    current: String,
    /// Every key not yet pruned, current included.
    keys: Vec<Arc<KeyEntry>>,
}

/// One signing key with everything derived from it.
pub(crate) struct KeyEntry {
    pub(crate) kid: String,
    created_at: Timestamp,
    retire_at: Option<Timestamp>,
    signing: SigningKey,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    /// The public key, base64url (the JWK `x`).
    x: String,
}

impl KeyEntry {
    fn generate(now: Timestamp) -> Result<Self> {
        let seed = Zeroizing::new(random_bytes::<32>()?);
        Self::from_seed(&seed, now, None)
    }

    fn from_seed(
        seed: &[u8; 32],
        created_at: Timestamp,
        retire_at: Option<Timestamp>,
    ) -> Result<Self> {
        let signing = SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes();
        let der = signing
            .to_pkcs8_der()
            .map_err(|_| Error::internal("cannot encode the signing key", None))?;
        let x = URL_SAFE_NO_PAD.encode(public);
        Ok(Self {
            kid: thumbprint(&x),
            created_at,
            retire_at,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(&public),
            signing,
            x,
        })
    }

    fn with_retire_at(&self, retire_at: Option<Timestamp>) -> Result<Self> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        Self::from_seed(&seed, self.created_at, retire_at)
    }

    /// Whether the key still verifies tokens at `now`.
    pub(crate) fn is_live(&self, now: Timestamp) -> bool {
        self.retire_at.is_none_or(|retire_at| now < retire_at)
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "alg": ALG,
            "use": "sig",
        })
    }

    fn stored(&self) -> StoredKey {
        StoredKey {
            kid: self.kid.clone(),
            alg: ALG.to_owned(),
            x: self.x.clone(),
            d: URL_SAFE_NO_PAD.encode(Zeroizing::new(self.signing.to_bytes())),
            created_at: self.created_at,
            retire_at: self.retire_at,
        }
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order, base64url.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The key file as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: u32,
    current: String,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    kid: String,
    alg: String,
    x: String,
    /// The private seed, base64url (the JWK `d`).
    d: String,
    created_at: Timestamp,
    retire_at: Option<Timestamp>,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        self.d.zeroize();
    }
}

impl StoredKey {
    fn load(&self) -> std::result::Result<KeyEntry, &'static str> {
        if self.alg != ALG {
            return Err("a key has an unsupported alg");
        }
        let mut decoded = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(self.d.as_bytes())
                .map_err(|_| "a key's d is not base64url")?,
        );
        let seed: &mut [u8; 32] = decoded
            .as_mut_slice()
            .try_into()
            .map_err(|_| "a key's d is not 32 bytes")?;
        let entry = KeyEntry::from_seed(seed, self.created_at, self.retire_at)
            .map_err(|_| "a key cannot be encoded")?;
        if entry.x != self.x || entry.kid != self.kid {
            return Err("a key's x or kid does not match its private key");
        }
        Ok(entry)
    }
}

impl KeyRing {
    /// Opens the key ring in `dir`, creating `dir` (mode 0700) and a first key (file mode 0600)
    /// if there is none. Refuses a key file that group or others can access.
    pub fn load_or_create(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error("cannot create the key directory", dir, e))?;
        let file = dir.join(KEY_FILE_NAME);
        let ring = match read_ring(&file)? {
            Some(ring) => ring,
            None => {
                let entry = KeyEntry::generate(clock.now())?;
                let ring = Ring {
                    current: entry.kid.clone(),
                    keys: vec![Arc::new(entry)],
                };
                if create_file(&file, &ring)? {
                    ring
                } else {
                    // Another process created the file first; use its key.
                    read_ring(&file)?.ok_or_else(|| {
                        Error::internal(format!("{} vanished", file.display()), None)
                    })?
                }
            }
        };
        Ok(Self {
            file,
            clock,
            ring: RwLock::new(ring),
        })
    }

    /// Re-reads the key file, e.g. after another process rotated the keys.
    pub fn reload(&self) -> Result<()> {
        let ring = read_ring(&self.file)?
            .ok_or_else(|| Error::internal(format!("{} is missing", self.file.display()), None))?;
        *self.ring.write() = ring;
        Ok(())
    }

    /// Makes a new key current and returns its `kid`. Every key that had no retirement time
    /// retires `retain_old_for` from now: until then it stays in the JWKS and verifies the
    /// tokens it signed, so `retain_old_for` should be at least the longest token lifetime
    /// plus the verification leeway. Retired keys are removed from the file. The file is
    /// replaced atomically before the new key is used.
    pub fn rotate(&self, retain_old_for: Duration) -> Result<String> {
        let mut ring = self.ring.write();
        let now = self.clock.now();
        let retire_at = now.saturating_add(duration_millis(retain_old_for));
        let new = Arc::new(KeyEntry::generate(now)?);
        let mut keys = vec![new.clone()];
        for old in &ring.keys {
            if !old.is_live(now) {
                continue;
            }
            if old.retire_at.is_some() {
                keys.push(old.clone());
            } else {
                let retiring = old.with_retire_at(Some(retire_at))?;
                if retiring.is_live(now) {
                    keys.push(Arc::new(retiring));
                }
            }
        }
        let next = Ring {
            current: new.kid.clone(),
            keys,
        };
        replace_file(&self.file, &next)?;
        *ring = next;
        Ok(new.kid.clone())
    }

    /// The public keys that verify tokens now, as an RFC 7517 JWK set, current key first.
    pub fn jwks(&self) -> Value {
        let now = self.clock.now();
        let ring = self.ring.read();
        let mut live: Vec<&Arc<KeyEntry>> = ring.keys.iter().filter(|k| k.is_live(now)).collect();
        // Current first, then the keys retiring last (the newer ones).
        live.sort_by(|a, b| {
            (b.kid == ring.current)
                .cmp(&(a.kid == ring.current))
                .then(retires(b).cmp(&retires(a)))
                .then(b.created_at.cmp(&a.created_at))
                .then(a.kid.cmp(&b.kid))
        });
        json!({ "keys": live.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }

    /// The `kid` of the key that signs new tokens.
    pub fn current_kid(&self) -> String {
        self.ring.read().current.clone()
    }

    /// The path of the key file.
    pub fn key_file(&self) -> &Path {
        &self.file
    }

    /// The key that signs new tokens.
    pub(crate) fn signing_key(&self) -> Result<Arc<KeyEntry>> {
        let ring = self.ring.read();
        ring.keys
            .iter()
            .find(|k| k.kid == ring.current)
            .cloned()
            .ok_or_else(|| Error::internal("the current signing key is missing", None))
    }

    /// The key with `kid` if it verifies tokens at `now`.
    pub(crate) fn verification_key(&self, kid: &str, now: Timestamp) -> Option<Arc<KeyEntry>> {
        self.ring
            .read()
            .keys
            .iter()
            .find(|k| k.kid == kid && k.is_live(now))
            .cloned()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring.read();
        f.debug_struct("KeyRing")
            .field("file", &self.file)
            .field("current", &ring.current)
            .field(
                "kids",
                &ring.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn retires(key: &KeyEntry) -> Timestamp {
    key.retire_at.unwrap_or(Timestamp::MAX)
}

pub(crate) fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::internal(
        format!("{what} {}", path.display()),
        Some(Box::new(e) as Source),
    )
}

fn corrupt(path: &Path, reason: &str) -> Error {
    Error::internal(
        format!("{} is not a valid key file: {reason}", path.display()),
        None,
    )
}

/// Reads and checks the key file; `None` if it does not exist.
fn read_ring(path: &Path) -> Result<Option<Ring>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot open the key file", path, e)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| io_error("cannot stat the key file", path, e))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(Error::invalid(
            "key_file",
            format!(
                "{} is accessible by group or others; make it owner-only (chmod 600)",
                path.display()
            ),
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| io_error("cannot read the key file", path, e))?;
    let stored: KeyFile =
        serde_json::from_slice(&bytes).map_err(|_| corrupt(path, "malformed JSON"))?;
    if stored.format != FORMAT {
        return Err(corrupt(path, "unsupported format version"));
    }
    let mut keys = Vec::with_capacity(stored.keys.len());
    for key in &stored.keys {
        let entry = key.load().map_err(|reason| corrupt(path, reason))?;
        if keys.iter().any(|k: &Arc<KeyEntry>| k.kid == entry.kid) {
            return Err(corrupt(path, "a kid appears twice"));
        }
        keys.push(Arc::new(entry));
    }
    if !keys.iter().any(|k| k.kid == stored.current) {
        return Err(corrupt(path, "the current kid names no key"));
    }
    Ok(Some(Ring {
        current: stored.current.clone(),
        keys,
    }))
}

fn serialize(ring: &Ring) -> Result<Zeroizing<Vec<u8>>> {
    let stored = KeyFile {
        format: FORMAT,
        current: ring.current.clone(),
        keys: ring.keys.iter().map(|k| k.stored()).collect(),
    };
    let mut bytes = Zeroizing::new(Vec::new());
    serde_json::to_writer_pretty(&mut *bytes, &stored)
        .map_err(|_| Error::internal("cannot serialize the key file", None))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes `ring` to a new owner-only temporary file next to `path`, synced, and returns its path.
fn write_temporary(path: &Path, ring: &Ring) -> Result<PathBuf> {
    let bytes = serialize(ring)?;
    let suffix = URL_SAFE_NO_PAD.encode(random_bytes::<9>()?);
    let temporary = path.with_file_name(format!(".{KEY_FILE_NAME}.{suffix}.tmp"));
    let result = (|| {
        // The mode is set at creation, before any secret is written.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(temporary),
        Err(e) => {
            let _ = fs::remove_file(&temporary);
            Err(io_error("cannot write the key file", path, e))
        }
    }
}

fn sync_directory(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot sync the key directory", dir, e))
}

/// Creates the key file only if it does not exist (atomically, via a hard link); returns
/// whether this call created it.
fn create_file(path: &Path, ring: &Ring) -> Result<bool> {
    let temporary = write_temporary(path, ring)?;
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            sync_directory(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("cannot create the key file", path, e)),
    }
}

/// Replaces the key file atomically.
fn replace_file(path: &Path, ring: &Ring) -> Result<()> {
    let temporary = write_temporary(path, ring)?;
    if let Err(e) = fs::rename(&temporary, path) {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("cannot replace the key file", path, e));
    }
    sync_directory(path)
}

#[cfg(test)]
mod tests;
