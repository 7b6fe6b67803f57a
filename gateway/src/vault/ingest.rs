//! `p8fs ingest PATH...`: uploads files and directories to a bucket through the REST API, where
//! the server's ingest worker extracts, chunks and embeds them for `p8fs search`.
//!
//! Directories are walked recursively in name order; hidden entries (names starting with `.`),
//! symbolic links and special files inside them are skipped. A file's key is its path relative
//! to the directory named on the command line (`/`-separated), or its file name for a file
//! named directly, with `--prefix` prepended as given. The bucket is created first.
//!
//! Re-running is cheap: the bucket is listed once under the prefix, and a file whose size and
//! MD5 equal the stored object's size and ETag (the hex MD5 of a single upload) is not sent
//! again, so after an interruption only what is missing goes up. Files are streamed from disk,
//! never read whole into memory. Progress (files and bytes) is drawn on stderr when it is a
//! terminal, else one line per file is printed. With `--wait` it then polls each object's index
//! status (`GET /v1/index/{bucket}/{key}`) until none is pending and lists the failed ones with
//! their reasons. The command fails if an upload failed, or with `--wait` if an object failed
//! indexing.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Bytes, Frame, SizeHint};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::io::{AsyncRead, ReadBuf};

use super::{Remote, ServerArgs, checked};

/// How often the progress line is redrawn.
const DRAW_INTERVAL: Duration = Duration::from_millis(100);
/// How long to wait between two rounds of index status requests.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read from a file per frame of an upload.
const FRAME_BYTES: usize = 64 * 1024;

/// `p8fs ingest`: upload files for search by meaning.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Files and directories to upload (directories recursively; hidden entries and symbolic
    /// links inside them are skipped).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The bucket to upload into (created if missing).
    #[arg(long, default_value = "files", value_name = "NAME")]
    pub bucket: String,
    /// Prepended to every key as given, e.g. `notes/`.
    #[arg(long, default_value = "", value_name = "P")]
    pub prefix: String,
    /// Then wait until the server has indexed every object, and list those it could not.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub wait_timeout: Duration,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
}

/// The files under `paths`, keys prefixed with `prefix`, in key order; also how many entries
/// were skipped (hidden, symbolic links, special files).
pub fn collect(paths: &[PathBuf], prefix: &str) -> Result<(Vec<LocalFile>, usize), String> {
    let mut files: BTreeMap<String, LocalFile> = BTreeMap::new();
    let mut skipped = 0;
    for path in paths {
        let metadata =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut found = Vec::new();
        if metadata.is_dir() {
            walk(path, &mut Vec::new(), &mut found, &mut skipped)?;
        } else if metadata.is_file() {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{} has no UTF-8 file name for a key", path.display()))?;
            found.push((name.to_owned(), path.clone(), metadata.len()));
        } else {
            return Err(format!(
                "{} is neither a file nor a directory",
                path.display()
            ));
        }
        for (relative, path, size) in found {
            let key = format!("{prefix}{relative}");
            if let Some(earlier) = files.get(&key) {
                return Err(format!(
                    "{} and {} would both be stored as {key}",
                    earlier.path.display(),
                    path.display()
                ));
            }
            files.insert(key.clone(), LocalFile { path, key, size });
        }
    }
    Ok((files.into_values().collect(), skipped))
}

/// Adds the regular files under `dir` (named by `relative` from the walk's root) to `found`.
fn walk(
    dir: &Path,
    relative: &mut Vec<String>,
    found: &mut Vec<(String, PathBuf, u64)>,
    skipped: &mut usize,
) -> Result<(), String> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(format!(
                "{} has no UTF-8 file name for a key",
                path.display()
            ));
        };
        if name.starts_with('.') {
            *skipped += 1;
            continue;
        }
        // The entry itself, not what a symbolic link points to.
        let kind = entry
            .file_type()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if kind.is_dir() {
            relative.push(name);
            walk(&path, relative, found, skipped)?;
            relative.pop();
        } else if kind.is_file() {
            let size = entry
                .metadata()
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .len();
            let mut key = relative.join("/");
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&name);
            found.push((key, path, size));
        } else {
            *skipped += 1;
        }
    }
    Ok(())
}

