//! Integrity checks of uploaded bytes: `Content-MD5` and the `x-amz-checksum-*` values (CRC32,
//! CRC32C, CRC64NVME, SHA1, SHA256) sent in headers or in the trailers of an aws-chunked body.
//! What the client names is computed while the body streams and compared once it has ended;
//! a mismatch is `BadDigest` and nothing is stored. Verified values are kept with the object
//! or part and returned when a client asks (`x-amz-checksum-mode: ENABLED`).
//!
//! s3s parses aws-chunked bodies (verifying chunk and trailer signatures) and hands over the
//! trailers once the body is read; it computes no checksum itself, so this module does.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
use s3s::dto::{self, ChecksumAlgorithm};
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders};

/// A checksum algorithm S3 knows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub(crate) const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The name stored in `ObjectAttributes::checksums` (`CRC32`, ...).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => ChecksumAlgorithm::CRC32,
            Algorithm::Crc32c => ChecksumAlgorithm::CRC32C,
            Algorithm::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Algorithm::Sha1 => ChecksumAlgorithm::SHA1,
            Algorithm::Sha256 => ChecksumAlgorithm::SHA256,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    fn by_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn by_header(header: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(header.trim()))
    }

    /// The digest length in bytes.
    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// The checksum of `bytes`, base64.
    pub(crate) fn digest(self, bytes: &[u8]) -> String {
        match self {
            Algorithm::Crc32 => STANDARD.encode(Crc32::checksum(bytes)),
            Algorithm::Crc32c => STANDARD.encode(Crc32c::checksum(bytes)),
            Algorithm::Crc64Nvme => STANDARD.encode(Crc64Nvme::checksum(bytes)),
            Algorithm::Sha1 => STANDARD.encode(Sha1::checksum(bytes)),
            Algorithm::Sha256 => STANDARD.encode(Sha256::checksum(bytes)),
        }
    }
}

/// The checksum values of a request's headers, as s3s parsed them.
#[derive(Default)]
pub(crate) struct HeaderValues<'a> {
    pub(crate) crc32: Option<&'a str>,
    pub(crate) crc32c: Option<&'a str>,
    pub(crate) crc64nvme: Option<&'a str>,
    pub(crate) sha1: Option<&'a str>,
    pub(crate) sha256: Option<&'a str>,
}

impl HeaderValues<'_> {
    fn get(&self, algorithm: Algorithm) -> Option<&str> {
        match algorithm {
            Algorithm::Crc32 => self.crc32,
            Algorithm::Crc32c => self.crc32c,
            Algorithm::Crc64Nvme => self.crc64nvme,
            Algorithm::Sha1 => self.sha1,
            Algorithm::Sha256 => self.sha256,
        }
    }
}

/// What an upload must be checked against.
pub(crate) struct Expected {
    /// Values given in headers.
    given: Vec<(Algorithm, String)>,
    /// The algorithm whose value arrives in the trailers (`x-amz-trailer`).
    trailer: Option<Algorithm>,
    /// An algorithm named (`x-amz-sdk-checksum-algorithm`) without a value: computed and kept.
    named: Option<Algorithm>,
    /// The `Content-MD5`, decoded.
    md5: Option<Vec<u8>>,
}

