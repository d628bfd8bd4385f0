//! Output for people: aligned columns (as `docker volume ls` prints them) and sizes in kB/MB/GB.

/// Columns padded to the widest cell plus three spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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
