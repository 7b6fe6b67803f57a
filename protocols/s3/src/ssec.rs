//! SSE-C: server-side encryption with customer-provided keys, as AWS S3 does it. The client
//! sends an AES-256 key with every request (`x-amz-server-side-encryption-customer-algorithm:
//! AES256`, `...-customer-key` in base64, `...-customer-key-MD5`); the object is encrypted with
//! it here, before any byte reaches the object store, and the key is never stored.
//!
//! What is stored:
//! - in the object's attributes, [`ALGORITHM_HEADER`] (the mark every reader checks, see
//!   [`ObjectAttributes::client_held_key`]) and [`DIGEST_HEADER`]: `v1:<salt>:<mac>`, the HMAC-SHA256 of the key
//!   under a random 16-byte salt. The key is 256 uniformly random bits, so a slow password hash
//!   would add nothing against guessing (2^256 candidates) and cost every request; the salt
//!   makes digests of one key differ between objects, so they neither link objects nor allow
//!   precomputation. It is compared in constant time ([`subtle`]).
//! - in each blob (a single PUT's bytes or one upload part) a [`HEADER_BYTES`] header (magic,
//!   version, part number, a random 32-byte salt and a random 8-byte nonce prefix) followed by
//!   chunks of [`PLAIN_CHUNK`] plaintext bytes sealed with AES-256-GCM (each chunk
//!   ciphertext + 16-byte tag; the last may be shorter, and a blob always has at least one
//!   chunk, so an empty one is a lone tag).
//!
//! Each blob's chunk key is HKDF-SHA256(customer key, blob salt), so no two blobs share a key
//! (the salt is fresh from the OS's generator for every blob, part re-uploads included). Under
//! that key the nonce is the blob's random prefix followed by the chunk index (a `u32`: a part
//! holds at most 5 GiB = 81,920 chunks), so a nonce never repeats: within a blob indexes are
//! distinct, and across blobs the keys differ. The associated data of every chunk binds the
//! bucket and object key the object was written under, the part number, the chunk index and
//! whether it is the blob's last chunk, so a chunk moved within or between blobs or objects,
//! a reordered part, or a blob cut at a chunk boundary fails to decrypt.
//!
//! Sizes: the ciphertext size of a blob is a function of its plaintext size ([`sealed_size`])
//! and back ([`plain_size`]), so object records keep the stored sizes (what backends count)
//! and every size shown to a client is recomputed as plaintext. The ETag of an SSE-C object is
//! the MD5 of its ciphertext (as in AWS, not the MD5 of the plaintext).

use std::collections::VecDeque;
use std::sync::Arc;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use md5::Digest as _;
use p8fs_core::object::chunk_reads;
use p8fs_core::{Backend, ObjectAttributes, ObjectMeta, Segment, TenantId};
use s3s::{S3Error, S3ErrorCode, S3Result, StdError};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

/// The stored attribute marking an SSE-C object (its value is the algorithm, `AES256`): core's
/// mark, which every reader checks with [`ObjectAttributes::client_held_key`].
pub use p8fs_core::object::CLIENT_KEY_HEADER as ALGORITHM_HEADER;
/// The stored attribute holding the salted digest of the key.
pub const DIGEST_HEADER: &str = "x-p8fs-sse-c-key-digest";
/// The one algorithm of SSE-C.
pub(crate) const ALGORITHM: &str = "AES256";

/// Plaintext bytes per sealed chunk.
pub(crate) const PLAIN_CHUNK: u64 = 64 * 1024;
/// The AES-GCM tag.
const TAG: u64 = 16;
/// A sealed chunk, except perhaps the last of a blob.
const SEALED_CHUNK: u64 = PLAIN_CHUNK + TAG;
/// The blob header: magic and version (8), part number (4), salt (32), nonce prefix (8),
/// reserved (4).
pub(crate) const HEADER_BYTES: u64 = 56;
const MAGIC: &[u8; 8] = b"P8SSEC\x00\x01";
const KDF_INFO: &[u8] = b"p8fs sse-c chunk key v1";
const AD_LABEL: &[u8] = b"p8fs sse-c v1\x00";

