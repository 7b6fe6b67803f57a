//! Sealed JSON: a value is stored as `{"t": <tokens>, "s": "<ciphertext>"}`. `s` is the whole
//! value encrypted; `t` (only where the contract filters by equality: key-value values and
//! vector metadata) has the value's shape down through objects, with every other value (a
//! scalar, an array) replaced by a keyed token of its canonical form. Two values are equal under
//! the contract's JSON equality exactly when their token trees are equal as JSON (up to token
//! collisions, which only add candidates that core filters after decryption), so a backend's own
//! equality on `t.<path>` keeps finding candidates. Object field names stay visible.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::keys::{Context, DataKey};
use crate::error::{Error, Result};
use crate::json::exact_integer;
use crate::types::{Filter, JsonMap, JsonPath, JsonText};
use crate::validate::stored;

/// The field holding the token tree.
pub(crate) const TOKENS: &str = "t";
/// The field holding the ciphertext.
pub(crate) const SEALED: &str = "s";

/// Appends the canonical encoding of `value`: type-tagged and length-prefixed, numbers by exact
/// value (`1` and `1.0` encode alike, as the contract's equality has them equal), object fields
/// sorted.
pub(crate) fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
        Value::Number(n) => match exact_integer(n) {
            Some(i) => {
                out.push(b'i');
                out.extend_from_slice(&i.to_be_bytes());
            }
            None => {
                out.push(b'd');
                // Not integral, so never -0.0: equal values have equal bits.
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_bits().to_be_bytes());
            }
        },
        Value::String(s) => {
            out.push(b's');
            bytes(s.as_bytes(), out);
        }
        Value::Array(items) => {
            out.push(b'a');
            out.extend_from_slice(&(items.len() as u64).to_be_bytes());
            for item in items {
                canonical(item, out);
            }
        }
        Value::Object(map) => {
            out.push(b'o');
            out.extend_from_slice(&(map.len() as u64).to_be_bytes());
            let mut fields: Vec<_> = map.iter().collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            for (k, v) in fields {
                bytes(k.as_bytes(), out);
                canonical(v, out);
            }
        }
    }
}

fn bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

/// The token tree of `value`.
pub(crate) fn tokens(key: &DataKey, value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), tokens(key, v)))
                .collect(),
        ),
        other => {
            let mut buf = Vec::new();
            canonical(other, &mut buf);
            Value::String(key.token(&buf))
        }
    }
}

/// The sealed form of `value`, with its token tree when `tokenise`.
pub(crate) fn seal(
    key: &DataKey,
    context: &Context<'_>,
    value: &Value,
    tokenise: bool,
) -> Result<JsonMap> {
    let plain = serde_json::to_vec(value)
        .map_err(|e| Error::internal("cannot serialize a value to seal", Some(e.into())))?;
    let sealed = key.seal(context, &plain)?;
    let mut map = Map::new();
    if tokenise {
        map.insert(TOKENS.to_owned(), tokens(key, value));
    }
    map.insert(
        SEALED.to_owned(),
        Value::String(URL_SAFE_NO_PAD.encode(sealed)),
    );
    Ok(map)
}

/// Whether a stored value has the sealed shape (an object of `s`, and `t` or not).
pub(crate) fn is_sealed(stored: &Value) -> bool {
    match stored {
        Value::Object(map) => is_sealed_object(map),
        _ => false,
    }
}

/// Whether stored metadata or properties have the sealed shape.
pub(crate) fn is_sealed_object(map: &JsonMap) -> bool {
    map.get(SEALED).is_some_and(Value::is_string) && map.keys().all(|k| k == SEALED || k == TOKENS)
}

/// The format of the ciphertext a stored object of the sealed shape holds; `None` for a plain
/// one.
pub(crate) fn sealed_format(map: &JsonMap) -> Option<u8> {
    if !is_sealed_object(map) {
        return None;
    }
    map.get(SEALED)
        .and_then(Value::as_str)
        .and_then(ciphertext_format)
}

/// The format byte of a ciphertext in base64url (the first of its first three bytes).
pub(crate) fn ciphertext_format(text: &str) -> Option<u8> {
    let head = URL_SAFE_NO_PAD.decode(text.get(..4)?.as_bytes()).ok()?;
    head.first().copied()
}

/// The value sealed in `stored`. A stored value without the sealed shape is returned as it is
/// when `plain_ok` (a store written before encryption), and refused otherwise.
pub(crate) fn open(
    key: &DataKey,
    context: &Context<'_>,
    stored: Value,
    plain_ok: bool,
) -> Result<Value> {
    if !is_sealed(&stored) {
        return plain(stored, plain_ok);
    }
    let text = match stored.get(SEALED) {
        Some(Value::String(text)) => text,
        _ => return Err(Error::internal("a sealed value lost its ciphertext", None)),
    };
    let plain = open_ciphertext(key, context, text)?;
    serde_json::from_slice(&plain)
        .map_err(|e| Error::internal("a sealed value does not parse", Some(e.into())))
}

