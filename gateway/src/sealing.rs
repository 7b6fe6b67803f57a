//! Encryption at rest in the gateway: the master keys (an owner-only key file beside the signing
//! keys, created on first start, or `P8FS_MASTER_KEY`), the sealing layer put in front of the
//! configured backend, master-key rotation (`p8fs keys rotate-master`) and dropping the retired
//! keys once nothing needs them (`p8fs keys prune-master`).
//!
//! The key file holds one master key per line (base64url of 32 bytes); the first is current,
//! the others are retired keys kept so that what they wrapped stays readable, until
//! `p8fs keys prune-master` finds every data key wrapped by the current one and drops them. Rotation writes a
//! new file (a complete owner-only temporary file renamed over the old one) with a new key first
//! and re-wraps every data key under it, online. `encryption.master_key` (`P8FS_MASTER_KEY`)
//! holds the same list, comma separated; with it, rotation re-wraps under its first key (the
//! operator puts the new key first and restarts).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use p8fs_core::sealed::{MasterKey, MasterKeys, MasterSource, Rewrapped, Sealed};
use p8fs_core::{Backend, Error};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::config::Config;

/// The environment variable that holds the master keys instead of the key file.
pub const MASTER_KEY_ENV: &str = "P8FS_MASTER_KEY";
/// The key file's name inside the signing-key directory.
pub const MASTER_KEY_FILE_NAME: &str = "master.keys";

/// Where the master keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// The key file at this path.
    File(PathBuf),
    /// `encryption.master_key` ([`MASTER_KEY_ENV`]): the keys as configured.
    Configured(MasterKeys),
}

/// The sealing layer of a running process and where its master keys come from.
#[derive(Clone)]
pub struct Encryption {
    pub sealed: Arc<Sealed>,
    pub source: KeySource,
}

/// The key file of `config`: `encryption.key_file`, or `master.keys` beside the signing keys.
pub fn key_file(config: &Config) -> PathBuf {
    config
        .encryption
        .key_file
        .clone()
        .unwrap_or_else(|| crate::server::keys_dir(config).join(MASTER_KEY_FILE_NAME))
}

/// The master keys of `config`, and where they come from.
pub fn master_keys(config: &Config) -> Result<(MasterKeys, KeySource), String> {
    if let Some(text) = &config.encryption.master_key {
        let keys = parse_list(text.expose())
            .map_err(|e| format!("encryption.master_key ({MASTER_KEY_ENV}): {e}"))?;
        return Ok((keys.clone(), KeySource::Configured(keys)));
    }
    let path = key_file(config);
    let keys = load_or_create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((keys, KeySource::File(path)))
}

fn parse_list(text: &str) -> Result<MasterKeys, Error> {
    let mut keys = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(MasterKey::parse);
    let current = keys
        .next()
        .ok_or_else(|| Error::invalid("master_key", "holds no key"))??;
    let retired = keys.collect::<Result<Vec<_>, _>>()?;
    Ok(MasterKeys::new(current, retired))
}

/// Puts the sealing layer in front of `inner` when `encryption.enabled` (the default); with it
/// off, refuses a store that was sealed before.
pub async fn seal(
    config: &Config,
    inner: Arc<dyn Backend>,
) -> Result<(Arc<dyn Backend>, Option<Encryption>), String> {
    if !config.encryption.enabled {
        let sealed = Sealed::since(inner.as_ref())
            .await
            .map_err(|e| format!("cannot read the store's encryption marker: {e}"))?;
        if sealed.is_some() {
            return Err(
                "the store is encrypted; it cannot be opened with encryption.enabled = false"
                    .to_owned(),
            );
        }
        return Ok((inner, None));
    }
    let (keys, source) = master_keys(config)?;
    let reload: Option<MasterSource> = match &source {
        KeySource::File(path) => {
            let path = path.clone();
            Some(Arc::new(move || {
                read_keys(&path)?
                    .ok_or_else(|| Error::internal(format!("{} vanished", path.display()), None))
            }))
        }
        KeySource::Configured(_) => None,
    };
    let sealed = Arc::new(
        Sealed::open(inner, keys, reload)
            .await
            .map_err(|e| format!("cannot open the encryption layer: {e}"))?,
    );
    let backend: Arc<dyn Backend> = sealed.clone();
    Ok((backend, Some(Encryption { sealed, source })))
}

