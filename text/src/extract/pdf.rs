//! The text layer of a PDF with pdf-extract (pure Rust, on lopdf).
//!
//! pdf-extract panics on some malformed files (unexpected object types, bad font data) instead
//! of returning an error. This module is the one place that contains that: the call runs under
//! `std::panic::catch_unwind` and a panic becomes `ExtractError::Corrupt`, so a bad upload fails
//! its object instead of unwinding through the ingest worker. Nothing else in the crate catches
//! panics. The work is bounded by the input size (`Limits::max_input_bytes`, checked before).

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::ExtractError;

/// The text of a PDF's pages, pages and paragraphs separated by blank lines, the lines of a
/// paragraph joined by spaces.
pub(super) fn to_text(bytes: &[u8]) -> Result<String, ExtractError> {
    if !bytes.starts_with(b"%PDF-")
        && !bytes[..bytes.len().min(1024)]
            .windows(5)
            .any(|w| w == b"%PDF-")
    {
        return Err(corrupt("no PDF header"));
    }
    // `AssertUnwindSafe`: the closure only reads `bytes` and shares no state with the caller
    // that a panic could leave half-updated.
    let raw = match catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    })) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => return Err(corrupt(&e.to_string())),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the parser failed".to_owned());
            return Err(corrupt(&reason));
        }
    };
    let text = reflow(&raw);
    if text.is_empty() {
        return Err(ExtractError::NoTextLayer);
    }
    Ok(text)
}

fn corrupt(reason: &str) -> ExtractError {
    // Parser messages can be long (they may quote object dumps): keep the first line, briefly.
    let line = reason.lines().next().unwrap_or_default().trim();
    let reason = match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None if line.is_empty() => "the parser failed".to_owned(),
        None => line.to_owned(),
    };
    ExtractError::Corrupt {
        format: "PDF",
        reason,
    }
}

/// Joins the lines of each paragraph (runs of non-blank lines) with spaces, collapsing
/// whitespace, and separates paragraphs and pages (form feeds) with one blank line.
fn reflow(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_paragraph = false;
    for line in raw.split(['\n', '\r', '\u{c}']) {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            if in_paragraph {
                out.push_str("\n\n");
                in_paragraph = false;
            }
            continue;
        }
        if in_paragraph {
            // A word hyphenated at the end of a line ("hyph-" then "enated") is joined back.
            let next_lower = words
                .peek()
                .and_then(|w| w.chars().next())
                .is_some_and(char::is_lowercase);
            let hyphenated = out
                .strip_suffix('-')
                .and_then(|s| s.chars().next_back())
                .is_some_and(char::is_alphabetic);
            if hyphenated && next_lower {
                out.pop();
            } else {
                out.push(' ');
            }
        }
        for (i, word) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
        in_paragraph = true;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflow_joins_lines_and_separates_paragraphs() {
        let raw = "\n\nFirst   line\nsecond line with a hyph-\nenated word.\n\n\n\u{c}Next  page\n";
        assert_eq!(
            reflow(raw),
            "First line second line with a hyphenated word.\n\nNext page"
        );
    }

    #[test]
    fn not_a_pdf_is_corrupt() {
        let e = to_text(b"hello world").unwrap_err();
        assert_eq!(e.to_string(), "corrupt PDF: no PDF header");
    }
}
