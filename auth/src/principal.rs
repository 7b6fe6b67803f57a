//! The authenticated caller a verified access token describes. Front-ends take the tenant from
//! here, never from the request, and check scopes with [`Principal::require`].

use std::collections::BTreeSet;

use p8fs_core::{ChangeFilter, ChangeKind, Error, Result, TenantId, Timestamp};

use crate::scope::{Scope, ScopeSet};

/// Who is calling, for which tenant, with which scopes, until when.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Principal {
    /// The tenant every operation of this request is scoped to (the `tenant` claim).
    pub tenant: TenantId,
    /// The user or device the token was issued to (the `sub` claim).
    pub subject: String,
    /// The OAuth client the token was issued through (the `client_id` claim).
    pub client_id: String,
    /// The granted scopes (the `scope` claim).
    pub scopes: ScopeSet,
    /// The token's unique id (the `jti` claim): an identifier, not a credential.
    pub token_id: String,
    /// The `exp` claim in milliseconds since the Unix epoch. Pass it to
    /// [`crate::Verifier::revoke`] so the revocation record lives exactly as long as needed.
    pub expires_at: Timestamp,
}

impl Principal {
    /// `Ok` if the token grants `scope`; otherwise `Forbidden` naming the missing scope.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                format!("the token lacks the scope {scope}").into(),
            ))
        }
    }

    /// The kinds of change this caller may see in its tenant's change log: those it could read
    /// ([`read_scope`]). `Forbidden` when it can read none.
    pub fn readable_kinds(&self) -> Result<BTreeSet<ChangeKind>> {
        let kinds: BTreeSet<ChangeKind> = ChangeKind::ALL
            .into_iter()
            .filter(|kind| self.scopes.contains(read_scope(*kind)))
            .collect();
        if kinds.is_empty() {
            return Err(Error::Forbidden(
                "reading changes needs one of the scopes kv:read, vectors:read, graph:read, s3:read"
                    .into(),
            ));
        }
        Ok(kinds)
    }
}

impl Principal {
    /// What this caller may follow of its tenant's change log: the `kinds` asked for (every
    /// readable kind when `None`), each of which it must be able to read (`Forbidden` naming the
    /// scope otherwise), under the subject path `prefix` (at most 2048 bytes, no U+0000).
    pub fn change_filter(
        &self,
        kinds: Option<BTreeSet<ChangeKind>>,
        prefix: Option<String>,
    ) -> Result<ChangeFilter> {
        let readable = self.readable_kinds()?;
        let kinds = match kinds {
            None => readable,
            Some(asked) => {
                if let Some(kind) = asked.iter().find(|kind| !readable.contains(kind)) {
                    return Err(Error::Forbidden(
                        format!(
                            "the token lacks the scope {} to see {kind} changes",
                            read_scope(*kind)
                        )
                        .into(),
                    ));
                }
                asked
            }
        };
        if prefix
            .as_deref()
            .is_some_and(|p| p.len() > 2048 || p.contains('\0'))
        {
            return Err(Error::invalid(
                "prefix",
                "must be at most 2048 bytes without U+0000",
            ));
        }
        Ok(ChangeFilter {
            kinds: Some(kinds),
            prefix: prefix.filter(|p| !p.is_empty()),
        })
    }
}

/// The scope that reads records of a kind, and so sees their changes.
pub fn read_scope(kind: ChangeKind) -> Scope {
    match kind {
        ChangeKind::Kv => Scope::KvRead,
        ChangeKind::Collection | ChangeKind::Vector => Scope::VectorsRead,
        ChangeKind::Node | ChangeKind::Edge => Scope::GraphRead,
        ChangeKind::Bucket | ChangeKind::Object => Scope::S3Read,
    }
}

/// The token of an `Authorization: Bearer` header, if that is the scheme used: the one parser of
/// the header for every route that takes an access token outside the front-ends' extractors.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim()),
        _ => None,
    }
}