/// Rotates the master key: with a key file, a new key becomes current (the old ones stay,
/// retired) and every data key is re-wrapped under it; with `encryption.master_key`, every data
/// key is re-wrapped under its first key. Readers and writers go on meanwhile.
pub async fn rotate(encryption: &Encryption) -> Result<(String, Rewrapped), String> {
    match &encryption.source {
        KeySource::File(path) => {
            let old = read_keys(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .ok_or_else(|| format!("{} vanished", path.display()))?;
            let new = MasterKey::generate().map_err(|e| e.to_string())?;
            let keys = MasterKeys::new(new, old.all().iter().cloned());
            write_keys(path, &keys).map_err(|e| format!("{}: {e}", path.display()))?;
            let done = encryption
                .sealed
                .rotate_master(keys.clone())
                .await
                .map_err(|e| format!("re-wrapping the data keys: {e}"))?;
            Ok((keys.current().id().to_owned(), done))
        }
        KeySource::Configured(keys) => {
            let done = encryption
                .sealed
                .rotate_master(keys.clone())
                .await
                .map_err(|e| format!("re-wrapping the data keys: {e}"))?;
            Ok((keys.current().id().to_owned(), done))
        }
    }
}

/// Drops the retired master keys once every data key is wrapped by the current one (see
/// [`Sealed::prune_masters`]): with a key file, it is rewritten holding the current key alone;
/// with `encryption.master_key` nothing can be rewritten here, and the reply names the keys the
/// operator may now remove from it.
pub async fn prune(encryption: &Encryption) -> Result<Value, String> {
    let failed = |e: Error| format!("dropping the retired master keys: {e}");
    match &encryption.source {
        KeySource::File(path) => {
            let pruned = encryption
                .sealed
                .prune_masters(|current| async move {
                    write_keys(path, &current)
                        .map_err(|e| Error::internal(format!("{}: {e}", path.display()), None))
                })
                .await
                .map_err(failed)?;
            Ok(json!({
                "master_key_id": pruned.current,
                "data_keys": pruned.data_keys,
                "rewrapped": pruned.rewrapped,
                "dropped": pruned.dropped,
            }))
        }
        KeySource::Configured(_) => {
            let pruned = encryption
                .sealed
                .prune_masters(|_| async { Ok(()) })
                .await
                .map_err(failed)?;
            Ok(json!({
                "master_key_id": pruned.current,
                "data_keys": pruned.data_keys,
                "rewrapped": pruned.rewrapped,
                "dropped": [],
                "unneeded": pruned.dropped,
                "note": format!(
                    "no data key needs the unneeded keys: remove them from encryption.master_key \
                     ({MASTER_KEY_ENV})"
                ),
            }))
        }
    }
}

/// Opens the key file, creating it with one new key (mode 0600, its directory 0700) if there is
/// none.
fn load_or_create(path: &Path) -> Result<MasterKeys, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error("cannot create the key directory", e))?;
    }
    if let Some(keys) = read_keys(path)? {
        return Ok(keys);
    }
    let keys = MasterKeys::new(MasterKey::generate()?, []);
    let temporary = write_temporary(path, &keys)?;
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(keys),
        // Another process created it first: use its keys.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_keys(path)?
            .ok_or_else(|| Error::internal(format!("{} vanished", path.display()), None)),
        Err(e) => Err(io_error("cannot create the master key file", e)),
    }
}

/// Replaces the key file with `keys`.
fn write_keys(path: &Path, keys: &MasterKeys) -> Result<(), Error> {
    let temporary = write_temporary(path, keys)?;
    fs::rename(&temporary, path).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io_error("cannot replace the master key file", e)
    })
}

/// A complete owner-only file of `keys` beside `path`.
fn write_temporary(path: &Path, keys: &MasterKeys) -> Result<PathBuf, Error> {
    let mut text = Zeroizing::new(String::new());
    for key in keys.all() {
        text.push_str(&key.to_text());
        text.push('\n');
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = MasterKey::generate()?.id().to_owned();
    let temporary = path.with_file_name(format!(".{name}.{suffix}.tmp"));
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
        return Err(io_error("cannot write the master key file", e));
    }
    Ok(temporary)
}

/// Reads and checks the key file; `None` if it does not exist.
fn read_keys(path: &Path) -> Result<Option<MasterKeys>, Error> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot open the master key file", e)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| io_error("cannot stat the master key file", e))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(Error::invalid(
            "encryption.key_file",
            format!(
                "{} is accessible by group or others; make it owner-only (chmod 600)",
                path.display()
            ),
        ));
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| io_error("cannot read the master key file", e))?;
    parse_list(&text).map(Some)
}

fn io_error(what: &str, e: io::Error) -> Error {
    Error::internal(what.to_owned(), Some(p8fs_core::error::Source::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_owner_only_and_rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(MASTER_KEY_FILE_NAME);
        let first = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_or_create(&path).unwrap().current().id(),
            first.current().id(),
            "the same key on the next start"
        );
        let rotated = MasterKeys::new(MasterKey::generate().unwrap(), first.all().iter().cloned());
        write_keys(&path, &rotated).unwrap();
        let read = read_keys(&path).unwrap().unwrap();
        assert_eq!(read.current().id(), rotated.current().id());
        assert!(
            read.find(first.current().id()).is_some(),
            "the old key stays"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_keys(&path).is_err(), "a readable key file is refused");
        assert!(parse_list("").is_err());
        assert!(parse_list("not a key").is_err());
    }
}
