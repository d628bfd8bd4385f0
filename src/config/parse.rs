//! Reading `config.toml`: a walk over the parsed document that knows every key, so that an
//! unknown key or a value of the wrong type is refused with its name, its table and its line
//! (serde's derive would say "unknown field" without the table, and with a multi-line snippet).
//! The walk fills a [`Config`] that starts as the defaults and records the line of each key
//! it set, for `ocivol config` to say where a value came from.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml_edit::{Item, Value};

use super::{AllowedPath, Config, FORCE_OPTIONS, POLICY_KEYS, TOP_KEYS, VolumesFromScope};
use crate::mounts::flags::MountFlags;

/// A config text that cannot be used: the line it is on (when the parser knows it) and what is
/// wrong, naming the key. Always one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The line on which each key that the file set stands, by its dotted name
/// (`runtime`, `policy.allowed_bases`).
pub type KeyLines = BTreeMap<&'static str, usize>;

struct Walk<'t> {
    text: &'t str,
    lines: KeyLines,
}

/// One entry of a table (a `[table]`, a dotted-key table or an inline table).
struct Entry<'a> {
    name: &'a str,
    span: Option<Range<usize>>,
    value: Node<'a>,
}

enum Node<'a> {
    Value(&'a Value),
    Table(Vec<Entry<'a>>),
    Other(&'static str),
}

fn entries_of_table(t: &toml_edit::Table) -> Vec<Entry<'_>> {
    t.iter()
        .map(|(name, item)| Entry {
            name,
            span: t.key(name).and_then(|k| k.span()).or_else(|| item.span()),
            value: node(item),
        })
        .collect()
}

fn entries_of_inline(t: &toml_edit::InlineTable) -> Vec<Entry<'_>> {
    t.iter()
        .map(|(name, value)| Entry {
            name,
            span: t.key(name).and_then(|k| k.span()).or_else(|| value.span()),
            value: Node::Value(value),
        })
        .collect()
}

fn node(item: &Item) -> Node<'_> {
    match item {
        Item::Value(v) => Node::Value(v),
        Item::Table(t) => Node::Table(entries_of_table(t)),
        other => Node::Other(other.type_name()),
    }
}

/// "a string", "an integer": how a TOML type is named in a message.
fn a(type_name: &str) -> String {
    let article = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {type_name}")
}

fn found(n: &Node) -> String {
    match n {
        Node::Value(v) => a(v.type_name()),
        Node::Table(_) => "a table".into(),
        Node::Other(t) => a(t),
    }
}