/// The `Content-Type` sent for a file, from its extension.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "md" | "markdown" => "text/markdown",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// The hex MD5 of the file at `path`.
fn file_md5(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// What the server stores at a key.
#[derive(Debug, Clone, Deserialize)]
struct Stored {
    key: String,
    size: u64,
    etag: String,
}

#[derive(Debug, Deserialize)]
struct ObjectPage {
    objects: Vec<Stored>,
    #[serde(default)]
    next: Option<String>,
}

/// An object's index status.
#[derive(Debug, Clone, Deserialize)]
struct IndexStatus {
    state: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// An upload's body: the first `remaining` bytes of a file, read as they are sent, counted
/// into `sent`.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    sent: Arc<AtomicU64>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(FRAME_BYTES)
            .min(FRAME_BYTES);
        let mut buffer = vec![0u8; want];
        let mut read = ReadBuf::new(&mut buffer);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was being uploaded",
                    ))));
                }
                buffer.truncate(n);
                this.remaining -= n as u64;
                this.sent.fetch_add(n as u64, Ordering::Relaxed);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buffer)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Progress on stderr: a redrawn line on a terminal, else one line per event.
struct Progress {
    terminal: bool,
    files_total: usize,
    bytes_total: u64,
    files_done: usize,
    bytes_done: u64,
    /// Bytes of the file being sent.
    current: Arc<AtomicU64>,
    /// The text of the last status line (without a terminal: printed only when it changes).
    last: String,
}

impl Progress {
    fn new(files: &[LocalFile]) -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            files_total: files.len(),
            bytes_total: files.iter().map(|f| f.size).sum(),
            files_done: 0,
            bytes_done: 0,
            current: Arc::new(AtomicU64::new(0)),
            last: String::new(),
        }
    }

    /// Redraws the upload line (on a terminal only).
    fn draw(&mut self) {
        if !self.terminal {
            return;
        }
        let bytes = self.bytes_done + self.current.load(Ordering::Relaxed);
        let percent = (bytes * 100).checked_div(self.bytes_total).unwrap_or(100);
        let line = format!(
            "uploading: {}/{} files, {} of {} ({percent}%)",
            self.files_done,
            self.files_total,
            human_bytes(bytes),
            human_bytes(self.bytes_total)
        );
        self.status(line);
    }

    /// Shows a status line: redrawn in place on a terminal, printed when it changes otherwise.
    fn status(&mut self, line: String) {
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if line != self.last {
            eprintln!("{line}");
        }
        self.last = line;
    }

    /// A file is finished.
    fn file_done(&mut self, size: u64) {
        self.files_done += 1;
        self.bytes_done += size;
        self.current.store(0, Ordering::Relaxed);
        self.draw();
    }

    /// Prints a line of its own (above the status line on a terminal).
    fn say(&mut self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{text}\n{}", self.last);
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{text}");
        }
    }

    /// Ends the status line.
    fn finish(&mut self) {
        if self.terminal && !self.last.is_empty() {
            eprintln!();
        }
        self.last.clear();
    }
}

/// `1.5 MiB`-style sizes.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Why an upload did not happen.
enum UploadError {
    /// This file only.
    File(String),
    /// Every further request would fail the same way (no access, bucket gone).
    Fatal(String),
}

/// `p8fs ingest`.
pub fn ingest(args: IngestArgs) -> Result<(), String> {
    super::runtime()?.block_on(async {
        let mut remote = super::remote_from_env(&args.server).await?;
        ingest_with(&mut remote, &args).await
    })
}

