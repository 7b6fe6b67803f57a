//! The formats p8fs can index and their detection from a content type or a key's extension.

use std::fmt;

/// A format whose text p8fs can extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    PlainText,
    Markdown,
    Html,
    Pdf,
    Json,
}

impl Format {
    /// The format of an object from its content type, or from its key's extension when the
    /// content type is absent or generic (`application/octet-stream`, `binary/octet-stream`).
    ///
    /// Content types are matched case-insensitively with their parameters (`; charset=utf-8`)
    /// ignored; any `+json` suffix is JSON. `None` means the type is not supported: a specific
    /// content type that is not known is not overridden by the extension.
    pub fn detect(content_type: Option<&str>, key: &str) -> Option<Format> {
        match content_type
            .map(essence)
            .filter(|ct| !ct.is_empty() && !is_generic(ct))
        {
            Some(ct) => Self::from_content_type(&ct),
            None => Self::from_key(key),
        }
    }

    /// The format of a content type's essence (lower case, no parameters).
    fn from_content_type(ct: &str) -> Option<Format> {
        Some(match ct {
            "text/plain" => Format::PlainText,
            "text/markdown" | "text/x-markdown" => Format::Markdown,
            "text/html" | "application/xhtml+xml" => Format::Html,
            "application/pdf" => Format::Pdf,
            "application/json" => Format::Json,
            _ if ct.ends_with("+json") && ct.contains('/') => Format::Json,
            _ => return None,
        })
    }

    /// The format named by a key's extension, case-insensitively.
    pub fn from_key(key: &str) -> Option<Format> {
        let ext = extension(key)?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" | "log" => Format::PlainText,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "json" => Format::Json,
            _ => return None,
        })
    }

    /// A short lower-case name (`text`, `markdown`, `html`, `pdf`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::PlainText => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Json => "json",
        }
    }

    /// Whether extraction needs the whole file (bounded by `Limits::max_input_bytes`) rather
    /// than a prefix of `Limits::max_text_bytes`.
    pub fn needs_whole_input(self) -> bool {
        matches!(self, Format::Html | Format::Pdf | Format::Json)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lower-case essence of a content type: `Text/HTML; charset=utf-8` → `text/html`.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a content type says nothing about the format.
pub(crate) fn is_generic(essence: &str) -> bool {
    matches!(essence, "application/octet-stream" | "binary/octet-stream")
}

/// The extension of a key's last path segment, without the dot; none for dot files.
pub(crate) fn extension(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_win_and_ignore_parameters_and_case() {
        let cases = [
            ("text/plain", Format::PlainText),
            ("Text/Plain; charset=UTF-8", Format::PlainText),
            ("text/markdown", Format::Markdown),
            ("text/x-markdown;variant=GFM", Format::Markdown),
            ("TEXT/HTML; charset=iso-8859-1", Format::Html),
            ("application/xhtml+xml", Format::Html),
            ("application/pdf", Format::Pdf),
            ("application/json", Format::Json),
            ("application/ld+json", Format::Json),
            ("application/vnd.api+json; charset=utf-8", Format::Json),
        ];
        for (ct, want) in cases {
            assert_eq!(Format::detect(Some(ct), "x.bin"), Some(want), "{ct}");
        }
        // A known content type is not overridden by the extension.
        assert_eq!(
            Format::detect(Some("text/plain"), "a.pdf"),
            Some(Format::PlainText)
        );
    }

    #[test]
    fn generic_or_absent_content_types_fall_back_to_the_extension() {
        let cases = [
            ("notes/a.txt", Format::PlainText),
            ("a.TEXT", Format::PlainText),
            ("var/app.log", Format::PlainText),
            ("README.md", Format::Markdown),
            ("doc.Markdown", Format::Markdown),
            ("index.HTM", Format::Html),
            ("page.html", Format::Html),
            ("paper.PDF", Format::Pdf),
            ("data.json", Format::Json),
        ];
        for (key, want) in cases {
            assert_eq!(Format::detect(None, key), Some(want), "{key}");
            assert_eq!(
                Format::detect(Some("application/octet-stream"), key),
                Some(want)
            );
            assert_eq!(
                Format::detect(Some("Binary/Octet-Stream; x=1"), key),
                Some(want)
            );
            assert_eq!(Format::detect(Some(""), key), Some(want));
        }
    }

    #[test]
    fn unsupported_types_are_none() {
        assert_eq!(Format::detect(Some("image/png"), "a.txt"), None);
        assert_eq!(Format::detect(Some("application/jsonx"), "a.json"), None);
        assert_eq!(Format::detect(None, "photo.jpeg"), None);
        assert_eq!(Format::detect(None, "Makefile"), None);
        assert_eq!(Format::detect(None, ".md"), None);
        assert_eq!(Format::detect(None, "dir.md/file"), None);
        assert_eq!(Format::detect(None, "trailing."), None);
    }
}
