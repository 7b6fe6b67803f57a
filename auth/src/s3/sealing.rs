//! The key that seals S3 secrets at rest: 32 random bytes in an owner-only file, used with
//! XChaCha20-Poly1305 (random 192-bit nonces) and associated data that ties every ciphertext to
//! the record and the access key id it belongs to, so a sealed secret copied to another record
//! does not open.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use p8fs_core::error::Source;
use p8fs_core::{Error, Result};
use zeroize::Zeroizing;

use crate::random_bytes;

/// The name of the sealing key file inside the key directory (next to the signing keys).
pub const SEALING_KEY_FILE_NAME: &str = "s3-sealing.key";

const NONCE_BYTES: usize = 24;

/// The key that encrypts S3 secret access keys and session tokens at rest. Its bytes never
/// appear in `Debug` output, logs or errors, and are wiped when it is dropped.
#[derive(Clone)]
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl SealingKey {
    /// A key of these bytes (tests, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A new random key, not stored anywhere.
    pub fn generate() -> Result<Self> {
        Ok(Self(Zeroizing::new(random_bytes::<32>()?)))
    }

    /// Opens the key in `path`, creating it (mode 0600, its directory 0700) if there is none.
    /// The file holds the key as one line of base64url. Refuses a file that group or others can
    /// access, and one that does not hold a key. Two processes creating it at once end up with
    /// the same key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_error("cannot create the key directory", dir, e))?;
        }
        if let Some(key) = read_key(path)? {
            return Ok(key);
        }
        let key = Self::generate()?;
        if create_file(path, &key)? {
            Ok(key)
        } else {
            // Another process created the file first; use its key.
            read_key(path)?
                .ok_or_else(|| Error::internal(format!("{} vanished", path.display()), None))
        }
    }

    /// Encrypts `plaintext`, bound to `context` (associated data): base64url of nonce and
    /// ciphertext.
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String> {
        let nonce = random_bytes::<NONCE_BYTES>()?;
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("cannot seal an S3 secret", None))?;
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Decrypts what [`SealingKey::seal`] made for the same `context`. A different key, a
    /// different context or altered bytes are an `Internal` error: nothing is ever returned
    /// that this key did not seal for `context`.
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let failed = || {
            Error::internal(
                format!(
                    "the S3 secret of {context} cannot be unsealed: it was sealed with another \
                     sealing key, or altered"
                ),
                None,
            )
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed.as_bytes())
            .map_err(|_| failed())?;
        if bytes.len() < NONCE_BYTES {
            return Err(failed());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| failed())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

fn io_error(what: &str, path: &Path, e: io::Error) -> Error {
    Error::internal(
        format!("{what} {}", path.display()),
        Some(Box::new(e) as Source),
    )
}

/// Reads and checks the key file; `None` if it does not exist.
fn read_key(path: &Path) -> Result<Option<SealingKey>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot open the sealing key file", path, e)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| io_error("cannot stat the sealing key file", path, e))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(Error::invalid(
            "sealing_key_file",
            format!(
                "{} is accessible by group or others; make it owner-only (chmod 600)",
                path.display()
            ),
        ));
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| io_error("cannot read the sealing key file", path, e))?;
    let not_a_key = || {
        Error::internal(
            format!(
                "{} is not a sealing key file (one line of base64url, 32 bytes)",
                path.display()
            ),
            None,
        )
    };
    let decoded = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(text.trim().as_bytes())
            .map_err(|_| not_a_key())?,
    );
    let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| not_a_key())?;
    Ok(Some(SealingKey::from_bytes(bytes)))
}

/// Creates the key file only if it does not exist (a complete owner-only temporary file, then a
/// hard link, so no reader ever sees it half written); returns whether this call created it.
fn create_file(path: &Path, key: &SealingKey) -> Result<bool> {
    let mut text = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.0.as_ref()));
    text.push('\n');
    let suffix = URL_SAFE_NO_PAD.encode(random_bytes::<9>()?);
    let temporary = path.with_file_name(format!(".{SEALING_KEY_FILE_NAME}.{suffix}.tmp"));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("cannot write the sealing key file", path, e));
    }
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_error("cannot sync the key directory", dir, e))?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("cannot create the sealing key file", path, e)),
    }
}
