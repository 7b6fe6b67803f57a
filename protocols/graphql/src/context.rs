//! Who is asking: the verified access token's principal, put into each request's data by the
//! HTTP layer (or, for a WebSocket, by `connection_init`). Every field checks its own scope
//! through [`caller`], so a missing scope fails that field, not the request.

use async_graphql::Context;
use p8fs_auth::{Principal, Scope};

use crate::GraphqlState;
use crate::error::{GqlResult, coded};

/// The caller, if it holds `scope`; otherwise the field's error (`FORBIDDEN`, or
/// `UNAUTHENTICATED` when no token was verified, which the HTTP layer never lets happen).
pub(crate) fn caller<'a>(ctx: &Context<'a>, scope: Scope) -> async_graphql::Result<&'a Principal> {
    let principal = ctx
        .data_opt::<Principal>()
        .ok_or_else(|| coded("UNAUTHENTICATED", "a bearer token is required"))?;
    principal.require(scope).gql()?;
    Ok(principal)
}

/// The shared state of the front-end.
pub(crate) fn state<'a>(ctx: &Context<'a>) -> &'a GraphqlState {
    ctx.data_unchecked::<GraphqlState>()
}
