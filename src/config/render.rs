//! Writing a config as config.toml text: every key, in the order of the shipped file, each
//! optionally followed by a comment (`ocivol config` says there where the value came from).
//! What it writes reads back as the same config.

use toml_edit::{Array, InlineTable, Value};

use super::{AllowedPath, Config, VolumesFromScope};

fn string(s: &str) -> Value {
    Value::from(s)
}

fn path(p: &std::path::Path) -> Value {
    string(&p.to_string_lossy())
}

fn allowed(list: &[AllowedPath]) -> Value {
    let mut a = Array::new();
    for entry in list {
        let options = super::force_options(entry.force);
        if options.is_empty() {
            a.push(path(&entry.path));
        } else {
            let mut t = InlineTable::new();
            t.insert("path", path(&entry.path));
            t.insert("options", Value::Array(options.iter().copied().collect()));
            a.push(Value::InlineTable(t));
        }
    }
    Value::Array(a)
}

/// Each key as `(dotted name, TOML value text)`, in the order of the shipped file.
pub fn values(c: &Config) -> Vec<(&'static str, String)> {
    let p = &c.policy;
    let v = |v: Value| v.to_string().trim().to_string();
    vec![
        ("runtime", v(string(&c.runtime))),
        ("root", v(path(&c.root))),
        ("run_root", v(path(&c.run_root))),
        (
            "overlay_linger",
            v(string(&format!("{}s", c.overlay_linger.as_secs()))),
        ),
        ("policy.allowed_bases", v(allowed(&p.allowed_bases))),
        (
            "policy.allowed_bind_sources",
            v(allowed(&p.allowed_bind_sources)),
        ),
        ("policy.auto_create", v(Value::from(p.auto_create))),
        (
            "policy.shared_volumes",
            v(Value::Array(
                p.shared_volumes.iter().map(String::as_str).collect(),
            )),
        ),
        (
            "policy.max_volumes_per_container",
            v(Value::from(
                i64::try_from(p.max_volumes_per_container).unwrap_or(i64::MAX),
            )),
        ),
        (
            "policy.volumes_from_scope",
            v(string(match p.volumes_from_scope {
                VolumesFromScope::Namespace => "namespace",
                VolumesFromScope::Any => "any",
            })),
        ),
    ]
}

/// The config as TOML: `header` lines (each written as a `# ` comment), then every key, each
/// followed by `  # COMMENT` when `comment` gives one.
pub fn render(c: &Config, header: &[String], comment: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    for h in header {
        if h.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str(&format!("# {h}\n"));
        }
    }
    if !header.is_empty() {
        out.push('\n');
    }
    // Comments start in one column, past the longest line they follow (up to a point).
    let lines: Vec<(&'static str, String)> = values(c)
        .into_iter()
        .map(|(key, value)| {
            let name = key.strip_prefix("policy.").unwrap_or(key);
            (key, format!("{name} = {value}"))
        })
        .collect();
    let width = lines
        .iter()
        .map(|(_, l)| l.chars().count())
        .filter(|w| *w <= 60)
        .max()
        .unwrap_or(0);
    let mut in_policy = false;
    for (key, line) in lines {
        if key.starts_with("policy.") && !in_policy {
            out.push_str("\n[policy]\n");
            in_policy = true;
        }
        match comment(key) {
            Some(note) => {
                // One line whatever the note holds: it is a comment to the end of the line.
                let note: String = note
                    .chars()
                    .map(|ch| if ch.is_control() { ' ' } else { ch })
                    .collect();
                out.push_str(&format!("{line:<width$}  # {note}\n"));
            }
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}