/// `p8fs ingest` against `remote`.
pub async fn ingest_with(remote: &mut Remote, args: &IngestArgs) -> Result<(), String> {
    let (files, skipped) = collect(&args.paths, &args.prefix)?;
    let bucket = args.bucket.as_str();
    let created = remote
        .http
        .put(remote.url(&["v1", "objects", bucket]))
        .bearer_auth(&remote.token)
        .timeout(super::REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| super::unreachable(&remote.url(&["v1", "objects", bucket]), &e))?;
    checked(created)
        .await
        .map_err(|e| format!("cannot create the bucket {bucket}: {e}"))?;
    let stored = list(remote, bucket, &args.prefix).await?;

    let mut progress = Progress::new(&files);
    if skipped > 0 {
        progress.say(&format!(
            "skipping {skipped} hidden entr{} or symbolic link{}",
            if skipped == 1 { "y" } else { "ies" },
            if skipped == 1 { "" } else { "s" }
        ));
    }
    let mut uploaded = 0usize;
    let mut uploaded_bytes = 0u64;
    let mut unchanged = 0usize;
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    progress.draw();
    for file in &files {
        if let Some(object) = stored.get(&file.key)
            && object.size == file.size
            && file_md5(&file.path).is_ok_and(|md5| md5 == object.etag)
        {
            unchanged += 1;
            present.push(file.key.clone());
            if !progress.terminal {
                progress.say(&format!("unchanged {}", file.key));
            }
            progress.file_done(file.size);
            continue;
        }
        if let Err(e) = remote.renew().await {
            progress.finish();
            return Err(e);
        }
        match upload(remote, bucket, file, &mut progress).await {
            Ok(()) => {
                uploaded += 1;
                uploaded_bytes += file.size;
                present.push(file.key.clone());
                if !progress.terminal {
                    progress.say(&format!("uploaded {} ({} bytes)", file.key, file.size));
                }
            }
            Err(UploadError::File(reason)) => {
                progress.say(&format!("failed {}: {reason}", file.key));
                failed.push((file.key.clone(), reason));
            }
            Err(UploadError::Fatal(reason)) => {
                progress.finish();
                return Err(format!("cannot upload {}: {reason}", file.key));
            }
        }
        progress.file_done(file.size);
    }
    progress.finish();
    eprintln!(
        "uploaded {uploaded} file{} ({}), {unchanged} unchanged, {} failed",
        if uploaded == 1 { "" } else { "s" },
        human_bytes(uploaded_bytes),
        failed.len()
    );

    let mut not_indexed: Vec<(String, String)> = Vec::new();
    if args.wait && !present.is_empty() {
        not_indexed = wait(remote, bucket, &present, args.wait_timeout, &mut progress).await?;
        for (key, reason) in &not_indexed {
            eprintln!("not indexed: {key}: {reason}");
        }
    }
    match (failed.len(), not_indexed.len()) {
        (0, 0) => Ok(()),
        (uploads, 0) => Err(format!("{uploads} of {} uploads failed", files.len())),
        (0, objects) => Err(format!(
            "{objects} of {} objects failed indexing",
            present.len()
        )),
        (uploads, objects) => Err(format!(
            "{uploads} of {} uploads failed, and {objects} objects failed indexing",
            files.len()
        )),
    }
}

/// Every object under `prefix`, by key.
async fn list(
    remote: &Remote,
    bucket: &str,
    prefix: &str,
) -> Result<BTreeMap<String, Stored>, String> {
    let mut stored = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = remote.url(&["v1", "objects", bucket]);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", "1000");
            if !prefix.is_empty() {
                query.append_pair("prefix", prefix);
            }
            if let Some(cursor) = &cursor {
                query.append_pair("cursor", cursor);
            }
        }
        let page: ObjectPage = remote
            .get_json(url)
            .await
            .map_err(|e| format!("cannot list the bucket {bucket}: {e}"))?
            .ok_or_else(|| format!("the bucket {bucket} is gone"))?;
        for object in page.objects {
            stored.insert(object.key.clone(), object);
        }
        match page.next {
            Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
            _ => return Ok(stored),
        }
    }
}

/// Sends `file`, redrawing the progress while it goes.
async fn upload(
    remote: &Remote,
    bucket: &str,
    file: &LocalFile,
    progress: &mut Progress,
) -> Result<(), UploadError> {
    let handle = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| UploadError::File(format!("cannot open {}: {e}", file.path.display())))?;
    let body = FileBody {
        file: handle,
        remaining: file.size,
        sent: progress.current.clone(),
    };
    let url = remote.url(&["v1", "objects", bucket, &file.key]);
    let send = remote
        .http
        .put(url.clone())
        .bearer_auth(&remote.token)
        .header(reqwest::header::CONTENT_TYPE, content_type(&file.path))
        .header(reqwest::header::CONTENT_LENGTH, file.size)
        .body(reqwest::Body::wrap(body))
        .send();
    tokio::pin!(send);
    let mut tick = tokio::time::interval(DRAW_INTERVAL);
    let response = loop {
        tokio::select! {
            response = &mut send => break response,
            _ = tick.tick() => progress.draw(),
        }
    };
    let response = response.map_err(|e| UploadError::File(super::unreachable(&url, &e)))?;
    let status = response.status();
    match checked(response).await {
        Ok(_) => Ok(()),
        Err(reason)
            if matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            ) =>
        {
            Err(UploadError::Fatal(reason))
        }
        Err(reason) => Err(UploadError::File(reason)),
    }
}