/// A customer key from a request, checked against its MD5.
#[derive(Clone)]
pub(crate) struct CustomerKey {
    key: [u8; 32],
    /// The key's MD5 in base64, echoed in responses.
    pub(crate) md5: String,
}

impl std::fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerKey(..)")
    }
}

/// Which request headers carry the key: an object's own, or a copy's source.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Object,
    CopySource,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Object => "x-amz-server-side-encryption-customer",
            Role::CopySource => "x-amz-copy-source-server-side-encryption-customer",
        }
    }
}

fn invalid(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, message)
}

/// The customer key of a request, `None` when it carries none of the three headers. As AWS:
/// `InvalidEncryptionAlgorithmError` for an algorithm other than `AES256`, `InvalidArgument`
/// for a missing header, a key that is not 32 bytes of base64, or an MD5 that does not match.
pub(crate) fn customer_key(
    role: Role,
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> S3Result<Option<CustomerKey>> {
    if algorithm.is_none() && key.is_none() && key_md5.is_none() {
        return Ok(None);
    }
    let prefix = role.prefix();
    let Some(algorithm) = algorithm else {
        return Err(invalid(format!(
            "Requests specifying Server Side Encryption with Customer provided keys must provide \
             a valid encryption algorithm ({prefix}-algorithm)."
        )));
    };
    if algorithm != ALGORITHM {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidEncryptionAlgorithmError,
            format!(
                "The encryption request you specified is not valid. Supported value: {ALGORITHM} \
                 ({prefix}-algorithm)."
            ),
        ));
    }
    let Some(key) = key else {
        return Err(invalid(format!(
            "Requests specifying Server Side Encryption with Customer provided keys must provide \
             an appropriate secret key ({prefix}-key)."
        )));
    };
    let Some(key_md5) = key_md5 else {
        return Err(invalid(format!(
            "Requests specifying Server Side Encryption with Customer provided keys must provide \
             the client calculated MD5 of the secret key ({prefix}-key-MD5)."
        )));
    };
    let key: [u8; 32] = STANDARD
        .decode(key.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            invalid(format!(
                "The secret key was invalid for the specified algorithm ({prefix}-key)."
            ))
        })?;
    let computed = md5::Md5::digest(key);
    let given = STANDARD.decode(key_md5.trim()).unwrap_or_default();
    if !bool::from(given.as_slice().ct_eq(computed.as_slice())) {
        return Err(invalid(format!(
            "The calculated MD5 hash of the key did not match the hash that was provided \
             ({prefix}-key-MD5)."
        )));
    }
    Ok(Some(CustomerKey {
        key,
        md5: STANDARD.encode(computed),
    }))
}

fn random<const N: usize>() -> S3Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|error| {
        tracing::warn!(%error, "the operating system's random generator failed");
        S3Error::new(S3ErrorCode::InternalError)
    })?;
    Ok(bytes)
}

fn key_mac(salt: &[u8], key: &[u8; 32]) -> S3Result<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt)
        .map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
    mac.update(b"p8fs sse-c key digest v1");
    mac.update(key);
    Ok(mac.finalize().into_bytes().into())
}

/// Marks `attributes` as encrypted with `key`: the algorithm and a fresh salted digest.
pub(crate) fn mark(attributes: &mut ObjectAttributes, key: &CustomerKey) -> S3Result<()> {
    let salt = random::<16>()?;
    let mac = key_mac(&salt, &key.key)?;
    attributes
        .headers
        .insert(ALGORITHM_HEADER.to_owned(), ALGORITHM.to_owned());
    attributes.headers.insert(
        DIGEST_HEADER.to_owned(),
        format!("v1:{}:{}", STANDARD.encode(salt), STANDARD.encode(mac)),
    );
    Ok(())
}

/// The error of a read of an SSE-C object without its key (AWS: 400 `InvalidRequest`).
pub(crate) fn key_required() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidRequest,
        "The object was stored using a form of Server Side Encryption. The correct parameters \
         must be provided to retrieve the object.",
    )
}