impl Expected {
    /// Reads the checks a request asks for; a malformed value is `InvalidDigest` (MD5) or
    /// `InvalidRequest` (checksums).
    pub(crate) fn from_request(
        values: &HeaderValues<'_>,
        algorithm: Option<&ChecksumAlgorithm>,
        content_md5: Option<&str>,
        headers: &HeaderMap,
    ) -> S3Result<Self> {
        let mut given = Vec::new();
        for algorithm in Algorithm::ALL {
            if let Some(value) = values.get(algorithm) {
                check_encoding(algorithm, value)?;
                given.push((algorithm, value.to_owned()));
            }
        }
        let trailer = match headers.get("x-amz-trailer") {
            Some(value) => {
                let name = value.to_str().unwrap_or_default();
                Some(Algorithm::by_header(name).ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        "x-amz-trailer must name one x-amz-checksum-* header",
                    )
                })?)
            }
            None => None,
        };
        let named = match algorithm {
            Some(name) => Some(Algorithm::by_name(name.as_str()).ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    "x-amz-sdk-checksum-algorithm is not a known algorithm",
                )
            })?),
            None => None,
        };
        let md5 = match content_md5 {
            Some(value) => Some(
                STANDARD
                    .decode(value.trim())
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| {
                        S3Error::with_message(
                            S3ErrorCode::InvalidDigest,
                            "the Content-MD5 you specified is not valid",
                        )
                    })?,
            ),
            None => None,
        };
        Ok(Self {
            given,
            trailer,
            named,
            md5,
        })
    }

    /// A hasher for every algorithm to compute.
    pub(crate) fn hasher(&self) -> ChecksumHasher {
        let mut hasher = ChecksumHasher::default();
        let wanted = self
            .given
            .iter()
            .map(|(a, _)| *a)
            .chain(self.trailer)
            .chain(self.named);
        for algorithm in wanted {
            match algorithm {
                Algorithm::Crc32 => hasher.crc32 = Some(Crc32::default()),
                Algorithm::Crc32c => hasher.crc32c = Some(Crc32c::default()),
                Algorithm::Crc64Nvme => hasher.crc64nvme = Some(Crc64Nvme::default()),
                Algorithm::Sha1 => hasher.sha1 = Some(Sha1::default()),
                Algorithm::Sha256 => hasher.sha256 = Some(Sha256::default()),
            }
        }
        hasher
    }

    /// Compares what was computed over the body with what the client sent (`md5_hex` is the
    /// body's MD5 in hex) and returns the verified checksums by algorithm name.
    pub(crate) fn verify(
        self,
        computed: dto::Checksum,
        md5_hex: &str,
        trailers: Option<&TrailingHeaders>,
    ) -> S3Result<BTreeMap<String, String>> {
        if let Some(md5) = &self.md5 {
            let hex: String = md5.iter().map(|b| format!("{b:02x}")).collect();
            if hex != md5_hex {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    "the Content-MD5 you specified did not match what we received",
                ));
            }
        }
        let mut expected = self.given;
        if let Some(algorithm) = self.trailer {
            let value = trailers
                .and_then(|t| t.read(|map| map.get(algorithm.header()).cloned()))
                .flatten()
                .and_then(|v| v.to_str().ok().map(str::to_owned))
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRequest,
                        format!("the trailer {} is missing", algorithm.header()),
                    )
                })?;
            check_encoding(algorithm, &value)?;
            expected.push((algorithm, value));
        }
        let mut verified = BTreeMap::new();
        for algorithm in Algorithm::ALL {
            let Some(actual) = computed_value(&computed, algorithm) else {
                continue;
            };
            if let Some((_, value)) = expected.iter().find(|(a, _)| *a == algorithm)
                && value.trim() != actual
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    format!(
                        "the {} you specified did not match the calculated checksum",
                        algorithm.name()
                    ),
                ));
            }
            verified.insert(algorithm.name().to_owned(), actual.to_owned());
        }
        Ok(verified)
    }
}

fn computed_value(computed: &dto::Checksum, algorithm: Algorithm) -> Option<&str> {
    match algorithm {
        Algorithm::Crc32 => computed.checksum_crc32.as_deref(),
        Algorithm::Crc32c => computed.checksum_crc32c.as_deref(),
        Algorithm::Crc64Nvme => computed.checksum_crc64nvme.as_deref(),
        Algorithm::Sha1 => computed.checksum_sha1.as_deref(),
        Algorithm::Sha256 => computed.checksum_sha256.as_deref(),
    }
}

fn check_encoding(algorithm: Algorithm, value: &str) -> S3Result<()> {
    match STANDARD.decode(value.trim()) {
        Ok(digest) if digest.len() == algorithm.digest_len() => Ok(()),
        _ => Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            format!(
                "the value of {} is not a valid checksum",
                algorithm.header()
            ),
        )),
    }
}

