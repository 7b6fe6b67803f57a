//! JSON to text: each scalar value on its own line after its key path (`title: Hello`,
//! `items.2.name: Foo`), in document order, numbers and booleans as written, nulls and empty
//! strings left out.
//!
//! The document is walked as it is parsed (a serde visitor) rather than built as a
//! `serde_json::Value`: that keeps the document's key order without serde_json's
//! `preserve_order` feature (which would change map order for the whole workspace) and never
//! holds the whole tree in memory. serde_json's recursion limit bounds the nesting.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::ExtractError;

/// The lines of a JSON document.
pub(super) fn to_text(bytes: &[u8]) -> Result<String, ExtractError> {
    let mut lines = Lines::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = Walk { lines: &mut lines }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    result.map_err(|e| ExtractError::Corrupt {
        format: "JSON",
        reason: e.to_string(),
    })?;
    Ok(lines.out)
}

/// The output and the key path of the value being read.
#[derive(Default)]
struct Lines {
    out: String,
    path: Vec<String>,
}

impl Lines {
    fn scalar(&mut self, value: &str) {
        let mut words = value.split_whitespace().peekable();
        if words.peek().is_none() {
            return;
        }
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        if !self.path.is_empty() {
            for (i, key) in self.path.iter().enumerate() {
                if i > 0 {
                    self.out.push('.');
                }
                self.out.push_str(key);
            }
            self.out.push_str(": ");
        }
        // Whitespace inside a value (newlines included) is collapsed: one value, one line.
        for (i, word) in words.enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            self.out.push_str(word);
        }
    }
}

/// Reads one value at the current path.
struct Walk<'a> {
    lines: &'a mut Lines,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.lines.scalar(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.lines.scalar(&v.to_string());
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.lines.scalar(&v.to_string());
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.lines.scalar(&v.to_string());
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.lines.scalar(v);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            self.lines.path.push(index.to_string());
            let more = seq.next_element_seed(Walk {
                lines: &mut *self.lines,
            })?;
            self.lines.path.pop();
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.lines.path.push(key);
            let result = map.next_value_seed(Walk {
                lines: &mut *self.lines,
            });
            self.lines.path.pop();
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_with_key_paths_in_document_order() {
        let json = r#"{"title": "Hello", "z": 1.5, "items": [{"name": "Bar"}, null, {"name": "Foo",
            "tags": ["x", "y z\n w"]}], "ok": true, "n": -3, "empty": "", "a": {}}"#;
        assert_eq!(
            to_text(json.as_bytes()).unwrap(),
            "title: Hello\nz: 1.5\nitems.0.name: Bar\nitems.2.name: Foo\nitems.2.tags.0: x\n\
             items.2.tags.1: y z w\nok: true\nn: -3"
        );
        assert_eq!(to_text(b" \"just text\" ").unwrap(), "just text");
    }

    #[test]
    fn invalid_json_is_corrupt() {
        let e = to_text(b"{\"a\": [1, 2").unwrap_err();
        assert_eq!(e.code(), "corrupt");
        assert!(e.to_string().starts_with("corrupt JSON: "), "{e}");
        let e = to_text(b"{} trailing").unwrap_err();
        assert_eq!(e.code(), "corrupt");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(to_text(deep.as_bytes()).unwrap_err().code(), "corrupt");
    }
}