/// Checks a request's key against what `attributes` say:
/// - an SSE-C object without a key: 400 `InvalidRequest` ([`key_required`]);
/// - an SSE-C object with another key: 403 `AccessDenied`;
/// - a key for an object that is not SSE-C: 400 `InvalidRequest`.
///
/// Returns the key when the object is SSE-C (and the key is right), `None` when it is not.
pub(crate) fn check(
    attributes: &ObjectAttributes,
    key: Option<&CustomerKey>,
    role: Role,
) -> S3Result<Option<CustomerKey>> {
    if !attributes.client_held_key() {
        if key.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                match role {
                    Role::Object => "The encryption parameters are not applicable to this object.",
                    Role::CopySource => {
                        "The encryption parameters are not applicable to this copy source."
                    }
                },
            ));
        }
        return Ok(None);
    }
    let Some(key) = key else {
        return Err(match role {
            Role::Object => key_required(),
            Role::CopySource => S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "The source object was stored using a form of Server Side Encryption. The \
                 correct parameters must be provided to retrieve the object \
                 (x-amz-copy-source-server-side-encryption-customer-*).",
            ),
        });
    };
    let stored = attributes.headers.get(DIGEST_HEADER).and_then(|value| {
        let mut fields = value.split(':');
        match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some("v1"), Some(salt), Some(mac), None) => {
                Some((STANDARD.decode(salt).ok()?, STANDARD.decode(mac).ok()?))
            }
            _ => None,
        }
    });
    let Some((salt, mac)) = stored else {
        tracing::warn!("an SSE-C object's key digest is missing or malformed");
        return Err(S3Error::new(S3ErrorCode::InternalError));
    };
    let computed = key_mac(&salt, &key.key)?;
    if !bool::from(computed.as_slice().ct_eq(mac.as_slice())) {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "The provided encryption key does not match the key the object was stored with.",
        ));
    }
    Ok(Some(key.clone()))
}

/// Chunks of a blob holding `plain` bytes (at least one).
fn chunk_count(plain: u64) -> u64 {
    plain.div_ceil(PLAIN_CHUNK).max(1)
}

/// The stored size of a blob of `plain` plaintext bytes.
pub(crate) fn sealed_size(plain: u64) -> u64 {
    HEADER_BYTES + plain + TAG * chunk_count(plain)
}

/// The plaintext size of a stored blob of `sealed` bytes; `None` if no plaintext seals to it.
pub(crate) fn plain_size(sealed: u64) -> Option<u64> {
    let body = sealed.checked_sub(HEADER_BYTES)?;
    let chunks = body.div_ceil(SEALED_CHUNK).max(1);
    let plain = body.checked_sub(TAG * chunks)?;
    (sealed_size(plain) == sealed).then_some(plain)
}

/// The largest blob that seals `max_plain` plaintext bytes.
pub(crate) fn sealed_limit(max_plain: u64) -> u64 {
    sealed_size(max_plain)
}

/// An SSE-C object as clients see it: its size and segments in plaintext bytes.
pub(crate) fn plain_view(meta: &ObjectMeta) -> S3Result<ObjectMeta> {
    let mut view = meta.clone();
    for segment in &mut view.segments {
        segment.size = plain_size(segment.size).ok_or_else(|| {
            tracing::warn!("an SSE-C blob has a size no plaintext seals to");
            S3Error::new(S3ErrorCode::InternalError)
        })?;
    }
    view.size = view.segments.iter().map(|s| s.size).sum();
    Ok(view)
}

/// The plaintext size of a listed object: its stored size unless it is SSE-C.
pub(crate) fn listed_size(meta: &ObjectMeta) -> u64 {
    if !meta.client_held_key() {
        return meta.size;
    }
    meta.segments
        .iter()
        .map(|s| plain_size(s.size).unwrap_or(s.size))
        .sum()
}

/// Where an object's chunks belong: what the associated data binds.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) bucket: String,
    pub(crate) key: String,
}

