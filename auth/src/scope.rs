//! Scopes: the OAuth 2.0 scope tokens that gate front-end operations, and the set a token
//! carries. Parsing is strict (unknown tokens are an error naming the field `scope`); there are
//! no wildcards and no scope implies another, `admin` included.
//!
//! `device-keys` gates the device-key endpoints of the authorization server (registering a key
//! that can mint access tokens without a password). The server grants it only through an
//! interactive sign-in (the device flow or the code flow, approved by the user on its pages),
//! only when the client asks for it by name, and never through client credentials or a device
//! key; a refresh keeps it only in a family that was granted it.

use std::fmt;

use p8fs_core::{Error, Result};

/// A permission a front-end operation requires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Scope {
    KvRead,
    KvWrite,
    VectorsRead,
    VectorsWrite,
    GraphRead,
    GraphWrite,
    Admin,
    DeviceKeys,
    S3Read,
    S3Write,
    MemoriesRead,
    MemoriesWrite,
}

impl Scope {
    /// Every scope, sorted by its wire name.
    pub const ALL: [Scope; 12] = [
        Scope::Admin,
        Scope::DeviceKeys,
        Scope::GraphRead,
        Scope::GraphWrite,
        Scope::KvRead,
        Scope::KvWrite,
        Scope::MemoriesRead,
        Scope::MemoriesWrite,
        Scope::S3Read,
        Scope::S3Write,
        Scope::VectorsRead,
        Scope::VectorsWrite,
    ];

    /// The wire name (`kv:read`, `admin`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::KvRead => "kv:read",
            Scope::KvWrite => "kv:write",
            Scope::VectorsRead => "vectors:read",
            Scope::VectorsWrite => "vectors:write",
            Scope::GraphRead => "graph:read",
            Scope::GraphWrite => "graph:write",
            Scope::Admin => "admin",
            Scope::DeviceKeys => "device-keys",
            Scope::S3Read => "s3:read",
            Scope::S3Write => "s3:write",
            Scope::MemoriesRead => "memories:read",
            Scope::MemoriesWrite => "memories:write",
        }
    }

    /// Parses one wire name; anything else is `InvalidInput` on the field `scope`.
    pub fn parse(value: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == value)
            .ok_or_else(|| Error::invalid("scope", unknown_scope_reason(value)))
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn unknown_scope_reason(value: &str) -> String {
    const SHOWN: usize = 64;
    let allowed = Scope::ALL.map(Scope::as_str).join(", ");
    if value.len() <= SHOWN && !value.chars().any(char::is_control) {
        format!("unknown scope `{value}`; known scopes are {allowed}")
    } else {
        format!("unknown scope; known scopes are {allowed}")
    }
}

/// A set of scopes. Displays as the space-separated wire names, sorted (the `scope` claim).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// The empty set.
    pub fn empty() -> Self {
        Self(0)
    }

    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Parses a space-separated scope string (RFC 6749 section 3.3). Runs of spaces are
    /// tolerated, the empty string is the empty set, and any unknown token is `InvalidInput` on
    /// the field `scope`.
    pub fn parse(value: &str) -> Result<Self> {
        value
            .split(' ')
            .filter(|token| !token.is_empty())
            .map(Scope::parse)
            .collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds `scope`.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether every scope of `other` is in this set.
    pub fn is_superset(&self, other: &ScopeSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// The scopes, sorted by wire name.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        Scope::ALL.into_iter().filter(|s| self.contains(*s))
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::empty();
        for scope in iter {
            set.insert(scope);
        }
        set
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use p8fs_core::ErrorKind;

    use super::*;

    #[test]
    fn every_scope_round_trips() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
        }
        let names: Vec<_> = Scope::ALL.map(Scope::as_str).to_vec();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "Scope::ALL is sorted by wire name");
    }

    #[test]
    fn set_displays_sorted_and_deduplicated() {
        let set = ScopeSet::parse("kv:write  kv:read admin kv:read").unwrap();
        assert_eq!(set.to_string(), "admin kv:read kv:write");
        assert!(set.contains(Scope::KvRead));
        assert!(!set.contains(Scope::GraphRead));
        assert_eq!(ScopeSet::parse(&set.to_string()).unwrap(), set);
        assert_eq!(
            ScopeSet::all().to_string(),
            "admin device-keys graph:read graph:write kv:read kv:write memories:read \
             memories:write s3:read s3:write vectors:read vectors:write"
        );
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn unknown_scopes_are_invalid_input_on_scope() {
        for bad in [
            "kv:*",
            "KV:READ",
            "kv:read,kv:write",
            "kv:read\tadmin",
            "s3:*",
            "S3:READ",
        ] {
            let err = ScopeSet::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert_eq!(err.field(), Some("scope"));
        }
    }
}
