//! Extraction of the committed fixture files: real PDFs (made by `fixtures/make_pdfs.py`), an
//! HTML page, Markdown, JSON, multilingual text and a binary file named `.txt`.

use p8fs_text::{ExtractError, Extracted, Format, Limits, extract};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Detects the format from the file name, as the ingest worker does for an upload without a
/// content type, and extracts with the default limits.
fn extract_fixture(name: &str) -> Result<Extracted, ExtractError> {
    let format = Format::detect(None, name).expect("supported fixture");
    extract(format, &fixture(name), &Limits::default())
}

#[test]
fn pdf_text_layer_of_every_page() {
    let got = extract_fixture("report.pdf").unwrap();
    assert!(!got.truncated);
    // Lines of a paragraph are joined, paragraphs and pages separated by blank lines.
    assert_eq!(
        got.text,
        "Quarterly Report\n\n\
         The memory vault stores every upload and indexes it for semantic search.\n\n\
         Revenue grew by twelve percent in the third quarter. Costs stayed flat.\n\n\
         Second Page\n\n\
         Embeddings are computed on the gateway with a small sentence model.\n\n\
         Each chunk holds at most two hundred and fifty four tokens.\n\n\
         This paragraph is long enough to wrap over several lines of the page, so the extracted \
         text has to join the lines of one paragraph back together with spaces before it is cut \
         into sentences and chunks for the embedding model.\n\n\
         Third Page\n\n\
         Scanned documents without a text layer are reported as failures.\n\n\
         The end of the report."
    );
}

#[test]
fn corrupt_pdf_is_an_error_not_a_panic() {
    let e = extract_fixture("corrupt.pdf").unwrap_err();
    assert_eq!(e.code(), "corrupt", "{e}");
    assert!(e.to_string().starts_with("corrupt PDF: "), "{e}");

    // Every prefix of the real file, and garbled copies of it, fail cleanly or give text.
    let good = fixture("report.pdf");
    for len in (0..good.len()).step_by(97) {
        let _ = extract(Format::Pdf, &good[..len], &Limits::default());
    }
    for seed in 0..40usize {
        let mut bad = good.clone();
        for i in (seed * 13 + 9..bad.len()).step_by(50 + seed) {
            bad[i] ^= 0x5a;
        }
        if let Err(e) = extract(Format::Pdf, &bad, &Limits::default()) {
            assert!(
                ["corrupt", "no_text_layer", "empty"].contains(&e.code()),
                "{e}"
            );
        }
    }
}

#[test]
fn pdf_without_text_layer() {
    let e = extract_fixture("scanned.pdf").unwrap_err();
    assert_eq!(e, ExtractError::NoTextLayer);
    assert!(e.to_string().starts_with("no text layer"));
}

#[test]
fn pdf_over_the_input_limit() {
    let bytes = fixture("report.pdf");
    let limits = Limits {
        max_input_bytes: 1000,
        ..Limits::default()
    };
    let e = extract(Format::Pdf, &bytes, &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("too large: {} bytes, at most 1000", bytes.len())
    );
}

