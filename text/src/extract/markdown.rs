//! Markdown to readable text with pulldown-cmark: headings, paragraphs, list items, quotes,
//! table cells, code and link or image text are kept; URLs, raw HTML and markup are dropped.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use super::html::TextSink;

/// The text of a Markdown document, blocks separated by blank lines, list items by newlines.
pub(super) fn to_text(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut out = TextSink::default();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::BlockQuote(_)
                | Tag::CodeBlock(_)
                | Tag::List(_)
                | Tag::Table(_)
                | Tag::FootnoteDefinition(_)
                | Tag::DefinitionList => out.paragraph_break(),
                Tag::Item | Tag::TableHead | Tag::TableRow | Tag::DefinitionListTitle => {
                    out.line_break()
                }
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::List(_)
                | TagEnd::Table
                | TagEnd::FootnoteDefinition
                | TagEnd::DefinitionList => out.paragraph_break(),
                TagEnd::Item | TagEnd::TableHead | TagEnd::TableRow => out.line_break(),
                TagEnd::TableCell => out.push_verbatim(" "),
                _ => {}
            },
            Event::Text(text) | Event::Code(text) => out.push_verbatim(&text),
            Event::SoftBreak => out.push_verbatim(" "),
            Event::HardBreak => out.line_break(),
            Event::Rule => out.paragraph_break(),
            // Raw HTML, footnote references, task markers and math markup carry no prose.
            _ => {}
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_stripped() {
        let md = "# Title\n\nSome *emphasis* and a [link](https://example.com/x) and \
                  ![alt text](img.png).\nSoft break.\n\n- one\n- two `code`\n\n```rust\nfn main() {}\n```\n\n\
                  > quoted\n\n<div>raw html</div>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        assert_eq!(
            to_text(md),
            "Title\n\nSome emphasis and a link and alt text. Soft break.\n\none\ntwo code\n\n\
             fn main() {}\n\nquoted\n\na b\n1 2"
        );
    }
}
