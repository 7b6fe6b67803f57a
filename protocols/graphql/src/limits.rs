//! The limits of the public endpoint, checked before a request runs: the document's size in
//! bytes and in tokens, aliases, root fields and directives (here, on the parsed document), then
//! depth, complexity and parser recursion (by the engine, during validation). Each is a
//! `[graphql]` setting; a request over one is refused with 400 and the limit named.
//!
//! Complexity: each field costs 1, and a list field with a page size costs that size times the
//! cost of what is selected in it (`kvScan(first: 100) { edges { node { key } } }` costs about
//! 100 × 3), so the limit bounds the items a request can make the server produce.

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
};
use serde::{Deserialize, Serialize};

/// The limits of `/graphql`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlLimits {
    /// The largest query document, in bytes (default 64 KiB).
    pub max_document_bytes: usize,
    /// The most lexical tokens in a document (default 5,000).
    pub max_tokens: usize,
    /// The deepest selection nesting (default 12).
    pub max_depth: usize,
    /// The most a query may cost (default 20,000; see the module docs).
    pub max_complexity: usize,
    /// The most aliased fields in a document (default 30).
    pub max_aliases: usize,
    /// The most fields at the root of an operation (default 20).
    pub max_root_fields: usize,
    /// The most directives in a document (default 50), and on one field (default: the same).
    pub max_directives: usize,
    /// The deepest nesting the parser follows (lists in values, fragments; default 32).
    pub max_recursion: usize,
    /// The largest request body, in bytes: the document, the variables and extensions
    /// (default 1 MiB).
    pub max_body_bytes: usize,
    /// Whether the schema can be introspected (default on).
    pub introspection: bool,
    /// The most documents remembered for automatic persisted queries (default 1,000).
    pub persisted_queries: usize,
    /// The most WebSocket connections open at once (default 1,000).
    pub max_websockets: usize,
    /// The most subscriptions on one WebSocket connection (default 20).
    pub max_subscriptions_per_connection: usize,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        GraphqlLimits {
            max_document_bytes: 64 * 1024,
            max_tokens: 5_000,
            max_depth: 12,
            max_complexity: 20_000,
            max_aliases: 30,
            max_root_fields: 20,
            max_directives: 50,
            max_recursion: 32,
            max_body_bytes: 1024 * 1024,
            introspection: true,
            persisted_queries: 1_000,
            max_websockets: 1_000,
            max_subscriptions_per_connection: 20,
        }
    }
}

/// A document over a limit: the message names it.
#[derive(Debug, PartialEq, Eq)]
pub struct OverLimit(pub String);

impl GraphqlLimits {
    /// Checks the size of a document's text before it is parsed.
    pub fn check_text(&self, query: &str) -> Result<(), OverLimit> {
        if query.len() > self.max_document_bytes {
            return Err(OverLimit(format!(
                "the document is {} bytes; the limit is {} (max_document_bytes)",
                query.len(),
                self.max_document_bytes
            )));
        }
        let tokens = count_tokens(query, self.max_tokens + 1);
        if tokens > self.max_tokens {
            return Err(OverLimit(format!(
                "the document has more than {} tokens (max_tokens)",
                self.max_tokens
            )));
        }
        Ok(())
    }

