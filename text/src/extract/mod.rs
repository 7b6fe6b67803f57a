//! Text extraction: from the bytes of a file of a known [`Format`] to plain text.
//!
//! Every format ends the same way: the text is trimmed, whitespace-only text is
//! [`ExtractError::Empty`], and text longer than [`Limits::max_text_bytes`] is cut by
//! [`truncate_text`] with `truncated` set.

mod html;
mod json;
mod markdown;
mod pdf;

use unicode_segmentation::UnicodeSegmentation;

use crate::error::ExtractError;
use crate::format::Format;

/// Size limits of extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most text kept, in bytes of UTF-8 (default 2 MiB). For plain text and Markdown the
    /// caller may pass only a prefix of the file of `max_text_bytes + 3` bytes (see
    /// [`Limits::read_limit`]).
    pub max_text_bytes: usize,
    /// The largest file accepted for formats that need the whole file: PDF and JSON fail with
    /// [`ExtractError::TooLarge`] above it, HTML is parsed up to it and marked truncated
    /// (default 64 MiB).
    pub max_input_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 2 << 20,
            max_input_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// How many bytes of a file of `format` the caller needs to read: a prefix of
    /// `max_text_bytes + 3` for plain text and Markdown (a byte-order mark and enough to tell
    /// that the file is longer), and `max_input_bytes + 1` for the formats that need the whole
    /// file (enough to tell that it is too large).
    pub fn read_limit(&self, format: Format) -> usize {
        if format.needs_whole_input() {
            self.max_input_bytes.saturating_add(1)
        } else {
            self.max_text_bytes.saturating_add(3)
        }
    }
}

/// The text of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// Plain text, trimmed, never empty; paragraphs are separated by blank lines.
    pub text: String,
    /// Whether the text was cut to [`Limits::max_text_bytes`] (or the input to a prefix).
    pub truncated: bool,
}

