//! Bodies in bounded memory: an upload streams into a new blob through core's
//! [`ObjectWriter`] (one chunk buffered), checked as [`crate::checksum`] says; a download
//! streams an object's chunks ([`chunk_reads`]) through a channel of one chunk.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use p8fs_core::object::{ObjectWriter, WrittenData, chunk_reads};
use p8fs_core::{Backend, ObjectStore, Segment, TenantId};
use s3s::dto::StreamingBlob;
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{S3Error, S3ErrorCode, S3Result, StdError, TrailingHeaders};
use tokio::sync::mpsc;

use crate::checksum::Expected;
use crate::error::{body_error, s3_error};
use crate::ssec::Sealer;

/// A verified upload: the pending blob and the checksums to keep.
pub(crate) struct Upload {
    pub(crate) written: WrittenData,
    pub(crate) checksums: BTreeMap<String, String>,
    /// The size of the body as the client sent it (before any SSE-C encryption).
    pub(crate) plain_size: u64,
}

/// Streams `body` into a new pending blob of at most `max_bytes`, checking `expected` at the
/// end; with a `sealer`, what is stored is the SSE-C encryption of the body (`max_bytes` and
/// the checks apply to the plaintext). On any failure the blob is discarded, so nothing is
/// stored.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one upload, each from another header"
)]
pub(crate) async fn receive(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    body: Option<StreamingBlob>,
    declared_length: Option<i64>,
    max_bytes: u64,
    expected: Expected,
    trailers: Option<&TrailingHeaders>,
    sealer: Option<Sealer>,
) -> S3Result<Upload> {
    if let Some(length) = declared_length
        && u64::try_from(length).map_or(true, |l| l > max_bytes)
    {
        return Err(S3Error::with_message(
            S3ErrorCode::EntityTooLarge,
            format!("the body is larger than the limit of {max_bytes} bytes"),
        ));
    }
    let stored_limit = match sealer {
        Some(_) => crate::ssec::sealed_limit(max_bytes),
        None => max_bytes,
    };
    let mut writer = ObjectWriter::begin(store, tenant, stored_limit)
        .await
        .map_err(s3_error)?;
    let data = writer.data();
    let mut hasher = expected.hasher();
    let result = async {
        let mut sealer = sealer;
        let mut sealed = Vec::new();
        if let Some(sealer) = &sealer {
            writer.write(sealer.header()).await.map_err(s3_error)?;
        }
        let mut plain_size = 0u64;
        if let Some(mut body) = body {
            while let Some(frame) = body.next().await {
                let bytes = frame.map_err(|e| body_error(e.as_ref()))?;
                hasher.update(&bytes);
                plain_size += bytes.len() as u64;
                match &mut sealer {
                    Some(sealer) => {
                        sealer.push(&bytes, &mut sealed)?;
                        writer.write(&sealed).await.map_err(s3_error)?;
                        sealed.clear();
                    }
                    None => writer.write(&bytes).await.map_err(s3_error)?,
                }
            }
        }
        let plain_md5 = match sealer {
            Some(sealer) => {
                let md5 = sealer.finish(&mut sealed)?;
                writer.write(&sealed).await.map_err(s3_error)?;
                Some(p8fs_core::object::hex(&md5))
            }
            None => None,
        };
        let written = writer.finish().await.map_err(s3_error)?;
        if let Some(length) = declared_length
            && u64::try_from(length).ok() != Some(plain_size)
        {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                "the body is not as long as Content-Length says",
            ));
        }
        let md5 = plain_md5.as_deref().unwrap_or(&written.md5);
        let checksums = expected.verify(hasher.finalize(), md5, trailers)?;
        Ok(Upload {
            written,
            checksums,
            plain_size,
        })
    }
    .await;
    if result.is_err()
        && let Err(error) = store.discard_data(tenant, data).await
    {
        tracing::warn!(%error, "discarding the blob of a failed upload failed");
    }
    result
}

/// Bytes `start..end` of an object made of `segments`, read chunk by chunk as the client takes
/// them. A chunk that cannot be read ends the body with an error (the client sees a short
/// body, as with any interrupted download).
pub(crate) fn send(
    backend: Arc<dyn Backend>,
    tenant: TenantId,
    segments: Vec<Segment>,
    start: u64,
    end: u64,
) -> StreamingBlob {
    let length = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
    let (sender, receiver) = mpsc::channel::<Result<Bytes, StdError>>(1);
    tokio::spawn(async move {
        for read in chunk_reads(&segments, start, end) {
            let chunk = backend
                .read_chunk(&tenant, read.data, read.index)
                .await
                .map_err(|e| Box::new(e) as StdError)
                .and_then(|bytes| {
                    bytes
                        .get(read.start..read.end)
                        .map(Bytes::copy_from_slice)
                        .ok_or_else(|| {
                            Box::<dyn std::error::Error + Send + Sync>::from(
                                "a stored chunk is shorter than its object says",
                            )
                        })
                });
            let failed = chunk.is_err();
            if let Err(error) = &chunk {
                tracing::warn!(%error, "reading an object chunk failed");
            }
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    StreamingBlob::new(ChunkStream {
        receiver,
        remaining: length,
    })
}

/// Plaintext bytes `start..end` of an SSE-C object (`segments` in plaintext sizes), decrypted
/// chunk by chunk as the client takes them ([`crate::ssec::read_plain`]); a chunk that fails
/// authentication ends the body with an error.
pub(crate) fn send_plain(
    backend: Arc<dyn Backend>,
    tenant: TenantId,
    segments: Vec<Segment>,
    key: crate::ssec::CustomerKey,
    binding: crate::ssec::Binding,
    (start, end): (u64, u64),
) -> StreamingBlob {
    let length = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
    let (sender, receiver) = mpsc::channel::<Result<Bytes, StdError>>(1);
    tokio::spawn(crate::ssec::read_plain(
        backend,
        tenant,
        segments,
        key,
        binding,
        (start, end),
        sender,
    ));
    StreamingBlob::new(ChunkStream {
        receiver,
        remaining: length,
    })
}

/// The receiving end of [`send`], with the exact length still to come.
struct ChunkStream {
    receiver: mpsc::Receiver<Result<Bytes, StdError>>,
    remaining: usize,
}

impl Stream for ChunkStream {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.receiver.poll_recv(cx);
        if let Poll::Ready(Some(Ok(bytes))) = &polled {
            self.remaining = self.remaining.saturating_sub(bytes.len());
        }
        polled
    }
}

impl ByteStream for ChunkStream {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(self.remaining)
    }
}
