//! Automatic persisted queries (Apollo's protocol): a client sends
//! `extensions.persistedQuery = { version: 1, sha256Hash }` without the document; if the server
//! knows the hash it runs the document it remembered, otherwise it answers with the error
//! `PersistedQueryNotFound` and the client sends the document with its hash, which the server
//! checks and remembers. Documents are shared by every tenant: they are addressed by their
//! SHA-256, so one tenant cannot make another's hash run a different document. At most
//! `capacity` are kept; the oldest goes first.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a request's `persistedQuery` extension asks for.
pub(crate) enum Persisted {
    /// No extension: the document is in the request.
    None,
    /// The document of this hash.
    Known(String),
}

/// Why a persisted query cannot run.
pub(crate) enum PersistedError {
    /// The client should send the document with its hash.
    NotFound,
    /// Bad extension: the message says what.
    Invalid(&'static str),
}

/// Remembered documents by their SHA-256 (lower-case hex).
pub(crate) struct PersistedQueries {
    capacity: usize,
    documents: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl PersistedQueries {
    pub(crate) fn new(capacity: usize) -> Self {
        PersistedQueries {
            capacity,
            documents: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Resolves a request's document: `query` as sent (empty when absent) and its extensions.
    pub(crate) fn resolve(
        &self,
        query: &str,
        extensions: Option<&Value>,
    ) -> Result<Persisted, PersistedError> {
        let Some(extension) = extensions.and_then(|e| e.get("persistedQuery")) else {
            return Ok(Persisted::None);
        };
        if extension.get("version").and_then(Value::as_u64) != Some(1) {
            return Err(PersistedError::Invalid(
                "persistedQuery: only version 1 is supported",
            ));
        }
        let hash = extension
            .get("sha256Hash")
            .and_then(Value::as_str)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or(PersistedError::Invalid(
                "persistedQuery.sha256Hash must be 64 hex digits",
            ))?
            .to_ascii_lowercase();
        if query.is_empty() {
            let documents = self.documents.lock();
            return documents
                .0
                .get(&hash)
                .map(|document| Persisted::Known(document.clone()))
                .ok_or(PersistedError::NotFound);
        }
        let actual = format!("{:x}", Sha256::digest(query.as_bytes()));
        if actual != hash {
            return Err(PersistedError::Invalid(
                "persistedQuery.sha256Hash is not the SHA-256 of the query",
            ));
        }
        if self.capacity > 0 {
            let mut documents = self.documents.lock();
            let (map, order) = &mut *documents;
            if !map.contains_key(&hash) {
                while map.len() >= self.capacity {
                    match order.pop_front() {
                        Some(oldest) => map.remove(&oldest),
                        None => break,
                    };
                }
                map.insert(hash.clone(), query.to_owned());
                order.push_back(hash);
            }
        }
        Ok(Persisted::Known(query.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extension(hash: &str) -> Value {
        json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
    }

    #[test]
    fn a_hash_is_learnt_checked_and_forgotten_oldest_first() {
        let apq = PersistedQueries::new(1);
        let query = "{ __typename }";
        let hash = format!("{:x}", Sha256::digest(query.as_bytes()));
        assert!(matches!(
            apq.resolve("", Some(&extension(&hash))),
            Err(PersistedError::NotFound)
        ));
        assert!(matches!(
            apq.resolve("{ other }", Some(&extension(&hash))),
            Err(PersistedError::Invalid(_))
        ));
        assert!(
            matches!(apq.resolve(query, Some(&extension(&hash))), Ok(Persisted::Known(q)) if q == query)
        );
        assert!(
            matches!(apq.resolve("", Some(&extension(&hash))), Ok(Persisted::Known(q)) if q == query)
        );
        let second = "{ a }";
        let second_hash = format!("{:x}", Sha256::digest(second.as_bytes()));
        assert!(apq.resolve(second, Some(&extension(&second_hash))).is_ok());
        assert!(matches!(
            apq.resolve("", Some(&extension(&hash))),
            Err(PersistedError::NotFound)
        ));
        assert!(matches!(apq.resolve("{ a }", None), Ok(Persisted::None)));
    }
}
