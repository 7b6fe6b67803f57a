//! Why the text of an object could not be extracted. The `Display` text is shown to users as
//! the object's failure reason; [`ExtractError::code`] is stable for programs and metrics.

use crate::format::{essence, extension, is_generic};

/// An extraction failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// Neither the content type nor the extension names a supported format.
    #[error("unsupported type {what}")]
    Unsupported { what: String },
    /// Text-typed content holds a NUL byte: it is binary.
    #[error("binary content: NUL byte at offset {offset}")]
    Binary { offset: usize },
    /// Text-typed content is not valid UTF-8.
    #[error("not UTF-8 text: invalid byte at offset {offset}")]
    NotUtf8 { offset: usize },
    /// The file does not parse as its format says (`corrupt PDF: ...`, `corrupt JSON: ...`).
    #[error("corrupt {format}: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    /// A PDF with no extractable text, typically a scanned document.
    #[error("no text layer: the PDF has no extractable text (scanned pages need OCR)")]
    NoTextLayer,
    /// A format that needs the whole file is larger than `Limits::max_input_bytes`.
    #[error("too large: {size} bytes, at most {limit}")]
    TooLarge { size: usize, limit: usize },
    /// Nothing but whitespace to index.
    #[error("empty: no text to index")]
    Empty,
}

impl ExtractError {
    /// The failure for an object whose format [`crate::Format::detect`] does not know: names
    /// its content type, or its extension when the content type is absent or generic.
    pub fn unsupported(content_type: Option<&str>, key: &str) -> Self {
        let ct = content_type.map(essence).filter(|ct| !ct.is_empty());
        let what = match (ct, extension(key)) {
            (Some(ct), _) if !is_generic(&ct) => ct,
            (_, Some(ext)) => format!(".{}", ext.to_ascii_lowercase()),
            (Some(ct), None) => ct,
            (None, None) => "unknown (no content type or extension)".to_owned(),
        };
        ExtractError::Unsupported { what }
    }

    /// A short stable code: `unsupported`, `not_text`, `corrupt`, `no_text_layer`, `too_large`
    /// or `empty`.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::Unsupported { .. } => "unsupported",
            ExtractError::Binary { .. } | ExtractError::NotUtf8 { .. } => "not_text",
            ExtractError::Corrupt { .. } => "corrupt",
            ExtractError::NoTextLayer => "no_text_layer",
            ExtractError::TooLarge { .. } => "too_large",
            ExtractError::Empty => "empty",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_names_the_content_type_or_the_extension() {
        let e = ExtractError::unsupported(Some("Image/PNG; q=1"), "a.png");
        assert_eq!(e.to_string(), "unsupported type image/png");
        assert_eq!(e.code(), "unsupported");
        let e = ExtractError::unsupported(Some("application/octet-stream"), "a/b.DOCX");
        assert_eq!(e.to_string(), "unsupported type .docx");
        let e = ExtractError::unsupported(Some("application/octet-stream"), "blob");
        assert_eq!(e.to_string(), "unsupported type application/octet-stream");
        let e = ExtractError::unsupported(None, "blob");
        assert_eq!(
            e.to_string(),
            "unsupported type unknown (no content type or extension)"
        );
    }

    #[test]
    fn messages_and_codes() {
        let cases = [
            (
                ExtractError::Binary { offset: 3 },
                "binary content: NUL byte at offset 3",
                "not_text",
            ),
            (
                ExtractError::NotUtf8 { offset: 9 },
                "not UTF-8 text: invalid byte at offset 9",
                "not_text",
            ),
            (
                ExtractError::Corrupt {
                    format: "PDF",
                    reason: "bad xref".into(),
                },
                "corrupt PDF: bad xref",
                "corrupt",
            ),
            (
                ExtractError::TooLarge { size: 10, limit: 5 },
                "too large: 10 bytes, at most 5",
                "too_large",
            ),
            (ExtractError::Empty, "empty: no text to index", "empty"),
        ];
        for (e, msg, code) in cases {
            assert_eq!(e.to_string(), msg);
            assert_eq!(e.code(), code);
        }
        assert!(
            ExtractError::NoTextLayer
                .to_string()
                .starts_with("no text layer")
        );
        assert_eq!(ExtractError::NoTextLayer.code(), "no_text_layer");
    }
}
