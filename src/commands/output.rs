//! Output for people: aligned columns (as `docker volume ls` prints them), sizes in kB/MB/GB, and
//! the one escaping of text a tenant may have written (file names, annotations, scope strings)
//! before a terminal sees it.

use std::borrow::Cow;

/// Text as `ls -b` shows a file name: what a terminal would act on is written as an escape, so
/// that a tenant's text can neither forge an output line (`\n`) nor drive the operator's terminal
/// (`\033`). `\a \b \t \n \v \f \r` and `\\` as in C; every other control character (C0,
/// DEL, C1), the Unicode characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters, line and paragraph separators, BOM) and invalid UTF-8 as
/// `\ooo`, one octal escape per byte. A literal backslash is doubled, so the output reads back
/// unambiguously. Everything else, spaces and printable non-ASCII included, is kept.
///
/// Used for every table cell, every line of `volume diff` and every error line (stderr and the
/// runtime's `--log`); `--format json` output is not passed through it (serde's escaping is exact).
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(needs_escape)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if needs_escape(c) {
                escape_char(c, &mut out);
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    Cow::Owned(out)
}

/// [`escape_bytes`] of a string.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_bytes(s.as_bytes())
}

/// [`escape_bytes`] of a path (which may not be UTF-8).
pub fn escape_path(p: &std::path::Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(p.as_os_str().as_bytes())
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}') // zero-width no-break space (BOM)
}

fn escape_char(c: char, out: &mut String) {
    let short = match c {
        '\\' => "\\\\",
        '\u{7}' => "\\a",
        '\u{8}' => "\\b",
        '\t' => "\\t",
        '\n' => "\\n",
        '\u{b}' => "\\v",
        '\u{c}' => "\\f",
        '\r' => "\\r",
        _ => "",
    };
    if !short.is_empty() {
        out.push_str(short);
        return;
    }
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("\\{b:03o}"));
    }
}

/// An error and its causes joined with `: `, not yet escaped. A cause whose message the line
/// already ends with is left out: an error that shows its source in its own message (a
/// thiserror `"{path}: {source}"` with a `source` field, an anyhow context written as
/// `format!("…: {e}")`) is also followed by that source in the chain, and the line must not
/// say it twice.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.is_empty() {
            line = cause;
        } else if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

/// An error and its causes on one escaped line: what ocivol prints after `ocivol: ` on stderr.
pub fn error_line(e: &anyhow::Error) -> String {
    escape(&error_chain(e)).into_owned()
}

/// Columns padded to the widest cell plus three spaces; the last column is not padded. Every
/// cell is [`escape`]d.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c).into_owned()).collect())
        .collect();
    let rows = &rows[..];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size as Docker prints one: decimal units, at most four significant digits (`0B`, `14B`,
/// `4.096kB`, `1.5MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let mut text = format!("{value:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        for (n, s) in [
            (0, "0B"),
            (14, "14B"),
            (999, "999B"),
            (1000, "1kB"),
            (4096, "4.096kB"),
            (1_500_000, "1.5MB"),
            (123_456_789, "123.5MB"),
            (5_000_000_000, "5GB"),
        ] {
            assert_eq!(human_size(n), s, "{n}");
        }
    }

    #[test]
    fn escaping_shows_what_a_terminal_would_act_on() {
        for (raw, shown) in [
            (&b"plain name.txt"[..], "plain name.txt"),
            (b"x\nC /etc/shadow", "x\\nC /etc/shadow"),
            (b"\x1b[31mred\x1b[0m", "\\033[31mred\\033[0m"),
            (b"a\\nb", "a\\\\nb"),
            (b"tab\there\r", "tab\\there\\r"),
            (b"del\x7f nul\x00", "del\\177 nul\\000"),
            (b"bell\x07", "bell\\a"),
            ("caf\u{e9} \u{65e5}".as_bytes(), "caf\u{e9} \u{65e5}"),
            ("c1\u{9b}".as_bytes(), "c1\\302\\233"),
            ("rtl\u{202e}txt".as_bytes(), "rtl\\342\\200\\256txt"),
            (b"bad\xff\xfeutf8", "bad\\377\\376utf8"),
        ] {
            assert_eq!(escape_bytes(raw), shown, "{raw:?}");
        }
        assert!(matches!(escape("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn error_lines_are_one_escaped_line() {
        let e = anyhow::anyhow!("entry \"a\x1bb\": bad\nline").context("annotation x");
        assert_eq!(
            error_line(&e),
            "annotation x: entry \"a\\033b\": bad\\nline"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("{path}: {source}")]
        struct Shows {
            path: String,
            source: std::io::Error,
        }
        let io = || std::io::Error::from_raw_os_error(2);
        let e = anyhow::Error::from(Shows {
            path: "/x".into(),
            source: io(),
        })
        .context("load the spec");
        let line = error_chain(&e);
        assert_eq!(line, format!("load the spec: /x: {}", io()));
        // A cause that is not at the end of the line is still shown.
        let e = anyhow::Error::from(io()).context(format!("open /y ({})", io()));
        assert_eq!(error_chain(&e).matches("os error 2").count(), 2);
    }

    #[test]
    fn table_cells_are_escaped_before_they_are_aligned() {
        let t = table(
            &["ID", "SCOPE"],
            &[
                vec!["a".into(), "root:/x\ny".into()],
                vec!["b".into(), "k".into()],
            ],
        );
        assert_eq!(t, "ID   SCOPE\na    root:/x\\ny\nb    k\n");
    }

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let t = table(
            &["NAME", "KIND", "USERS"],
            &[
                vec!["a".into(), "plain".into(), "0".into()],
                vec!["longer-name".into(), "cow".into(), "12".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          KIND    USERS\na             plain   0\nlonger-name   cow     12\n"
        );
    }
}