#[test]
fn html_page_without_markup_scripts_or_styles() {
    let got = extract(
        Format::detect(Some("text/html; charset=utf-8"), "page").unwrap(),
        &fixture("page.html"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        got.text,
        "Home | About\n\n\
         Fish & Chips — a history\n\n\
         Fried fish arrived in England with Sephardic Jewish immigrants. Chips followed <later>.\n\n\
         Prices rose from £0.03 to £9.50 — café owners agree.\n\n\
         Cod\n\nHaddock\n\n\
         A plate of fish\n\n\
         Last updated 2026."
    );
    for absent in [
        "script",
        "style",
        "Head title",
        "noscript",
        "comment",
        "<p",
        "href",
    ] {
        assert!(!got.text.contains(absent), "{absent} in {:?}", got.text);
    }
}

#[test]
fn markdown_as_readable_text() {
    let got = extract_fixture("notes.md").unwrap();
    assert_eq!(
        got.text,
        "Meeting notes\n\n\
         Attendees: Ada, Grace and Linus. See the design doc and the diagram.\n\n\
         Decisions\n\n\
         Ship the text crate.\nIndex PDFs, HTML and JSON.\n\n\
         Write tests\nWrite the bench\n\n\
         cargo nextest run\n\n\
         Quoted advice: chunk at paragraphs first.\n\n\
         Format Crate\nPDF pdf-extract"
    );
}

#[test]
fn json_values_with_key_paths() {
    let got = extract_fixture("data.json").unwrap();
    assert_eq!(
        got.text,
        "title: Hello\npublished: true\nrating: 4.5\nviews: 1200\nauthor.name: Ada Lovelace\n\
         items.0.name: Bar\nitems.1.name: Baz\nitems.1.tags.0: x\nitems.2.name: Foo\n\
         items.2.note: multi line note"
    );
    let e = extract(Format::Json, b"{\"title\": \"Hel", &Limits::default()).unwrap_err();
    assert_eq!(e.code(), "corrupt");
}

#[test]
fn multilingual_text_is_kept_as_is() {
    let bytes = fixture("multilingual.txt");
    let got = extract_fixture("multilingual.txt").unwrap();
    assert_eq!(got.text, std::str::from_utf8(&bytes).unwrap().trim());
    assert!(got.text.contains("👨‍👩‍👧"));
    assert!(got.text.contains("هذا نص تجريبي"));
}

#[test]
fn binary_file_named_txt() {
    let e = extract_fixture("binary.txt").unwrap_err();
    assert_eq!(e.code(), "not_text");
    assert_eq!(e.to_string(), "binary content: NUL byte at offset 8");
    // Without NUL bytes, the first invalid UTF-8 byte is named.
    let e = extract(
        Format::PlainText,
        &fixture("binary.txt")[..8],
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "not UTF-8 text: invalid byte at offset 0");
}

#[test]
fn a_prefix_of_a_long_file_cut_inside_a_character() {
    // What the ingest worker passes for a long text file: `read_limit` bytes of it.
    let limits = Limits {
        max_text_bytes: 64,
        ..Limits::default()
    };
    let full = "語".repeat(100); // 3 bytes each
    let prefix = &full.as_bytes()[..limits.read_limit(Format::PlainText)];
    let got = extract(Format::PlainText, prefix, &limits).unwrap();
    assert!(got.truncated);
    assert_eq!(got.text, "語".repeat(21));
}

#[test]
fn output_over_the_text_limit_ends_at_a_paragraph() {
    let limits = Limits {
        max_text_bytes: 100,
        ..Limits::default()
    };
    let got = extract(Format::Markdown, &fixture("notes.md"), &limits).unwrap();
    assert!(got.truncated);
    assert!(got.text.len() <= 100);
    assert_eq!(
        got.text,
        "Meeting notes\n\nAttendees: Ada, Grace and Linus. See the design doc and the diagram.\n\n\
         Decisions"
    );
}

/// A well-formed PDF (cross-reference table and all) of `objects`, numbered from 1, the first
/// the catalog.
fn pdf_of(objects: &[String]) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{object}\nendobj\n", i + 1).bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for offset in offsets {
        pdf.extend(format!("{offset:010} 00000 n \n").bytes());
    }
    let size = objects.len() + 1;
    pdf.extend(
        format!("trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").bytes(),
    );
    pdf
}

/// A one-page PDF showing "Hello world" in font `/F1`, object 5 (`font`); the page dictionary
/// also holds `value` under `/X`.
fn one_page_pdf(font: &str, value: &str) -> Vec<u8> {
    let content = "BT /F1 12 Tf 72 712 Td (Hello world) Tj ET";
    pdf_of(&[
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> /X {value} >>"
        ),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        font.to_owned(),
    ])
}

const HELVETICA: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

#[test]
fn a_parser_panic_is_a_corrupt_pdf() {
    assert_eq!(
        extract(
            Format::Pdf,
            &one_page_pdf(HELVETICA, "1"),
            &Limits::default()
        )
        .unwrap()
        .text,
        "Hello world"
    );
    // pdf-extract panics ("wrong type") on a font that is a number; the panic is contained.
    let e = extract(Format::Pdf, &one_page_pdf("42", "1"), &Limits::default()).unwrap_err();
    assert_eq!(e.code(), "corrupt");
    assert_eq!(e.to_string(), "corrupt PDF: wrong type");
    // And on a Type0 font without descendants.
    let font = "<< /Type /Font /Subtype /Type0 /BaseFont /X >>";
    let e = extract(Format::Pdf, &one_page_pdf(font, "1"), &Limits::default()).unwrap_err();
    assert_eq!(e.code(), "corrupt", "{e}");
}

#[test]
fn deeply_nested_pdf_objects_do_not_overflow_the_stack() {
    // A stack overflow would abort the process, which catch_unwind cannot contain.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let got = extract(
        Format::Pdf,
        &one_page_pdf(HELVETICA, &deep),
        &Limits::default(),
    );
    assert!(got.is_err(), "{got:?}");
}
