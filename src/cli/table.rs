//! Plain-text tables for human output: left-aligned columns separated by two spaces.

use std::fmt::Write as _;

/// A table with a header row. Cells are single-line strings: newlines are shown as `⏎`, other
/// characters that would forge the terminal's output (escape, carriage return, direction
/// overrides: `crate::job::is_forging_char`) as `\u{…}`, and a cell longer than
/// [`MAX_CELL`] characters is cut with `…` (a row another client wrote may hold a
/// megabyte-long func).
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| cell(c)).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rendered table, one line per row, trailing spaces trimmed.
    pub(crate) fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(n) {
                let pad = widths[i] - width(cell);
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) {
        out!("{}", self.render());
    }
}

/// The longest cell a table shows, in characters.
pub(crate) const MAX_CELL: usize = 120;

/// `text` as one safe, bounded table cell (see [`Table`]).
fn cell(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.chars().count() > MAX_CELL {
            break;
        }
        match c {
            '\n' => out.push('⏎'),
            c if crate::job::is_forging_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    truncate(&out, MAX_CELL)
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Shortens `s` to at most `max` characters, ending with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `-` for a missing value.
pub(crate) fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A time in a table cell: RFC 3339 to the second, in UTC (`2026-01-01T09:00:00Z`).
pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(&["NAME", "STATE"]);
        t.row(vec!["default".into(), "active".into()]);
        t.row(vec!["é".into(), "paused\nnow".into()]);
        assert_eq!(
            t.render(),
            "NAME     STATE\ndefault  active\né        paused⏎now\n"
        );
    }

    #[test]
    fn cells_escape_forging_characters_and_stay_bounded() {
        let mut t = Table::new(&["FUNC"]);
        t.row(vec!["bad\x1b[31mred\r\u{202e}evil".into()]);
        t.row(vec!["m".repeat(1_048_576)]);
        let out = t.render();
        assert!(
            out.contains("bad\\u{1b}[31mred\\u{d}\\u{202e}evil"),
            "{out}"
        );
        assert!(!out.contains('\x1b'));
        assert!(
            out.lines().all(|l| l.chars().count() <= MAX_CELL),
            "bounded"
        );
        assert!(out.lines().nth(2).unwrap().ends_with('…'));
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(or_dash(None::<i32>), "-");
    }
}