/// Extracts the text of `bytes`, a file (or, for plain text and Markdown, a prefix of one, see
/// [`Limits::read_limit`]) of `format`.
pub fn extract(format: Format, bytes: &[u8], limits: &Limits) -> Result<Extracted, ExtractError> {
    if bytes.is_empty() {
        return Err(ExtractError::Empty);
    }
    let (text, input_truncated) = match format {
        Format::PlainText => {
            let (text, cut) = decode_utf8(bytes, limits.max_text_bytes)?;
            (normalize_newlines(text), cut)
        }
        Format::Markdown => {
            let (text, cut) = decode_utf8(bytes, limits.max_text_bytes)?;
            (markdown::to_text(text), cut)
        }
        Format::Html => html::to_text(bytes, limits.max_input_bytes)?,
        Format::Pdf => {
            check_input_size(bytes, limits)?;
            (pdf::to_text(bytes)?, false)
        }
        Format::Json => {
            check_input_size(bytes, limits)?;
            (json::to_text(bytes)?, false)
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(ExtractError::Empty);
    }
    let (text, cut) = truncate_text(text, limits.max_text_bytes);
    Ok(Extracted {
        text: text.to_owned(),
        truncated: input_truncated || cut,
    })
}

fn check_input_size(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(ExtractError::TooLarge {
            size: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    Ok(())
}

/// Decodes text-typed bytes as UTF-8 without a leading byte-order mark. Offsets in errors are
/// offsets into `bytes`. When `bytes` is longer than `max_text_bytes` it may be a prefix of the
/// file, so a character cut at its very end is dropped and the text reported as cut.
fn decode_utf8(bytes: &[u8], max_text_bytes: usize) -> Result<(&str, bool), ExtractError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let skip = if bytes.starts_with(BOM) { BOM.len() } else { 0 };
    let body = &bytes[skip..];
    if let Some(i) = body.iter().position(|&b| b == 0) {
        return Err(ExtractError::Binary { offset: skip + i });
    }
    let longer = bytes.len() > max_text_bytes;
    match std::str::from_utf8(body) {
        Ok(text) => Ok((text, longer)),
        // `error_len() == None`: the input ends inside a character, as a prefix may.
        Err(e) if longer && e.error_len().is_none() => {
            let valid = &body[..e.valid_up_to()];
            Ok((std::str::from_utf8(valid).unwrap_or_default(), true))
        }
        Err(e) => Err(ExtractError::NotUtf8 {
            offset: skip + e.valid_up_to(),
        }),
    }
}

/// `\r\n` and lone `\r` line ends as `\n`, so blank lines separate paragraphs whatever the
/// platform the file came from.
fn normalize_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_owned();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Cuts `text` to at most `max_bytes` bytes at a char boundary, preferring the end of the last
/// paragraph, then of the last sentence, then the last whitespace, within the second half of the
/// limit. Returns the trimmed text and whether it was cut.
pub fn truncate_text(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let prefix = &text[..end];
    let floor = end / 2;
    let cut = prefix
        .rfind("\n\n")
        .filter(|&i| i >= floor)
        .or_else(|| {
            // The sentence bound search looks at the tail only, so truncation stays linear.
            let tail_start = (floor..end)
                .find(|&i| prefix.is_char_boundary(i))
                .unwrap_or(end);
            prefix[tail_start..]
                .split_sentence_bound_indices()
                .map(|(i, _)| tail_start + i)
                .filter(|&i| i > tail_start)
                .last()
        })
        .or_else(|| prefix.rfind(char::is_whitespace).filter(|&i| i >= floor))
        .unwrap_or(end);
    (prefix[..cut].trim_end(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max_text_bytes: usize) -> Limits {
        Limits {
            max_text_bytes,
            max_input_bytes: 1 << 20,
        }
    }

    #[test]
    fn plain_text_drops_the_bom_and_normalizes_line_ends() {
        let got = extract(
            Format::PlainText,
            b"\xEF\xBB\xBFone\r\n\r\ntwo\rthree",
            &Limits::default(),
        );
        assert_eq!(
            got,
            Ok(Extracted {
                text: "one\n\ntwo\nthree".into(),
                truncated: false
            })
        );
    }

    #[test]
    fn binary_and_invalid_utf8_name_the_offset() {
        let e = extract(Format::PlainText, b"abc\0def", &Limits::default()).unwrap_err();
        assert_eq!(e, ExtractError::Binary { offset: 3 });
        let e = extract(
            Format::Markdown,
            b"\xEF\xBB\xBFab\xFFcd",
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e, ExtractError::NotUtf8 { offset: 5 });
        // A character cut at the end of an input that is not longer than the limit is an error:
        // the input is the whole file.
        let e = extract(
            Format::PlainText,
            "abé".as_bytes().split_last().unwrap().1,
            &small(100),
        )
        .unwrap_err();
        assert_eq!(e, ExtractError::NotUtf8 { offset: 2 });
    }

    #[test]
    fn a_prefix_cut_inside_a_character_is_tolerated() {
        // "ab" + 'é' cut after its first byte, longer than a 2-byte limit.
        let got = extract(Format::PlainText, b"ab\xC3", &small(2)).unwrap();
        assert_eq!(got.text, "ab");
        assert!(got.truncated);
        // But invalid bytes before the end are still an error.
        let e = extract(Format::PlainText, b"a\xFFb\xC3", &small(2)).unwrap_err();
        assert_eq!(e, ExtractError::NotUtf8 { offset: 1 });
    }

    #[test]
    fn empty_and_whitespace_only_are_empty() {
        for (format, bytes) in [
            (Format::PlainText, &b""[..]),
            (Format::PlainText, b" \n\t\r\n "),
            (Format::Markdown, b"\n\n---\n\n"),
            (
                Format::Html,
                b"<html><head><title>t</title></head><body> </body></html>",
            ),
            (Format::Json, b"{\"a\": null, \"b\": [], \"c\": \"  \"}"),
        ] {
            assert_eq!(
                extract(format, bytes, &Limits::default()),
                Err(ExtractError::Empty)
            );
        }
    }

    #[test]
    fn whole_input_formats_refuse_files_over_the_input_limit() {
        let limits = Limits {
            max_text_bytes: 100,
            max_input_bytes: 10,
        };
        let e = extract(Format::Json, br#"{"a": "0123456789"}"#, &limits).unwrap_err();
        assert_eq!(
            e,
            ExtractError::TooLarge {
                size: 19,
                limit: 10
            }
        );
        assert_eq!(e.to_string(), "too large: 19 bytes, at most 10");
        let e = extract(Format::Pdf, b"%PDF-1.4 0123456789", &limits).unwrap_err();
        assert_eq!(e.code(), "too_large");
    }

    #[test]
    fn truncation_prefers_paragraphs_then_sentences_then_words() {
        let text = "First paragraph here.\n\nSecond one. It goes on and on";
        assert_eq!(truncate_text(text, 40), ("First paragraph here.", true));
        let text = "One sentence here. Another sentence that is long";
        assert_eq!(truncate_text(text, 30), ("One sentence here.", true));
        let text = "words without any sentence end at all";
        assert_eq!(truncate_text(text, 20), ("words without any", true));
        let text = "ééééééééé";
        let (cut, truncated) = truncate_text(text, 5);
        assert_eq!((cut, truncated), ("éé", true));
        assert_eq!(truncate_text("short", 5), ("short", false));
    }

    #[test]
    fn output_over_the_text_limit_is_truncated() {
        let text = "Alpha beta gamma. ".repeat(100);
        let got = extract(Format::PlainText, text.as_bytes(), &small(100)).unwrap();
        assert!(got.truncated);
        assert!(got.text.len() <= 100);
        assert!(got.text.ends_with("gamma."));
    }

    #[test]
    fn read_limits() {
        let limits = Limits::default();
        assert_eq!(limits.read_limit(Format::PlainText), (2 << 20) + 3);
        assert_eq!(limits.read_limit(Format::Pdf), (64 << 20) + 1);
    }
}