fn associated_prefix(binding: &Binding, part: u32) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_LABEL.len() + 12 + binding.bucket.len() + binding.key.len());
    ad.extend_from_slice(AD_LABEL);
    for text in [&binding.bucket, &binding.key] {
        ad.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
        ad.extend_from_slice(text.as_bytes());
    }
    ad.extend_from_slice(&part.to_be_bytes());
    ad
}

/// The chunk cipher of one blob.
struct BlobCipher {
    cipher: Aes256Gcm,
    prefix: [u8; 8],
    associated: Vec<u8>,
}

impl BlobCipher {
    fn new(
        key: &CustomerKey,
        binding: &Binding,
        part: u32,
        salt: &[u8],
        prefix: [u8; 8],
    ) -> S3Result<Self> {
        let mut chunk_key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), &key.key)
            .expand(KDF_INFO, &mut chunk_key)
            .map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
        let cipher = Aes256Gcm::new_from_slice(&chunk_key)
            .map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
        Ok(Self {
            cipher,
            prefix,
            associated: associated_prefix(binding, part),
        })
    }

    fn nonce_and_ad(&self, index: u32, last: bool) -> ([u8; 12], Vec<u8>) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&self.prefix);
        nonce[8..].copy_from_slice(&index.to_be_bytes());
        let mut ad = Vec::with_capacity(self.associated.len() + 5);
        ad.extend_from_slice(&self.associated);
        ad.extend_from_slice(&index.to_be_bytes());
        ad.push(u8::from(last));
        (nonce, ad)
    }
}

/// Encrypts one blob as it streams: [`Sealer::header`] first, then what
/// [`Sealer::push`] and [`Sealer::finish`] append. Holds at most one chunk of plaintext.
pub(crate) struct Sealer {
    cipher: BlobCipher,
    header: [u8; HEADER_BYTES as usize],
    pending: Vec<u8>,
    index: u32,
    md5: md5::Md5,
}

impl Sealer {
    /// A sealer for part `part` (0 for a single PUT) of the object `binding` names.
    pub(crate) fn new(key: &CustomerKey, binding: &Binding, part: u32) -> S3Result<Self> {
        let salt = random::<32>()?;
        let prefix = random::<8>()?;
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&part.to_be_bytes());
        header[12..44].copy_from_slice(&salt);
        header[44..52].copy_from_slice(&prefix);
        Ok(Self {
            cipher: BlobCipher::new(key, binding, part, &salt, prefix)?,
            header,
            pending: Vec::with_capacity(PLAIN_CHUNK as usize + TAG as usize),
            index: 0,
            md5: md5::Md5::new(),
        })
    }

    /// The blob header, written before any chunk.
    pub(crate) fn header(&self) -> &[u8] {
        &self.header
    }

    fn seal(&mut self, last: bool, out: &mut Vec<u8>) -> S3Result<()> {
        let (nonce, ad) = self.cipher.nonce_and_ad(self.index, last);
        let mut chunk = std::mem::take(&mut self.pending);
        self.cipher
            .cipher
            .encrypt_in_place(Nonce::from_slice(&nonce), &ad, &mut chunk)
            .map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
        out.extend_from_slice(&chunk);
        chunk.clear();
        self.pending = chunk;
        self.index = self.index.checked_add(1).ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::EntityTooLarge, "the body is too large")
        })?;
        Ok(())
    }

    /// Takes plaintext, appending the chunks it completes to `out`. A full chunk is sealed only
    /// once more bytes follow, since the last chunk is sealed as last.
    pub(crate) fn push(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> S3Result<()> {
        self.md5.update(plain);
        while !plain.is_empty() {
            if self.pending.len() as u64 == PLAIN_CHUNK {
                self.seal(false, out)?;
            }
            let room = PLAIN_CHUNK as usize - self.pending.len();
            let take = room.min(plain.len());
            self.pending.extend_from_slice(&plain[..take]);
            plain = &plain[take..];
        }
        Ok(())
    }

    /// Seals the last chunk into `out` and returns the plaintext's MD5 (for `Content-MD5`).
    pub(crate) fn finish(mut self, out: &mut Vec<u8>) -> S3Result<[u8; 16]> {
        self.seal(true, out)?;
        Ok(self.md5.finalize().into())
    }
}

