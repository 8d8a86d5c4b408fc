//! Diagnostics that point into a source file: `FILE:LINE:COL: error: MESSAGE`, followed by a
//! rendered snippet of the offending text (codespan-reporting) and an optional help line.
//!
//! Used by the inventory stage for every problem in the site file, and by later stages that
//! want to point at a place in it (e.g. a node's `[[node]]` entry when a plugin fails on it).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::NoColor};

/// How many diagnostics a [`Diagnostics`] keeps (see [`Diagnostics::finish`]).
pub const MAX_ITEMS: usize = 50;

/// One error in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// One line, no trailing period.
    pub message: String,
    pub file: PathBuf,
    /// Byte range in the file's source text; `None` for errors about the file as a whole.
    pub span: Option<Range<usize>>,
    /// Secondary places, e.g. `(first_span, "first defined here")`.
    pub labels: Vec<(Range<usize>, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span` (or about the whole file when `None`).
    pub fn error(
        file: impl Into<PathBuf>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            message: message.into(),
            file: file.into(),
            span,
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column (in characters) of the start of the span in `source`.
    pub fn line_col(&self, source: &str) -> Option<(usize, usize)> {
        self.span.as_ref().map(|s| line_col(source, s.start))
    }
}

/// 1-based (line, column) of byte `offset` in `source`; the column counts characters, like
/// codespan-reporting does. Offsets past the end or inside a character are clamped.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(source: &str, offset: usize) -> usize {
    let mut i = offset.min(source.len());
    while !source.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn clamp_span(source: &str, span: &Range<usize>) -> Range<usize> {
    let start = floor_char_boundary(source, span.start);
    let end = floor_char_boundary(source, span.end.max(span.start));
    start..end.max(start)
}

/// Every error found in one file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    pub file: PathBuf,
    /// The file's text (empty when it could not be read).
    pub source: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: impl Into<PathBuf>, source: impl Into<String>) -> Self {
        Diagnostics {
            file: file.into(),
            source: source.into(),
            items: Vec::new(),
        }
    }

    /// A single error about the whole file (e.g. it cannot be read).
    pub fn whole_file(file: &Path, source: &str, message: impl Into<String>) -> Self {
        let mut d = Diagnostics::new(file, source);
        d.items.push(Diagnostic::error(file, None, message));
        d
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorts the items by position (file-wide errors first, ties keep their order), keeps the
    /// first [`MAX_ITEMS`] (adding a note saying how many were left out) and returns
    /// `Err(self)` if there is any.
    pub fn finish(mut self) -> Result<(), Diagnostics> {
        if self.items.is_empty() {
            return Ok(());
        }
        self.items
            .sort_by_key(|d| d.span.as_ref().map(|s| (1, s.start)).unwrap_or((0, 0)));
        if self.items.len() > MAX_ITEMS {
            let more = self.items.len() - MAX_ITEMS;
            self.items.truncate(MAX_ITEMS);
            let file = self.file.clone();
            self.items.push(Diagnostic::error(
                file,
                None,
                format!(
                    "{more} more error{} not shown (fix the ones above first)",
                    if more == 1 { "" } else { "s" }
                ),
            ));
        }
        Err(self)
    }

    /// The rendering of one item: the `FILE:LINE:COL: error: MESSAGE` line, the snippet and
    /// the help. Ends with a newline.
    pub fn render_item(&self, d: &Diagnostic) -> String {
        let mut out = String::new();
        let file_name = d.file.display().to_string();
        let span = d.span.as_ref().map(|s| clamp_span(&self.source, s));
        match &span {
            Some(s) => {
                let (line, col) = line_col(&self.source, s.start);
                out.push_str(&format!("{file_name}:{line}:{col}: error: {}\n", d.message));
            }
            None => out.push_str(&format!("{file_name}: error: {}\n", d.message)),
        }
        if let Some(span) = span {
            let files = SimpleFile::new(file_name.as_str(), self.source.as_str());
            let mut labels = vec![Label::primary((), span)];
            for (s, text) in &d.labels {
                labels.push(Label::secondary((), clamp_span(&self.source, s)).with_message(text));
            }
            let mut cs = CsDiagnostic::error()
                .with_message(d.message.as_str())
                .with_labels(labels);
            if let Some(help) = &d.help {
                cs = cs.with_notes(vec![format!("help: {help}")]);
            }
            let mut buf = NoColor::new(Vec::<u8>::new());
            let config = term::Config::default();
            if term::emit(&mut buf, &config, &files, &cs).is_ok() {
                let text = String::from_utf8_lossy(buf.get_ref()).into_owned();
                // codespan's own header repeats the message: drop it, the first line above
                // already says it with the position.
                let body = match text.find('\n') {
                    Some(i) if text.starts_with("error") => &text[i + 1..],
                    _ => text.as_str(),
                };
                out.push_str(body);
                return out;
            }
        }
        if let Some(help) = &d.help {
            out.push_str(&format!("  = help: {help}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            f.write_str(&self.render_item(d))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        // 'é' is two bytes: the '=' after "bé " is the 4th character.
        assert_eq!(line_col(src, 10), (2, 4));
        assert_eq!(line_col(src, 10_000), (3, 1));
        // inside a multi-byte char: clamped back
        assert_eq!(line_col(src, 8), (2, 2));
    }

    #[test]
    fn display_has_location_snippet_and_help() {
        let src = "[site]\nname = \"Bad Name\"\n";
        let mut d = Diagnostics::new("site.toml", src);
        d.push(
            Diagnostic::error("site.toml", Some(14..24), "bad site name")
                .with_label(0..6, "in this table")
                .with_help("use lowercase"),
        );
        d.push(Diagnostic::error("site.toml", None, "whole file"));
        let d = d.finish().unwrap_err();
        let text = d.to_string();
        assert!(text.starts_with("site.toml: error: whole file\n"), "{text}");
        assert!(
            text.contains("site.toml:2:8: error: bad site name\n"),
            "{text}"
        );
        assert!(text.contains("name = \"Bad Name\""), "{text}");
        assert!(text.contains("in this table"), "{text}");
        assert!(text.contains("help: use lowercase"), "{text}");
        assert_eq!(text.matches("bad site name").count(), 1, "{text}");
        assert_eq!(d.items[1].line_col(src), Some((2, 8)));
    }

    #[test]
    fn finish_caps_and_sorts() {
        let src = "x".repeat(200);
        let mut d = Diagnostics::new("f", src.as_str());
        for i in (0..120).rev() {
            d.push(Diagnostic::error("f", Some(i..i + 1), format!("e{i}")));
        }
        let d = d.finish().unwrap_err();
        assert_eq!(d.items.len(), MAX_ITEMS + 1);
        assert_eq!(d.items[0].message, "e0");
        assert_eq!(d.items[MAX_ITEMS - 1].message, "e49");
        assert!(d.items[MAX_ITEMS].message.starts_with("70 more errors"));
        // out-of-range spans never panic
        let mut d = Diagnostics::new("f", "é");
        d.push(Diagnostic::error("f", Some(1..99), "odd"));
        let _ = d.finish().unwrap_err().to_string();
    }
}