/// The checksums of a stored object or part as the wire fields, when the client asked for
/// them (`x-amz-checksum-mode: ENABLED`) or always (`wanted`).
#[derive(Default)]
pub(crate) struct WireChecksums {
    pub(crate) crc32: Option<String>,
    pub(crate) crc32c: Option<String>,
    pub(crate) crc64nvme: Option<String>,
    pub(crate) sha1: Option<String>,
    pub(crate) sha256: Option<String>,
    /// `COMPOSITE` when the values are checksums of part checksums (`...-N`).
    pub(crate) checksum_type: Option<dto::ChecksumType>,
}

impl WireChecksums {
    pub(crate) fn of(stored: &BTreeMap<String, String>) -> Self {
        let get = |a: Algorithm| stored.get(a.name()).cloned();
        let composite = stored.values().any(|v| v.contains('-'));
        Self {
            crc32: get(Algorithm::Crc32),
            crc32c: get(Algorithm::Crc32c),
            crc64nvme: get(Algorithm::Crc64Nvme),
            sha1: get(Algorithm::Sha1),
            sha256: get(Algorithm::Sha256),
            checksum_type: (!stored.is_empty()).then(|| {
                dto::ChecksumType::from_static(if composite {
                    dto::ChecksumType::COMPOSITE
                } else {
                    dto::ChecksumType::FULL_OBJECT
                })
            }),
        }
    }
}

/// The checksums of a multipart object: for each algorithm every part has, the checksum of
/// the concatenated part checksums, suffixed with `-N` (S3's composite checksums).
pub(crate) fn composite(parts: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for algorithm in Algorithm::ALL {
        let mut digests = Vec::new();
        for part in parts {
            match part
                .get(algorithm.name())
                .and_then(|v| STANDARD.decode(v).ok())
            {
                Some(digest) => digests.extend_from_slice(&digest),
                None => {
                    digests.clear();
                    break;
                }
            }
        }
        if !digests.is_empty() {
            out.insert(
                algorithm.name().to_owned(),
                format!("{}-{}", algorithm.digest(&digests), parts.len()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        // CRC32 of "hello world" is 0x0d4a1185.
        assert_eq!(
            Algorithm::Crc32.digest(b"hello world"),
            STANDARD.encode(0x0d4a_1185u32.to_be_bytes())
        );
        assert_eq!(
            Algorithm::Sha256.digest(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn a_wrong_value_is_bad_digest() {
        let headers = HeaderMap::new();
        let good = Algorithm::Crc32.digest(b"abc");
        let bad = Algorithm::Crc32.digest(b"abd");
        for (value, ok) in [(good, true), (bad, false)] {
            let values = HeaderValues {
                crc32: Some(&value),
                ..HeaderValues::default()
            };
            let expected = Expected::from_request(&values, None, None, &headers).unwrap();
            let mut hasher = expected.hasher();
            hasher.update(b"abc");
            let result =
                expected.verify(hasher.finalize(), &p8fs_core::object::md5_hex(b"abc"), None);
            match result {
                Ok(stored) => {
                    assert!(ok);
                    assert_eq!(stored.get("CRC32"), Some(&value));
                }
                Err(e) => {
                    assert!(!ok);
                    assert_eq!(e.code().clone(), S3ErrorCode::BadDigest);
                }
            }
        }
    }

    #[test]
    fn composite_checksums_need_every_part() {
        let one: BTreeMap<_, _> = [("CRC32".to_owned(), Algorithm::Crc32.digest(b"a"))].into();
        let two: BTreeMap<_, _> = [("CRC32".to_owned(), Algorithm::Crc32.digest(b"b"))].into();
        let none = BTreeMap::new();
        let both = composite(&[&one, &two]);
        assert!(both["CRC32"].ends_with("-2"));
        assert!(composite(&[&one, &none]).is_empty());
    }
}
