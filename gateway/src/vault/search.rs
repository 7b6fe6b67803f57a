//! `p8fs search "question"`: asks the server for the chunks of memories and indexed objects
//! nearest in meaning (`GET /v1/search`) and prints them as a table, nearest first: the score
//! with three decimals, the source (`bucket/key#chunk` or `memory:<id>`) and a one-line snippet
//! cut to the terminal's width (100 characters when stdout is not a terminal). With `--json` it
//! prints the server's reply as it came.

use std::io::{IsTerminal, Write};

use serde::Deserialize;

use super::{Remote, ServerArgs};

/// The snippet's length when stdout is not a terminal, in characters.
const PLAIN_SNIPPET_CHARS: usize = 100;
/// The shortest snippet shown on a narrow terminal.
const MIN_SNIPPET_CHARS: usize = 20;

/// `p8fs search`: find chunks by meaning.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    #[arg(value_name = "QUESTION")]
    pub question: String,
    /// How many chunks to show (1..=1000).
    #[arg(short, long, default_value_t = 10, value_name = "N")]
    pub k: u64,
    /// Only chunks of memories, or only chunks of uploaded objects.
    #[arg(long, value_parser = ["memory", "object"])]
    pub source: Option<String>,
    /// Only chunks of objects in this bucket.
    #[arg(long, value_name = "B")]
    pub bucket: Option<String>,
    /// Only chunks of memories carrying all these tags, comma-separated.
    #[arg(long, value_name = "A,B")]
    pub tags: Option<String>,
    /// `exact` (every chunk considered; the default) or `approximate` (the server's graph index
    /// walked: faster on a large vault, may miss some of the nearest).
    #[arg(long, value_parser = ["exact", "approximate"])]
    pub mode: Option<String>,
    /// With `--mode approximate`: the candidates kept while searching (1..=4096, default 64).
    #[arg(long, value_name = "N")]
    pub ef: Option<u64>,
    /// Print the server's JSON reply instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The search reply, as far as the table needs it.
#[derive(Debug, Deserialize)]
pub struct Results {
    pub hits: Vec<Hit>,
}

/// One chunk found.
#[derive(Debug, Deserialize)]
pub struct Hit {
    pub score: f64,
    pub text: String,
    pub source: Source,
    #[serde(default)]
    pub chunk: u64,
}

/// Where a chunk comes from.
#[derive(Debug, Deserialize)]
pub struct Source {
    pub kind: String,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

impl Hit {
    /// `bucket/key#chunk` for an object's chunk, `memory:<id>` for a memory's.
    pub fn source_label(&self) -> String {
        match (&self.source.memory, &self.source.bucket, &self.source.key) {
            (Some(id), _, _) => format!("memory:{id}"),
            (None, Some(bucket), Some(key)) => format!("{bucket}/{key}#{}", self.chunk),
            _ => format!("{}#{}", self.source.kind, self.chunk),
        }
    }
}

/// `p8fs search`.
pub fn search(args: SearchArgs) -> Result<(), String> {
    let text = super::runtime()?.block_on(async {
        let remote = super::remote_from_env(&args.server).await?;
        search_with(&remote, &args).await
    })?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

/// Runs the search on `remote`; returns what to print.
pub async fn search_with(remote: &Remote, args: &SearchArgs) -> Result<String, String> {
    let mut url = remote.url(&["v1", "search"]);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("q", &args.question);
        query.append_pair("k", &args.k.to_string());
        if let Some(source) = &args.source {
            query.append_pair("source", source);
        }
        if let Some(bucket) = &args.bucket {
            query.append_pair("bucket", bucket);
        }
        if let Some(tags) = &args.tags {
            query.append_pair("tags", tags);
        }
        if let Some(mode) = &args.mode {
            query.append_pair("mode", mode);
        }
        if let Some(ef) = args.ef {
            query.append_pair("ef", &ef.to_string());
        }
    }
    let body = remote.get_text(url).await?;
    if args.json {
        let mut body = body;
        if !body.ends_with('\n') {
            body.push('\n');
        }
        return Ok(body);
    }
    let results: Results = serde_json::from_str(&body)
        .map_err(|e| format!("the server's search reply is not what was expected: {e}"))?;
    if results.hits.is_empty() {
        let _ = writeln!(std::io::stderr(), "nothing found");
        return Ok(String::new());
    }
    Ok(table(&results.hits, terminal_width()))
}

/// The table of `hits`; snippets fill `width` columns when given, else
/// [`PLAIN_SNIPPET_CHARS`].
pub fn table(hits: &[Hit], width: Option<usize>) -> String {
    let labels: Vec<String> = hits.iter().map(Hit::source_label).collect();
    let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let scores: Vec<String> = hits.iter().map(|h| format!("{:.3}", h.score)).collect();
    // "0.832", or "-0.018" when a score is negative.
    let score_width = scores.iter().map(String::len).max().unwrap_or(0);
    let snippet_chars = match width {
        // The score and two spaces, the label and two spaces.
        Some(width) => width
            .saturating_sub(score_width + 2 + label_width + 2)
            .max(MIN_SNIPPET_CHARS),
        None => PLAIN_SNIPPET_CHARS,
    };
    let mut out = String::new();
    for ((hit, label), score) in hits.iter().zip(&labels).zip(&scores) {
        out.push_str(&format!(
            "{score:>score_width$}  {label:<label_width$}  {}\n",
            snippet(&hit.text, snippet_chars)
        ));
    }
    out
}

/// `text` on one line (runs of whitespace become one space), cut to `chars` characters with
/// an ellipsis when longer.
pub fn snippet(text: &str, chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= chars {
        return line;
    }
    let mut cut: String = line.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The width of the terminal stdout is, if it is one.
fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !stdout.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|&columns| columns > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(score: f64, text: &str, memory: Option<&str>, key: Option<&str>, chunk: u64) -> Hit {
        Hit {
            score,
            text: text.into(),
            source: Source {
                kind: if memory.is_some() { "memory" } else { "object" }.into(),
                memory: memory.map(Into::into),
                bucket: key.map(|_| "docs".into()),
                key: key.map(Into::into),
            },
            chunk,
        }
    }

    #[test]
    fn the_table_has_scores_sources_and_snippets() {
        let hits = [
            hit(
                0.83251,
                "Sourdough  bread\nrises slowly",
                None,
                Some("a/b.md"),
                2,
            ),
            hit(0.5, "call mum", Some("m01"), None, 0),
        ];
        let text = table(&hits, None);
        assert_eq!(
            text,
            "0.833  docs/a/b.md#2  Sourdough bread rises slowly\n\
             0.500  memory:m01     call mum\n"
        );
        let narrow = table(&hits, Some(45));
        let first = narrow.lines().next().unwrap();
        assert_eq!(first.chars().count(), 45, "{first}");
        assert!(first.ends_with('…'), "{first}");
        let with_negative = table(
            &[
                hit(0.5, "call mum", Some("m01"), None, 0),
                hit(-0.018, "x", Some("m2"), None, 0),
            ],
            None,
        );
        assert_eq!(
            with_negative,
            " 0.500  memory:m01  call mum\n-0.018  memory:m2   x\n"
        );
    }

    #[test]
    fn snippets_are_cut_to_length() {
        let long = "word ".repeat(100);
        let cut = snippet(&long, 100);
        assert_eq!(cut.chars().count(), 100);
        assert_eq!(snippet("short", 100), "short");
    }
}
