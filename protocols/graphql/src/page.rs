//! Relay-style connections: `first` and `after`, edges with opaque cursors, `pageInfo`.
//! A cursor is the base64url form of the last key of a page: opaque to clients, checked on the
//! way back in (a cursor that does not decode is bad input naming `after`).

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p8fs_core::{Error, Limit, Result};

/// The page size `first`: 1..=1000.
pub(crate) fn first(first: i32) -> Result<Limit> {
    // A negative size is as out of range as 0.
    Limit::named("first", u64::try_from(first).unwrap_or(0))
}

/// The opaque cursor of a position.
pub(crate) fn cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position.as_bytes())
}

/// The position an `after` cursor names, parsed by `parse` (its errors name `after`).
pub(crate) fn after<T>(
    after: Option<&str>,
    parse: impl FnOnce(String) -> Result<T>,
) -> Result<Option<T>> {
    after
        .map(|cursor| {
            let position = URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|position| !position.is_empty())
                .ok_or_else(|| Error::invalid("after", "is not a cursor this API issued"))?;
            parse(position).map_err(|e| e.renamed("after"))
        })
        .transpose()
}

/// A connection of `items`, each with the cursor of its position; `more` says whether a page
/// follows the last.
pub(crate) fn connection<T: OutputType>(
    items: impl IntoIterator<Item = (String, T)>,
    after: bool,
    more: bool,
) -> Connection<String, T> {
    let mut connection = Connection::new(after, more);
    connection.edges.extend(
        items
            .into_iter()
            .map(|(position, item)| Edge::new(cursor(&position), item)),
    );
    connection
}