    /// Checks aliases, root fields and directives of a parsed document.
    pub fn check_document(&self, document: &ExecutableDocument) -> Result<(), OverLimit> {
        let mut counts = Counts::default();
        let operations: Vec<&OperationDefinition> = match &document.operations {
            DocumentOperations::Single(operation) => vec![&operation.node],
            DocumentOperations::Multiple(operations) => {
                operations.values().map(|op| &op.node).collect()
            }
        };
        for operation in &operations {
            counts.directives += operation.directives.len();
            let roots = root_fields(&operation.selection_set.node, document, 0);
            if roots > self.max_root_fields {
                return Err(OverLimit(format!(
                    "an operation selects {roots} root fields; the limit is {} (max_root_fields)",
                    self.max_root_fields
                )));
            }
            counts.add(&operation.selection_set.node);
        }
        for fragment in document.fragments.values() {
            counts.directives += fragment.node.directives.len();
            counts.add(&fragment.node.selection_set.node);
        }
        if counts.aliases > self.max_aliases {
            return Err(OverLimit(format!(
                "the document has {} aliases; the limit is {} (max_aliases)",
                counts.aliases, self.max_aliases
            )));
        }
        if counts.directives > self.max_directives {
            return Err(OverLimit(format!(
                "the document has {} directives; the limit is {} (max_directives)",
                counts.directives, self.max_directives
            )));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counts {
    aliases: usize,
    directives: usize,
}

impl Counts {
    /// Counts the aliases and directives written in a selection set (fragments are counted once,
    /// where they are defined).
    fn add(&mut self, set: &SelectionSet) {
        let mut stack = vec![set];
        while let Some(set) = stack.pop() {
            for item in &set.items {
                match &item.node {
                    Selection::Field(field) => {
                        self.aliases += usize::from(field.node.alias.is_some());
                        self.directives += field.node.directives.len();
                        stack.push(&field.node.selection_set.node);
                    }
                    Selection::FragmentSpread(spread) => {
                        self.directives += spread.node.directives.len();
                    }
                    Selection::InlineFragment(fragment) => {
                        self.directives += fragment.node.directives.len();
                        stack.push(&fragment.node.selection_set.node);
                    }
                }
            }
        }
    }
}

/// The fields an operation selects at its root, through fragments (each followed to a bounded
/// depth: the engine rejects fragment cycles).
fn root_fields(set: &SelectionSet, document: &ExecutableDocument, depth: usize) -> usize {
    if depth > 8 {
        return 0;
    }
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(fragment) => {
                root_fields(&fragment.node.selection_set.node, document, depth + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |fragment| {
                    root_fields(&fragment.node.selection_set.node, document, depth + 1)
                }),
        })
        .sum()
}

/// The lexical tokens of a GraphQL document (punctuators, names, numbers, strings), counting no
/// further than `stop`. Whitespace, commas and comments are not tokens.
pub fn count_tokens(text: &str, stop: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut tokens = 0;
    while i < bytes.len() && tokens < stop {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i..].starts_with(b"\\\"\"\"") {
                            4
                        } else {
                            1
                        };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' => {
                tokens += 1;
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(query).expect("parses")
    }

    #[test]
    fn tokens_are_counted_as_the_lexer_sees_them() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(
            count_tokens("query Q($x: Int = 10) { a(x: $x) { b } }", 100),
            22
        );
        assert_eq!(count_tokens("# comment only\n", 100), 0);
        assert_eq!(count_tokens(r#"{ a(s: "x y \" z") }"#, 100), 8);
        assert_eq!(count_tokens(r#"{ a(s: """block " text""") }"#, 100), 8);
        assert_eq!(count_tokens("{ ...F }", 100), 4);
        assert_eq!(count_tokens("{ a b c d e f }", 3), 3);
    }

    #[test]
    fn aliases_root_fields_and_directives_are_bounded() {
        let limits = GraphqlLimits {
            max_aliases: 2,
            max_root_fields: 3,
            max_directives: 1,
            ..GraphqlLimits::default()
        };
        assert!(limits.check_document(&parse("{ a: x b: x }")).is_ok());
        let over = limits
            .check_document(&parse("{ a: x b: x c: x }"))
            .unwrap_err();
        assert!(over.0.contains("max_aliases"), "{over:?}");
        let over = limits
            .check_document(&parse("{ w x ...F } fragment F on Query { y z }"))
            .unwrap_err();
        assert!(over.0.contains("max_root_fields"), "{over:?}");
        let over = limits
            .check_document(&parse("{ x @skip(if: true) y @include(if: true) }"))
            .unwrap_err();
        assert!(over.0.contains("max_directives"), "{over:?}");
        let over = limits.check_text(&"{ a }".repeat(20_000)).unwrap_err();
        assert!(over.0.contains("max_document_bytes"), "{over:?}");
        let over = limits.check_text(&"a ".repeat(5_001)).unwrap_err();
        assert!(over.0.contains("max_tokens"), "{over:?}");
    }
}