impl Walk<'_> {
    fn line(&self, span: &Option<Range<usize>>) -> Option<usize> {
        span.as_ref().map(|s| line_at(self.text, s.start))
    }

    fn err(&self, span: &Option<Range<usize>>, message: String) -> ParseError {
        ParseError {
            line: self.line(span),
            message,
        }
    }

    fn unknown(&self, e: &Entry, place: &str, known: &[&str]) -> ParseError {
        self.err(
            &e.span,
            format!(
                "unknown key {:?} {place}; known keys: {}",
                e.name,
                known.join(", ")
            ),
        )
    }

    fn string(&self, key: &str, e: &Entry) -> Result<String, ParseError> {
        match &e.value {
            Node::Value(Value::String(s)) => Ok(s.value().clone()),
            other => Err(self.err(
                &e.span,
                format!("{key}: expected a string, found {}", found(other)),
            )),
        }
    }

    fn boolean(&self, key: &str, e: &Entry) -> Result<bool, ParseError> {
        match &e.value {
            Node::Value(Value::Boolean(b)) => Ok(*b.value()),
            other => Err(self.err(
                &e.span,
                format!("{key}: expected true or false, found {}", found(other)),
            )),
        }
    }

    fn array<'a>(&self, key: &str, e: &'a Entry) -> Result<&'a toml_edit::Array, ParseError> {
        match &e.value {
            Node::Value(Value::Array(a)) => Ok(a),
            other => Err(self.err(
                &e.span,
                format!("{key}: expected an array, found {}", found(other)),
            )),
        }
    }

    fn top(&mut self, entries: &[Entry]) -> Result<Config, ParseError> {
        let mut c = Config::default();
        for e in entries {
            match e.name {
                "runtime" => {
                    c.runtime = self.string("runtime", e)?;
                    self.set("runtime", e);
                }
                "root" => {
                    c.root = PathBuf::from(self.string("root", e)?);
                    self.set("root", e);
                }
                "run_root" => {
                    c.run_root = PathBuf::from(self.string("run_root", e)?);
                    self.set("run_root", e);
                }
                "overlay_linger" => {
                    c.overlay_linger = match &e.value {
                        Node::Value(Value::Integer(n)) if *n.value() >= 0 => {
                            std::time::Duration::from_secs(*n.value() as u64)
                        }
                        Node::Value(Value::String(s)) => super::parse_duration(s.value())
                            .map_err(|m| self.err(&e.span, format!("overlay_linger: {m}")))?,
                        other => {
                            return Err(self.err(
                                &e.span,
                                format!(
                                    "overlay_linger: expected seconds or a string such as \"30s\", found {}",
                                    found(other)
                                ),
                            ));
                        }
                    };
                    self.set("overlay_linger", e);
                }
                "policy" => match &e.value {
                    Node::Table(t) => self.policy(t, &mut c)?,
                    Node::Value(Value::InlineTable(t)) => {
                        self.policy(&entries_of_inline(t), &mut c)?
                    }
                    other => {
                        return Err(self.err(
                            &e.span,
                            format!(
                                "policy: expected a table ([policy]), found {}",
                                found(other)
                            ),
                        ));
                    }
                },
                _ => return Err(self.unknown(e, "at the top level", TOP_KEYS)),
            }
        }
        Ok(c)
    }

    fn set(&mut self, key: &'static str, e: &Entry) {
        if let Some(n) = self.line(&e.span) {
            self.lines.insert(key, n);
        }
    }

    fn policy(&mut self, entries: &[Entry], c: &mut Config) -> Result<(), ParseError> {
        let p = &mut c.policy;
        for e in entries {
            let key: &'static str = match POLICY_KEYS.iter().find(|k| **k == e.name) {
                Some(k) => k,
                None => return Err(self.unknown(e, "in [policy]", POLICY_KEYS)),
            };
            let full = full_key(key);
            match key {
                "allowed_bases" => p.allowed_bases = self.allowed(full, e)?,
                "allowed_bind_sources" => p.allowed_bind_sources = self.allowed(full, e)?,
                "auto_create" => p.auto_create = self.boolean(full, e)?,
                "shared_volumes" => {
                    let mut names = Vec::new();
                    for v in self.array(full, e)? {
                        match v.as_str() {
                            Some(s) => names.push(s.to_string()),
                            None => {
                                return Err(self.err(
                                    &v.span().or(e.span.clone()),
                                    format!(
                                        "{full}: expected volume names (strings), found {}",
                                        a(v.type_name())
                                    ),
                                ));
                            }
                        }
                    }
                    p.shared_volumes = names;
                }
                "max_volumes_per_container" => {
                    p.max_volumes_per_container = match &e.value {
                        Node::Value(Value::Integer(n)) => {
                            usize::try_from(*n.value()).map_err(|_| {
                                self.err(&e.span, format!("{full}: must be at least 1"))
                            })?
                        }
                        other => {
                            return Err(self.err(
                                &e.span,
                                format!("{full}: expected an integer, found {}", found(other)),
                            ));
                        }
                    }
                }
                "volumes_from_scope" => {
                    let s = self.string(full, e)?;
                    p.volumes_from_scope = match s.as_str() {
                        "namespace" => VolumesFromScope::Namespace,
                        "any" => VolumesFromScope::Any,
                        _ => {
                            return Err(self.err(
                                &e.span,
                                format!("{full}: {s:?} is neither \"namespace\" nor \"any\""),
                            ));
                        }
                    }
                }
                _ => unreachable!("every key of POLICY_KEYS is read above"),
            }
            self.set(full, e);
        }
        Ok(())
    }

    /// `allowed_bases` or `allowed_bind_sources`: paths, or `{ path = …, options = […] }`.
    fn allowed(&self, key: &str, e: &Entry) -> Result<Vec<AllowedPath>, ParseError> {
        let mut out = Vec::new();
        for v in self.array(key, e)? {
            let span = v.span().or(e.span.clone());
            match v {
                Value::String(s) => out.push(AllowedPath::new(s.value())),
                Value::InlineTable(t) => {
                    let mut path = None;
                    let mut force = MountFlags::default();
                    for f in entries_of_inline(t) {
                        match f.name {
                            "path" => path = Some(self.string(&format!("{key}: path"), &f)?),
                            "options" => {
                                for o in self.array(&format!("{key}: options"), &f)? {
                                    let flag = match o.as_str() {
                                        Some("readonly") => &mut force.readonly,
                                        Some("nosuid") => &mut force.nosuid,
                                        Some("nodev") => &mut force.nodev,
                                        Some("noexec") => &mut force.noexec,
                                        _ => {
                                            return Err(self.err(
                                                &o.span().or(f.span.clone()),
                                                format!(
                                                    "{key}: unknown option {}; known options: {}",
                                                    match o.as_str() {
                                                        Some(s) => format!("{s:?}"),
                                                        None => a(o.type_name()),
                                                    },
                                                    FORCE_OPTIONS.join(", ")
                                                ),
                                            ));
                                        }
                                    };
                                    *flag = true;
                                }
                            }
                            _ => {
                                return Err(self.unknown(
                                    &f,
                                    &format!("in an entry of {key}"),
                                    &["path", "options"],
                                ));
                            }
                        }
                    }
                    let Some(path) = path else {
                        return Err(self.err(
                            &span,
                            format!("{key}: an entry has no path (write {{ path = \"/srv/x\", options = [\"readonly\"] }})"),
                        ));
                    };
                    out.push(AllowedPath {
                        path: path.into(),
                        force,
                    });
                }
                other => {
                    return Err(self.err(
                        &span,
                        format!(
                            "{key}: expected a path or {{ path = \"…\", options = […] }}, found {}",
                            a(other.type_name())
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// `policy.KEY` for a key of [`POLICY_KEYS`].
fn full_key(key: &'static str) -> &'static str {
    match key {
        "allowed_bases" => "policy.allowed_bases",
        "allowed_bind_sources" => "policy.allowed_bind_sources",
        "auto_create" => "policy.auto_create",
        "shared_volumes" => "policy.shared_volumes",
        "max_volumes_per_container" => "policy.max_volumes_per_container",
        "volumes_from_scope" => "policy.volumes_from_scope",
        _ => unreachable!("not a policy key: {key}"),
    }
}

/// The 1-based line of a byte offset.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses config.toml text into a config (not yet validated) and the line of each key set.
pub fn parse(text: &str) -> Result<(Config, KeyLines), ParseError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| ParseError {
        line: e.span().map(|s| line_at(text, s.start)),
        message: format!(
            "not valid TOML: {}",
            e.message().split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    })?;
    let mut walk = Walk {
        text,
        lines: KeyLines::new(),
    };
    let config = walk.top(&entries_of_table(doc.as_table()))?;
    Ok((config, walk.lines))
}