/// A stored value without the sealed shape: itself when `plain_ok`, refused otherwise.
fn plain<T>(stored: T, plain_ok: bool) -> Result<T> {
    if plain_ok {
        return Ok(stored);
    }
    Err(Error::internal(
        "a stored value is not sealed, in a store sealed since it was created",
        None,
    ))
}

/// The plaintext of a ciphertext in base64url.
fn open_ciphertext(key: &DataKey, context: &Context<'_>, text: &str) -> Result<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|_| Error::internal("a sealed value is not base64url", None))?;
    key.open_in(context, bytes, 0)
}

/// The sealed shape as text: an object of `s` (a string) and `t` (anything) or `s` alone, the
/// shape [`is_sealed`] tells; the token tree is skipped, not built.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    /// [`SEALED`].
    #[serde(borrow)]
    s: Cow<'a, str>,
    /// [`TOKENS`].
    #[serde(default, rename = "t")]
    _tokens: Option<IgnoredAny>,
}

/// The ciphertext of stored text of the sealed shape; `None` for any other JSON value.
fn ciphertext_text(stored: &str) -> Option<Cow<'_, str>> {
    // serde would also read the struct from an array of its fields.
    if !stored.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Envelope<'_>>(stored)
        .ok()
        .map(|envelope| envelope.s)
}

/// As [`open`], for a stored value as text: the sealed value's text as it was sealed (the
/// compact `serde_json` text of the value), with neither value built.
pub(crate) fn open_text(
    key: &DataKey,
    context: &Context<'_>,
    stored: JsonText,
    plain_ok: bool,
) -> Result<JsonText> {
    let Some(text) = ciphertext_text(stored.as_str()) else {
        return plain(stored, plain_ok);
    };
    let plain = String::from_utf8(open_ciphertext(key, context, &text)?)
        .map_err(|_| Error::internal("a sealed value is not UTF-8", None))?;
    JsonText::stored(plain, "sealed value")
}

/// As [`open`], for an object (metadata, properties).
pub(crate) fn open_object(
    key: &DataKey,
    context: &Context<'_>,
    stored: JsonMap,
    plain_ok: bool,
) -> Result<JsonMap> {
    match open(key, context, Value::Object(stored), plain_ok)? {
        Value::Object(map) => Ok(map),
        _ => Err(Error::internal("sealed metadata is not an object", None)),
    }
}

/// The path of `path`'s tokens.
pub(crate) fn token_path(path: &JsonPath) -> JsonPath {
    stored::path_under(TOKENS, path)
}