/// Polls the index status of `keys` until none is pending or `timeout` passes; returns the
/// objects that failed, with their reasons.
async fn wait(
    remote: &mut Remote,
    bucket: &str,
    keys: &[String],
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Vec<(String, String)>, String> {
    let started = Instant::now();
    let mut pending: Vec<&String> = keys.iter().collect();
    let mut indexed = 0usize;
    let mut failed: Vec<(String, String)> = Vec::new();
    loop {
        remote.renew().await?;
        let mut still = Vec::new();
        for key in pending {
            let url = remote.url(&["v1", "index", bucket, key]);
            let status: Option<IndexStatus> = remote
                .get_json(url)
                .await
                .map_err(|e| format!("cannot read the index status of {key}: {e}"))?;
            match status {
                None => failed.push((key.clone(), "the object is no longer stored".into())),
                Some(status) => match status.state.as_str() {
                    "indexed" => indexed += 1,
                    "failed" => {
                        let reason = match (status.code, status.reason) {
                            (Some(code), Some(reason)) => format!("{code}: {reason}"),
                            (Some(text), None) | (None, Some(text)) => text,
                            (None, None) => "no reason given".into(),
                        };
                        failed.push((key.clone(), reason));
                    }
                    _ => still.push(key),
                },
            }
        }
        pending = still;
        progress.status(format!(
            "indexing: {indexed} indexed, {} failed, {} pending",
            failed.len(),
            pending.len()
        ));
        if pending.is_empty() {
            progress.finish();
            return Ok(failed);
        }
        if started.elapsed() >= timeout {
            progress.finish();
            return Err(format!(
                "{} objects are still pending after {}: the server may not index uploads \
                 (embeddings.ingest) or is busy; run again with --wait to keep waiting",
                pending.len(),
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_paths_without_hidden_entries_or_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("docs");
        std::fs::create_dir_all(root.join("nested/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("a.md"), "a").unwrap();
        std::fs::write(root.join("nested/b.txt"), "bb").unwrap();
        std::fs::write(root.join("nested/deeper/c.json"), "{}").unwrap();
        std::fs::write(root.join(".hidden.md"), "h").unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("a.md"), root.join("link.md")).unwrap();
        let single = dir.path().join("single.pdf");
        std::fs::write(&single, "%PDF").unwrap();

        let (files, skipped) = collect(&[root.clone(), single.clone()], "in/").unwrap();
        let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "in/a.md",
                "in/nested/b.txt",
                "in/nested/deeper/c.json",
                "in/single.pdf"
            ]
        );
        assert_eq!(files[1].size, 2);
        assert_eq!(skipped, 3);

        let error = collect(&[root.join("a.md"), root.join("a.md")], "").unwrap_err();
        assert!(error.contains("would both be stored as a.md"), "{error}");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type(Path::new("a/B.MD")), "text/markdown");
        assert_eq!(content_type(Path::new("x.txt")), "text/plain");
        assert_eq!(content_type(Path::new("x.htm")), "text/html");
        assert_eq!(content_type(Path::new("x.pdf")), "application/pdf");
        assert_eq!(content_type(Path::new("x.json")), "application/json");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 << 20), "100.0 MiB");
    }

    #[tokio::test]
    async fn a_file_body_streams_the_file_and_counts_it() {
        use http_body_util::BodyExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            file_md5(&path).unwrap(),
            format!("{:x}", Md5::digest(&data))
        );
        let sent = Arc::new(AtomicU64::new(0));
        let body = FileBody {
            file: tokio::fs::File::open(&path).await.unwrap(),
            remaining: data.len() as u64,
            sent: sent.clone(),
        };
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(data.len() as u64)
        );
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected.as_ref(), data.as_slice());
        assert_eq!(sent.load(Ordering::Relaxed), data.len() as u64);
    }
}
