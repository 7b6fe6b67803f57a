//! HTML to text with scraper's HTML5 parser (html5ever): the text of the body only (no head,
//! script, style or template content, no tags), entities decoded by the parser, whitespace
//! collapsed except inside `<pre>`, block elements separated by blank lines.

use ego_tree::iter::Edge;
use scraper::{Html, Node};

use crate::error::ExtractError;

/// Elements whose content is never text to index.
const SKIPPED: &[&str] = &[
    "head", "script", "style", "template", "noscript", "iframe", "object", "embed", "svg", "math",
    "canvas", "audio", "video", "map", "select", "button",
];

/// Elements that start and end a block of text.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "html",
    "legend",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
];

/// The text of an HTML document. Invalid UTF-8 is replaced (U+FFFD) rather than refused, as
/// browsers do; a NUL byte marks binary content. Input over `max_input_bytes` is parsed up to
/// that size and reported as truncated.
pub(super) fn to_text(
    bytes: &[u8],
    max_input_bytes: usize,
) -> Result<(String, bool), ExtractError> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(ExtractError::Binary { offset });
    }
    let cut = bytes.len() > max_input_bytes;
    let bytes = &bytes[..bytes.len().min(max_input_bytes)];
    let source = String::from_utf8_lossy(bytes);
    let document = Html::parse_document(source.trim_start_matches('\u{feff}'));

    let mut out = TextSink::default();
    // Depths of the skipped and preformatted elements we are inside; the traversal is
    // iterative, so deeply nested documents cannot overflow the stack.
    let mut skipped = 0usize;
    let mut pre = 0usize;
    for edge in document.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(element) => {
                    let name = element.name();
                    if skipped > 0 || SKIPPED.contains(&name) {
                        skipped += 1;
                    } else if name == "br" {
                        out.line_break();
                    } else if BLOCKS.contains(&name) {
                        out.paragraph_break();
                        if name == "pre" {
                            pre += 1;
                        }
                    } else if matches!(name, "td" | "th") {
                        out.push_collapsed(" ");
                    } else if name == "img"
                        && let Some(alt) = element.attr("alt")
                    {
                        out.push_collapsed(" ");
                        out.push_collapsed(alt);
                        out.push_collapsed(" ");
                    }
                }
                Node::Text(text) if skipped == 0 => {
                    if pre > 0 {
                        out.push_verbatim(text);
                    } else {
                        out.push_collapsed(text);
                    }
                }
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(element) = node.value() {
                    let name = element.name();
                    if skipped > 0 {
                        skipped -= 1;
                    } else if BLOCKS.contains(&name) {
                        out.paragraph_break();
                        if name == "pre" {
                            pre = pre.saturating_sub(1);
                        }
                    } else if matches!(name, "td" | "th") {
                        out.push_collapsed(" ");
                    }
                }
            }
        }
    }
    Ok((out.finish(), cut))
}

/// Builds plain text from pieces: collapses whitespace on request, separates lines and
/// paragraphs without ever doubling separators or leaving trailing spaces.
#[derive(Debug, Default)]
pub(super) struct TextSink {
    out: String,
    /// A collapsed run of whitespace waits here until text follows it on the same line.
    pending_space: bool,
}

impl TextSink {
    /// Appends text as it is.
    pub(super) fn push_verbatim(&mut self, text: &str) {
        self.flush_space();
        self.out.push_str(text);
    }

    /// Appends text with every run of whitespace as one space, none at the start of a line.
    pub(super) fn push_collapsed(&mut self, text: &str) {
        for (i, word) in text.split(char::is_whitespace).enumerate() {
            if i > 0 {
                self.pending_space = true;
            }
            if !word.is_empty() {
                self.flush_space();
                self.out.push_str(word);
            }
        }
    }

    fn flush_space(&mut self) {
        if std::mem::take(&mut self.pending_space)
            && !self.out.is_empty()
            && !self.out.ends_with(char::is_whitespace)
        {
            self.out.push(' ');
        }
    }

    /// Ends the current line.
    pub(super) fn line_break(&mut self) {
        self.pending_space = false;
        let kept = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(kept);
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// Ends the current paragraph: what follows starts after a blank line.
    pub(super) fn paragraph_break(&mut self) {
        self.pending_space = false;
        let kept = self.out.trim_end().len();
        self.out.truncate(kept);
        if !self.out.is_empty() {
            self.out.push_str("\n\n");
        }
    }

    /// The text, trimmed.
    pub(super) fn finish(self) -> String {
        let text = self.out.trim();
        if text.len() == self.out.len() {
            self.out
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(html: &str) -> String {
        to_text(html.as_bytes(), 1 << 20).unwrap().0
    }

    #[test]
    fn tags_scripts_and_styles_go_entities_are_decoded() {
        let html = "<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style>\
                    <script>var x = 1;</script></head><body><h1>Fish &amp; Chips</h1>\
                    <p>One\n   two <b>bold</b>&nbsp;three &lt;tag&gt;</p><script>alert(1)</script>\
                    <ul><li>a</li><li>b<br>c</li></ul><pre>  keep\n    this</pre>\
                    <table><tr><td>x</td><td>y</td></tr></table><p>caf&eacute; &#x1F600;</p></body></html>";
        assert_eq!(
            text(html),
            "Fish & Chips\n\nOne two bold three <tag>\n\na\n\nb\nc\n\n  keep\n    this\n\nx y\n\ncafé 😀"
        );
    }

    #[test]
    fn oversized_input_is_parsed_up_to_the_limit() {
        let html = "<p>first</p><p>second</p>";
        let (text, cut) = to_text(html.as_bytes(), 14).unwrap();
        assert_eq!((text.as_str(), cut), ("first", true));
        assert_eq!(
            to_text(b"<p>a\0</p>", 100),
            Err(ExtractError::Binary { offset: 4 })
        );
    }
}