/// Opens the chunks of one stored blob.
struct Opener {
    cipher: BlobCipher,
    part: u32,
}

impl Opener {
    fn new(key: &CustomerKey, binding: &Binding, header: &[u8]) -> Result<Self, StdError> {
        if header.len() != HEADER_BYTES as usize || &header[..8] != MAGIC {
            return Err("an SSE-C blob has no valid header".into());
        }
        let mut part = [0u8; 4];
        part.copy_from_slice(&header[8..12]);
        let part = u32::from_be_bytes(part);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&header[44..52]);
        let cipher = BlobCipher::new(key, binding, part, &header[12..44], prefix)
            .map_err(|_| "the SSE-C chunk key could not be derived")?;
        Ok(Self { cipher, part })
    }

    fn open(&self, index: u32, last: bool, chunk: &mut Vec<u8>) -> Result<(), StdError> {
        let (nonce, ad) = self.cipher.nonce_and_ad(index, last);
        self.cipher
            .cipher
            .decrypt_in_place(Nonce::from_slice(&nonce), &ad, chunk)
            .map_err(|_| "an SSE-C chunk failed authentication (altered, moved or cut)".into())
    }
}

/// Reads stored bytes `start..end` of one blob, in order, into `out` (appending).
async fn read_stored(
    backend: &dyn Backend,
    tenant: &TenantId,
    blob: Segment,
    start: u64,
    end: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), StdError>,
) -> Result<(), StdError> {
    for read in chunk_reads(&[blob], start, end) {
        let chunk = backend.read_chunk(tenant, read.data, read.index).await?;
        let bytes = chunk
            .get(read.start..read.end)
            .ok_or("a stored chunk is shorter than its object says")?;
        each(bytes)?;
    }
    Ok(())
}