/// A filter on the token tree equivalent to `filter` on the plain value.
pub(crate) fn token_filter(key: &DataKey, filter: &Filter) -> Filter {
    stored::filter(
        filter
            .clauses()
            .iter()
            .map(|(path, operand)| (token_path(path), tokens(key, operand)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::json::json_equal;
    use crate::sealed::keys::DataKeyBytes;
    use crate::types::TenantId;

    fn key() -> DataKey {
        DataKeyBytes::generate().unwrap().open()
    }

    #[test]
    fn tokens_are_equal_exactly_when_values_are() {
        let k = key();
        let values = [
            json!(1),
            json!(1.0),
            json!(-0.0),
            json!(0),
            json!("1"),
            json!(true),
            json!(null),
            json!(1.5),
            json!([1, 2]),
            json!([1.0, 2]),
            json!([2, 1]),
            json!({"a": 1}),
            json!({"a": 1.0}),
            json!({"a": 1, "b": 2}),
            json!({"b": 2.0, "a": 1}),
            json!(u64::MAX),
            json!(9_007_199_254_740_993_u64),
            json!(9_007_199_254_740_992.0),
            json!(""),
            json!([]),
            json!({}),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(
                    json_equal(&tokens(&k, a), &tokens(&k, b)),
                    json_equal(a, b),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let k = key();
        let tenant = TenantId::new("alpha").unwrap();
        let other = TenantId::new("beta").unwrap();
        let ctx = Context {
            tenant: &tenant,
            capability: "kv",
            record: &[b"k1"],
        };
        let value = json!({"secret": "opal", "n": [1, 2]});
        let sealed = Value::Object(seal(&k, &ctx, &value, true).unwrap());
        assert!(!sealed.to_string().contains("opal"));
        assert_eq!(open(&k, &ctx, sealed.clone(), false).unwrap(), value);
        let moved = Context {
            tenant: &other,
            capability: "kv",
            record: &[b"k1"],
        };
        let err = open(&k, &moved, sealed.clone(), false).unwrap_err();
        assert!(
            err.to_string().contains("another record or tenant"),
            "{err}"
        );
        let renamed = Context {
            tenant: &tenant,
            capability: "kv",
            record: &[b"k2"],
        };
        assert!(open(&k, &renamed, sealed.clone(), false).is_err());
        let err = open(&key(), &ctx, sealed, false).unwrap_err();
        assert!(err.to_string().contains("data key"), "{err}");
        assert!(open(&k, &ctx, json!({"plain": 1}), false).is_err());
        assert_eq!(
            open(&k, &ctx, json!({"plain": 1}), true).unwrap(),
            json!({"plain": 1})
        );
    }

    #[test]
    fn sealed_text_opens_to_the_text_of_the_sealed_value() {
        let k = key();
        let tenant = TenantId::new("alpha").unwrap();
        let ctx = Context {
            tenant: &tenant,
            capability: "kv",
            record: &[b"k1"],
        };
        let values = [
            json!({"secret": "opal", "n": [1, 2.5, -0.0, 1e300], "u": "\u{e9}\"\n\\"}),
            json!({}),
            json!([{"s": "x"}]),
            json!("text"),
            json!(null),
            json!(u64::MAX),
            json!(i64::MIN),
        ];
        for value in values {
            let sealed = JsonText::of(&Value::Object(seal(&k, &ctx, &value, true).unwrap()));
            let opened = open_text(&k, &ctx, sealed.clone(), false).unwrap();
            assert_eq!(opened.as_str(), value.to_string());
            assert_eq!(opened.parse().unwrap(), value);
            let untokenised = JsonText::of(&Value::Object(seal(&k, &ctx, &value, false).unwrap()));
            assert_eq!(open_text(&k, &ctx, untokenised, false).unwrap(), opened);
            let moved = Context {
                record: &[b"k2"],
                ..ctx
            };
            assert!(open_text(&k, &moved, sealed, false).is_err());
        }
    }

    #[test]
    fn text_is_of_the_sealed_shape_exactly_when_its_value_is() {
        let shapes = [
            json!({"s": "AAAA"}),
            json!({"s": "AAAA", "t": {"a": "x"}}),
            json!({"s": "AAAA", "t": null}),
            json!({"t": "x", "s": "AAAA"}),
            json!({"s": 1}),
            json!({"s": "AAAA", "u": 1}),
            json!({"t": {}}),
            json!(["AAAA"]),
            json!(["AAAA", {}]),
            json!("AAAA"),
            json!({}),
            json!(null),
        ];
        for value in shapes {
            let text = JsonText::of(&value);
            assert_eq!(
                ciphertext_text(text.as_str()).is_some(),
                is_sealed(&value),
                "{value}"
            );
        }
        let k = key();
        let tenant = TenantId::new("alpha").unwrap();
        let ctx = Context {
            tenant: &tenant,
            capability: "kv",
            record: &[b"k1"],
        };
        let plain = JsonText::of(&json!({"plain": 1}));
        assert!(open_text(&k, &ctx, plain.clone(), false).is_err());
        assert_eq!(open_text(&k, &ctx, plain.clone(), true).unwrap(), plain);
        let bad = JsonText::of(&json!({"s": "not base64!"}));
        assert!(open_text(&k, &ctx, bad, true).is_err());
    }

    #[test]
    fn the_format_of_a_stored_value_is_read_from_its_ciphertext() {
        let k = key();
        let tenant = TenantId::new("alpha").unwrap();
        let ctx = Context {
            tenant: &tenant,
            capability: "kv",
            record: &[b"k1"],
        };
        let value = json!({"secret": "opal"});
        let current = seal(&k, &ctx, &value, true).unwrap();
        assert_eq!(sealed_format(&current), Some(crate::sealed::keys::FORMAT));
        let plain = serde_json::to_vec(&value).unwrap();
        let mut old = current.clone();
        old.insert(
            SEALED.to_owned(),
            Value::String(URL_SAFE_NO_PAD.encode(k.seal_format_one(&ctx, &plain))),
        );
        assert_eq!(
            sealed_format(&old),
            Some(crate::sealed::keys::XCHACHA_FORMAT)
        );
        assert_eq!(open(&k, &ctx, Value::Object(old), false).unwrap(), value);
        let Value::Object(plain) = value else {
            unreachable!()
        };
        assert_eq!(sealed_format(&plain), None);
        assert_eq!(ciphertext_format(""), None);
    }

    #[test]
    fn paths_move_under_the_token_tree() {
        let path = JsonPath::new("a.b").unwrap();
        let moved = token_path(&path);
        assert_eq!(moved.as_str(), "t.a.b");
        assert_eq!(moved.segments(), ["t", "a", "b"]);
        let k = key();
        let value = json!({"a": {"b": [1, {"c": 2}]}});
        let stored = Value::Object(
            seal(
                &k,
                &Context {
                    tenant: &TenantId::new("x").unwrap(),
                    capability: "kv",
                    record: &[],
                },
                &value,
                true,
            )
            .unwrap(),
        );
        assert!(crate::json::path_equals(
            &stored,
            &moved,
            &tokens(&k, &json!([1.0, {"c": 2.0}]))
        ));
    }
}