/// Plaintext bytes `start..end` of an SSE-C object whose plaintext segments are `segments`
/// (from [`plain_view`]), decrypted with `key`, sent piece by piece (at most one chunk each) to
/// `sender`. Reads only the chunks covering the range, and each covered blob's header.
pub(crate) async fn read_plain(
    backend: Arc<dyn Backend>,
    tenant: TenantId,
    segments: Vec<Segment>,
    key: CustomerKey,
    binding: Binding,
    (start, end): (u64, u64),
    sender: mpsc::Sender<Result<Bytes, StdError>>,
) {
    let result = async {
        let mut base = 0u64;
        let mut last_part: Option<u32> = None;
        for segment in segments {
            let (seg_start, seg_end) = (base, base + segment.size);
            base = seg_end;
            let (from, to) = (start.max(seg_start), end.min(seg_end));
            if from >= to {
                continue;
            }
            let (from, to) = (from - seg_start, to - seg_start);
            let blob = Segment {
                data: segment.data,
                size: sealed_size(segment.size),
            };
            let mut header = Vec::with_capacity(HEADER_BYTES as usize);
            read_stored(backend.as_ref(), &tenant, blob, 0, HEADER_BYTES, |b| {
                header.extend_from_slice(b);
                Ok(())
            })
            .await?;
            let opener = Opener::new(&key, &binding, &header)?;
            if last_part.is_some_and(|p| p >= opener.part) {
                return Err::<(), StdError>("the parts of an SSE-C object are out of order".into());
            }
            last_part = Some(opener.part);
            let chunks = chunk_count(segment.size);
            let first = from / PLAIN_CHUNK;
            let last = (to - 1) / PLAIN_CHUNK;
            let stored_from = HEADER_BYTES + first * SEALED_CHUNK;
            let stored_to = (HEADER_BYTES + (last + 1) * SEALED_CHUNK).min(blob.size);
            let mut index = first;
            let mut buffer: Vec<u8> = Vec::with_capacity(SEALED_CHUNK as usize);
            let mut ready: VecDeque<Bytes> = VecDeque::new();
            let mut reads = chunk_reads(&[blob], stored_from, stored_to).into_iter();
            loop {
                while let Some(piece) = ready.pop_front() {
                    if sender.send(Ok(piece)).await.is_err() {
                        return Ok(());
                    }
                }
                let Some(read) = reads.next() else { break };
                let stored = backend.read_chunk(&tenant, read.data, read.index).await?;
                let mut bytes = stored
                    .get(read.start..read.end)
                    .ok_or("a stored chunk is shorter than its object says")?;
                while !bytes.is_empty() {
                    let chunk_len = if index + 1 == chunks {
                        blob.size - HEADER_BYTES - index * SEALED_CHUNK
                    } else {
                        SEALED_CHUNK
                    };
                    let take = (chunk_len as usize - buffer.len()).min(bytes.len());
                    buffer.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if buffer.len() as u64 == chunk_len {
                        let idx = u32::try_from(index).map_err(|_| "too many SSE-C chunks")?;
                        opener.open(idx, index + 1 == chunks, &mut buffer)?;
                        let chunk_start = index * PLAIN_CHUNK;
                        let lo = from.saturating_sub(chunk_start) as usize;
                        let hi = ((to - chunk_start) as usize).min(buffer.len());
                        if lo < hi {
                            ready.push_back(Bytes::copy_from_slice(&buffer[lo..hi]));
                        }
                        buffer.clear();
                        index += 1;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "reading an SSE-C object failed");
        let _ = sender.send(Err(error)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CustomerKey {
        let raw = [7u8; 32];
        let md5 = STANDARD.encode(md5::Md5::digest(raw));
        customer_key(
            Role::Object,
            Some("AES256"),
            Some(&STANDARD.encode(raw)),
            Some(&md5),
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn sizes_round_trip() {
        for plain in [0, 1, 65_535, 65_536, 65_537, 131_072, 5 * 1024 * 1024 + 3] {
            assert_eq!(plain_size(sealed_size(plain)), Some(plain), "{plain}");
        }
        assert_eq!(sealed_size(0), HEADER_BYTES + TAG);
        assert_eq!(plain_size(HEADER_BYTES + 3), None);
        assert_eq!(plain_size(3), None);
    }

    #[test]
    fn headers_are_validated_as_aws_does() {
        let raw = [1u8; 32];
        let b64 = STANDARD.encode(raw);
        let md5 = STANDARD.encode(md5::Md5::digest(raw));
        assert!(
            customer_key(Role::Object, None, None, None)
                .unwrap()
                .is_none()
        );
        let code = |r: S3Result<Option<CustomerKey>>| r.unwrap_err().code().clone();
        assert_eq!(
            code(customer_key(
                Role::Object,
                Some("AES128"),
                Some(&b64),
                Some(&md5)
            )),
            S3ErrorCode::InvalidEncryptionAlgorithmError
        );
        assert_eq!(
            code(customer_key(Role::Object, Some("AES256"), None, Some(&md5))),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(customer_key(Role::Object, Some("AES256"), Some(&b64), None)),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(customer_key(Role::Object, None, Some(&b64), Some(&md5))),
            S3ErrorCode::InvalidArgument
        );
        let short = STANDARD.encode([1u8; 16]);
        assert_eq!(
            code(customer_key(
                Role::Object,
                Some("AES256"),
                Some(&short),
                Some(&md5)
            )),
            S3ErrorCode::InvalidArgument
        );
        let other = STANDARD.encode(md5::Md5::digest([2u8; 32]));
        assert_eq!(
            code(customer_key(
                Role::Object,
                Some("AES256"),
                Some(&b64),
                Some(&other)
            )),
            S3ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn digests_check_keys_in_constant_time_and_differ_per_object() {
        let right = key();
        let mut a = ObjectAttributes::default();
        let mut b = ObjectAttributes::default();
        mark(&mut a, &right).unwrap();
        mark(&mut b, &right).unwrap();
        assert_ne!(a.headers[DIGEST_HEADER], b.headers[DIGEST_HEADER]);
        assert!(check(&a, Some(&right), Role::Object).unwrap().is_some());
        let mut wrong = right.clone();
        wrong.key[0] ^= 1;
        let error = check(&a, Some(&wrong), Role::Object).unwrap_err();
        assert_eq!(error.code().clone(), S3ErrorCode::AccessDenied);
        let error = check(&a, None, Role::Object).unwrap_err();
        assert_eq!(error.code().clone(), S3ErrorCode::InvalidRequest);
        let plain = ObjectAttributes::default();
        assert!(check(&plain, None, Role::Object).unwrap().is_none());
        let error = check(&plain, Some(&right), Role::Object).unwrap_err();
        assert_eq!(error.code().clone(), S3ErrorCode::InvalidRequest);
    }

    fn seal_all(key: &CustomerKey, binding: &Binding, plain: &[u8], step: usize) -> Vec<u8> {
        let mut sealer = Sealer::new(key, binding, 0).unwrap();
        let mut out = sealer.header().to_vec();
        for piece in plain.chunks(step.max(1)) {
            sealer.push(piece, &mut out).unwrap();
        }
        sealer.finish(&mut out).unwrap();
        out
    }

    fn open_all(key: &CustomerKey, binding: &Binding, sealed: &[u8]) -> Result<Vec<u8>, StdError> {
        let plain = plain_size(sealed.len() as u64).ok_or("size")?;
        let opener = Opener::new(key, binding, &sealed[..HEADER_BYTES as usize])?;
        let chunks = chunk_count(plain);
        let mut out = Vec::new();
        for (i, chunk) in sealed[HEADER_BYTES as usize..]
            .chunks(SEALED_CHUNK as usize)
            .enumerate()
        {
            let mut buffer = chunk.to_vec();
            opener.open(i as u32, i as u64 + 1 == chunks, &mut buffer)?;
            out.extend_from_slice(&buffer);
        }
        Ok(out)
    }

    #[test]
    fn chunks_seal_and_open_and_detect_tampering() {
        let key = key();
        let binding = Binding {
            bucket: "b".into(),
            key: "k".into(),
        };
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = seal_all(&key, &binding, &plain, 7_001);
        assert_eq!(sealed.len() as u64, sealed_size(plain.len() as u64));
        assert_eq!(open_all(&key, &binding, &sealed).unwrap(), plain);
        // Same plaintext, fresh salt and nonce prefix: different bytes.
        assert_ne!(seal_all(&key, &binding, &plain, 65_536), sealed);
        // Empty and exactly one chunk.
        for n in [0usize, 65_536] {
            let sealed = seal_all(&key, &binding, &plain[..n], 1000);
            assert_eq!(open_all(&key, &binding, &sealed).unwrap(), &plain[..n]);
        }
        // Another object's binding.
        let moved = Binding {
            bucket: "b".into(),
            key: "k2".into(),
        };
        assert!(open_all(&key, &moved, &sealed).is_err());
        // Cut at a chunk boundary: the new last chunk was not sealed as last.
        let cut = &sealed[..(HEADER_BYTES + 2 * SEALED_CHUNK) as usize];
        assert!(open_all(&key, &binding, cut).is_err());
        // Two chunks swapped.
        let mut swapped = sealed.clone();
        let (h, c) = (HEADER_BYTES as usize, SEALED_CHUNK as usize);
        let first = sealed[h..h + c].to_vec();
        swapped.copy_within(h + c..h + 2 * c, h);
        swapped[h + c..h + 2 * c].copy_from_slice(&first);
        assert!(open_all(&key, &binding, &swapped).is_err());
        // A flipped bit.
        let mut flipped = sealed.clone();
        flipped[h + 5] ^= 1;
        assert!(open_all(&key, &binding, &flipped).is_err());
        // No plaintext run survives.
        assert!(
            !sealed
                .windows(32)
                .any(|w| plain.windows(32).take(10).any(|p| p == w))
        );
    }
}
