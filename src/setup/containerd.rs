//! containerd's config.toml: the `ocivol` runtime handler of the CRI plugin, added to the file as
//! it is (comments, order and formatting kept, by `toml_edit`).
//!
//! The table layout follows the file's own `version`:
//! - `version = 2` (containerd 1.6, 1.7; containerd 2 converts it at load):
//!   `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME`;
//! - `version = 3` (containerd 2): `plugins."io.containerd.cri.v1.runtime".containerd.runtimes.NAME`.
//!
//! Two traps decide what is refused. containerd 2 converts a version 2 file at load, but copies
//! a v2 key into the v3 table only if that table does not already have it: a v3
//! `io.containerd.cri.v1.runtime` section written into a v2 file (the v3 drop-in appended) makes
//! every handler of the v2 section vanish, runc's options included. And an `imports` of a file
//! of another version makes containerd ignore one of the two CRI sections. Both are silent, so
//! setup refuses files in either state, and `imports` that bring a CRI section of their own.
//!
//! The handler gets the runc handler's options (SystemdCgroup, Root, …) and its other keys, so
//! that its containers are made as runc's are, with `BinaryName` set to ocivol-runtime, and
//! annotation patterns that let every ocivol key through (see [`super::ANNOTATION_PATTERNS`]).
//! A file with no `runtimes.runc` gets one too: once a runtimes table exists, containerd's
//! built-in runc handler (the CRI's default) is gone.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use super::{ANNOTATION_PATTERNS, HANDLER, MARK, Result, SetupError};

/// The default path of containerd's config.
pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

const RUNC_V2: &str = "io.containerd.runc.v2";
const V2_PLUGIN: &str = "io.containerd.grpc.v1.cri";
const V3_PLUGIN: &str = "io.containerd.cri.v1.runtime";

/// The config format a file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> i64 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The CRI plugin whose `containerd.runtimes` holds the handlers.
    pub fn plugin(self) -> &'static str {
        match self {
            Version::V2 => V2_PLUGIN,
            Version::V3 => V3_PLUGIN,
        }
    }

    /// `plugins."PLUGIN".containerd.runtimes`, as a table header names it.
    pub fn runtimes_header(self) -> String {
        format!("plugins.\"{}\".containerd.runtimes", self.plugin())
    }

    /// The version for a new file: 3 for containerd 2 and later, else 2 (which every release
    /// since 1.3 reads, containerd 2 by converting it).
    pub fn for_containerd(major: Option<u64>) -> Version {
        match major {
            Some(m) if m >= 2 => Version::V3,
            _ => Version::V2,
        }
    }
}

/// What setup puts in the handler.
#[derive(Debug, Clone)]
pub struct Options {
    /// ocivol-runtime, as `BinaryName`.
    pub runtime_path: PathBuf,
    /// The version a new (missing or empty) file gets.
    pub new_file_version: Version,
}

fn refused(msg: String) -> SetupError {
    SetupError::Refused(msg)
}

/// Parses a config, refusing one that is not TOML.
pub fn parse(path: &Path, text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        refused(format!(
            "{} is not valid TOML ({}); containerd would not start with it either: fix it by hand, then run `ocivol setup containerd` again",
            path.display(),
            one_line(&e.to_string())
        ))
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `version` a document declares: `Ok(None)` for none at all (containerd reads that as
/// version 1).
fn declared_version(path: &Path, doc: &DocumentMut) -> Result<Option<i64>> {
    match doc.get("version") {
        None => Ok(None),
        Some(item) => item.as_integer().map(Some).ok_or_else(|| {
            refused(format!(
                "{}: `version` is not a number; containerd expects `version = 2` or `version = 3`: fix it by hand",
                path.display()
            ))
        }),
    }
}

/// The layout of a document, or why setup will not edit it. A document with nothing in it is
/// `None` (a new file).
fn layout(path: &Path, doc: &DocumentMut) -> Result<Option<Version>> {
    let version = match declared_version(path, doc)? {
        Some(2) => Version::V2,
        Some(3) => Version::V3,
        Some(n) => {
            return Err(refused(format!(
                "{}: config version {n} is not one ocivol setup knows (2: containerd 1.x, 3: containerd 2); add the ocivol handler by hand (docs/INSTALL.md)",
                path.display()
            )));
        }
        None if doc.as_table().is_empty() => return Ok(None),
        None => {
            return Err(refused(format!(
                "{} has no `version`, so containerd reads it as a version 1 config, whose layout ocivol setup does not edit; convert it to version 2 (`containerd config migrate` of containerd 2 writes version 3) and run `ocivol setup containerd` again",
                path.display()
            )));
        }
    };
    // The silent trap: tables of the other layout in this file.
    let plugins = doc.get("plugins").and_then(Item::as_table_like);
    let has = |plugin: &str, key: &str| {
        plugins
            .and_then(|p| p.get(plugin))
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(key))
    };
    match version {
        Version::V2 if plugins.is_some_and(|p| p.contains_key(V3_PLUGIN)) => {
            return Err(refused(format!(
                "{} says `version = 2` but has a `plugins.\"{V3_PLUGIN}\"` section, a version 3 table: containerd 2 converts a version 2 file at load and then ignores every v2 handler and runc option this section does not repeat, and containerd 1.x ignores the section; move its settings into `plugins.\"{V2_PLUGIN}\"` (or convert the whole file to version 3) by hand, then run `ocivol setup containerd` again",
                path.display()
            )));
        }
        Version::V3 if has(V2_PLUGIN, "containerd") => {
            return Err(refused(format!(
                "{} says `version = 3` but has `plugins.\"{V2_PLUGIN}\".containerd`, a version 2 table that containerd 2 ignores in a version 3 file; move it to `plugins.\"{V3_PLUGIN}\".containerd` by hand, then run `ocivol setup containerd` again",
                path.display()
            )));
        }
        _ => {}
    }
    Ok(Some(version))
}

/// The file names an `imports` entry stands for: the path relative to the config's directory,
/// with `*` and `?` in its last component matched against that directory (containerd uses
/// `filepath.Glob`). Missing files name nothing.
fn resolve_import(config: &Path, entry: &str) -> Vec<PathBuf> {
    let base = config.parent().unwrap_or(Path::new("/"));
    let path = if Path::new(entry).is_absolute() {
        PathBuf::from(entry)
    } else {
        base.join(entry)
    };
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?', '[']) {
        return if path.exists() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| super::go_path_match(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Reads the files `imports` names and refuses when containerd would ignore or replace what
/// setup writes: an imported file of another version (containerd then ignores one of the two
/// CRI sections, silently), or one with a CRI section of its own (containerd 1.x replaces a
/// plugin's whole table with the imported one).
pub fn check_imports(path: &Path, doc: &DocumentMut, version: Version) -> Result<()> {
    let Some(imports) = doc.get("imports") else {
        return Ok(());
    };
    let Some(list) = imports.as_array() else {
        return Err(refused(format!(
            "{}: `imports` is not a list of paths; fix it by hand",
            path.display()
        )));
    };
    for entry in list.iter() {
        let Some(entry) = entry.as_str() else {
            continue;
        };
        for imported in resolve_import(path, entry) {
            let text =
                std::fs::read_to_string(&imported).map_err(|e| SetupError::io(&imported, e))?;
            let idoc = parse(&imported, &text)?;
            let iversion = declared_version(&imported, &idoc)?.unwrap_or(1);
            if iversion != version.number() {
                return Err(refused(format!(
                    "{} (version {}) imports {} (version {iversion}): containerd silently ignores one of the two files' CRI sections when their versions differ; make them the same version by hand (or fold the imported tables into {}), then run `ocivol setup containerd` again",
                    path.display(),
                    version.number(),
                    imported.display(),
                    path.display()
                )));
            }
            let has_cri = idoc
                .get("plugins")
                .and_then(Item::as_table_like)
                .is_some_and(|p| p.contains_key(version.plugin()));
            if has_cri {
                return Err(refused(format!(
                    "{} imports {}, which has a `plugins.\"{}\"` section of its own: containerd 1.x replaces this file's section with it, so a handler added here could vanish; run `ocivol setup containerd --config {}` to add it there, or fold that section into {} by hand",
                    path.display(),
                    imported.display(),
                    version.plugin(),
                    imported.display(),
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// The `runtimes` table of a layout, made (as implicit tables, which print no header) where
/// missing. Refuses a path that is an inline table or a value.
fn runtimes_mut<'a>(
    path: &Path,
    doc: &'a mut DocumentMut,
    version: Version,
) -> Result<&'a mut Table> {
    let mut table = doc.as_table_mut();
    for key in ["plugins", version.plugin(), "containerd", "runtimes"] {
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = item.as_table_mut().ok_or_else(|| {
            refused(format!(
                "{}: `{key}` on the way to [{}] is written as an inline table or a value, which ocivol setup does not edit; write it as [table] sections, or add the handler by hand",
                path.display(),
                version.runtimes_header()
            ))
        })?;
    }
    Ok(table)
}

fn runtimes(doc: &DocumentMut, version: Version) -> Option<&Table> {
    doc.get("plugins")?
        .get(version.plugin())?
        .get("containerd")?
        .get("runtimes")?
        .as_table()
}

/// A value written afresh (plain formatting, double-quoted strings), for a table setup writes
/// and for comparing values whatever their formatting.
fn plain(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::from(s.value().as_str()),
        Value::Integer(i) => Value::from(*i.value()),
        Value::Float(f) => Value::from(*f.value()),
        Value::Boolean(b) => Value::from(*b.value()),
        Value::Datetime(d) => Value::from(*d.value()),
        Value::Array(a) => {
            let mut out = Array::new();
            for x in a.iter() {
                out.push_formatted(plain(x));
            }
            out.fmt();
            Value::Array(out)
        }
        Value::InlineTable(t) => {
            let mut out = toml_edit::InlineTable::new();
            for (k, x) in t.iter() {
                out.insert(k, plain(x));
            }
            out.fmt();
            Value::InlineTable(out)
        }
    }
}

/// The strings of an array value (others are skipped).
fn strings(item: Option<&Item>) -> Vec<String> {
    item.and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A comparable form of a table's content, formatting left out.
fn canonical(t: &Table) -> String {
    fn value(v: &Value, out: &mut String) {
        match v {
            Value::Array(a) => {
                out.push('[');
                for x in a.iter() {
                    value(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::InlineTable(t) => {
                out.push('{');
                for (k, x) in t.iter() {
                    out.push_str(&format!("{k:?}="));
                    value(x, out);
                    out.push(',');
                }
                out.push('}');
            }
            other => out.push_str(&plain(other).to_string()),
        }
    }
    fn table(t: &Table, out: &mut String) {
        for (k, item) in t.iter() {
            out.push_str(&format!("{k:?}="));
            match item {
                Item::Value(v) => value(v, out),
                Item::Table(t) => {
                    out.push('{');
                    table(t, out);
                    out.push('}');
                }
                Item::ArrayOfTables(a) => {
                    for t in a.iter() {
                        out.push('{');
                        table(t, out);
                        out.push('}');
                    }
                }
                Item::None => {}
            }
            out.push(';');
        }
    }
    let mut out = String::new();
    table(t, &mut out);
    out
}

fn comment(indent: &str, lines: &[&str]) -> String {
    let mut s = String::from("\n");
    for l in lines {
        s.push_str(indent);
        s.push_str("# ");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(indent);
    s
}

/// The runc handler setup adds when the file has none.
fn added_runc() -> Table {
    let mut t = Table::new();
    t.decor_mut().set_prefix(comment(
        "",
        &[&format!(
            "{MARK}: a config with a runtimes table of its own no longer has containerd's built-in runc handler, the CRI's default."
        )],
    ));
    t.insert("runtime_type", toml_edit::value(RUNC_V2));
    indent_keys(&mut t, "  ");
    t
}

fn indent_keys(t: &mut Table, indent: &str) {
    let keys: Vec<String> = t
        .iter()
        .filter(|(_, i)| i.is_value())
        .map(|(k, _)| k.to_string())
        .collect();
    for k in keys {
        if let Some(mut key) = t.key_mut(&k) {
            key.leaf_decor_mut().set_prefix(indent);
        }
    }
}

/// The ocivol handler, from the runc handler (if any): runc's keys and options, then ours.
fn handler(runc: Option<&Table>, opts: &Options) -> Table {
    let mut t = Table::new();
    t.decor_mut().set_prefix(comment(
        "",
        &[&format!(
            "{MARK}: the runtime handler \"{HANDLER}\" (RuntimeClass handler: {HANDLER}), runc's with ocivol-runtime as its binary. `ocivol setup containerd --remove` takes it out."
        )],
    ));
    t.insert("runtime_type", toml_edit::value(RUNC_V2));
    let runc_is_v2 = runc
        .and_then(|r| r.get("runtime_type"))
        .and_then(Item::as_str)
        .is_none_or(|ty| ty == RUNC_V2);
    let skip = [
        "runtime_type",
        "options",
        "pod_annotations",
        "container_annotations",
    ];
    if let Some(runc) = runc.filter(|_| runc_is_v2) {
        for (k, item) in runc.iter() {
            if let Item::Value(v) = item
                && !skip.contains(&k)
            {
                t.insert(k, Item::Value(plain(v)));
            }
        }
    }
    for key in ["pod_annotations", "container_annotations"] {
        let mut patterns: Vec<String> = if runc_is_v2 {
            strings(runc.and_then(|r| r.get(key)))
        } else {
            Vec::new()
        };
        for p in ANNOTATION_PATTERNS {
            if !patterns.iter().any(|x| x == p) {
                patterns.push(p.to_string());
            }
        }
        let mut a = Array::new();
        for p in patterns {
            a.push(p);
        }
        t.insert(key, toml_edit::value(a));
    }
    indent_keys(&mut t, "  ");
    let mut options = Table::new();
    options.decor_mut().set_prefix("\n  ");
    if let Some(ro) = runc
        .filter(|_| runc_is_v2)
        .and_then(|r| r.get("options"))
        .and_then(Item::as_table_like)
    {
        for (k, item) in ro.iter() {
            if let Some(v) = item.as_value()
                && k != "BinaryName"
            {
                options.insert(k, Item::Value(plain(v)));
            }
        }
    }
    options.insert(
        "BinaryName",
        toml_edit::value(opts.runtime_path.to_string_lossy().into_owned()),
    );
    indent_keys(&mut options, "    ");
    t.insert("options", Item::Table(options));
    t
}

/// Sets a table's position (and its sub-tables') for the document's printing order.
fn set_position(t: &mut Table, position: Option<isize>) {
    t.set_position(position);
    for (_, item) in t.iter_mut() {
        if let Item::Table(sub) = item {
            set_position(sub, position);
        }
    }
}

/// The text of `before` (the file, `None` if missing) with the ocivol handler added or brought
/// up to date; `before` itself when it already has it. Notes for the operator (not errors) are
/// pushed on `notes`.
pub fn add(
    path: &Path,
    before: Option<&str>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<String> {
    let text = before.unwrap_or("");
    let mut doc = parse(path, text)?;
    let version = match layout(path, &doc)? {
        Some(v) => v,
        None => {
            // A new (or empty) file: it gets a version, marked so that --remove takes it back.
            let v = opts.new_file_version;
            let mut key = toml_edit::Key::new("version");
            let what = if before.is_some() {
                "this file had no settings"
            } else {
                "this file did not exist"
            };
            key.leaf_decor_mut().set_prefix(format!(
                "# {MARK} ({what}): config version {} is what containerd {} reads as it is.\n",
                v.number(),
                if v == Version::V3 { "2" } else { "1.x" }
            ));
            doc.as_table_mut()
                .insert_formatted(&key, toml_edit::value(v.number()));
            v
        }
    };
    check_imports(path, &doc, version)?;
    let header = version.runtimes_header();
    let runtimes = runtimes_mut(path, &mut doc, version)?;
    let runc = match runtimes.get("runc") {
        None => None,
        Some(Item::Table(t)) => Some(t.clone()),
        Some(_) => {
            return Err(refused(format!(
                "{}: [{header}.runc] is written inline, which ocivol setup does not edit; write it as [table] sections, or add the handler by hand",
                path.display()
            )));
        }
    };
    if let Some(runc) = &runc {
        if let Some(ty) = runc.get("runtime_type").and_then(Item::as_str)
            && ty != RUNC_V2
        {
            notes.push(format!(
                "the runc handler's runtime_type is {ty}, not {RUNC_V2}: its options were not copied to the {HANDLER} handler"
            ));
        }
        if let Some(bin) = runc
            .get("options")
            .and_then(|o| o.get("BinaryName"))
            .and_then(Item::as_str)
        {
            notes.push(format!(
                "the runc handler runs BinaryName {bin}: set runtime = \"{bin}\" in /etc/ocivol/config.toml so that ocivol runs that runc too"
            ));
        }
    }
    let wanted = handler(runc.as_ref(), opts);
    match runtimes.get(HANDLER) {
        Some(Item::Table(existing)) if canonical(existing) == canonical(&wanted) => {}
        Some(Item::Table(existing)) => {
            let mut wanted = wanted;
            set_position(&mut wanted, existing.position());
            runtimes.insert(HANDLER, Item::Table(wanted));
        }
        Some(_) => {
            return Err(refused(format!(
                "{}: [{header}.{HANDLER}] is written inline, which ocivol setup does not edit; remove it (or write it as [table] sections) and run `ocivol setup containerd` again",
                path.display()
            )));
        }
        None => {
            runtimes.insert(HANDLER, Item::Table(wanted));
        }
    }
    if runc.is_none() {
        // Before ocivol in the printing order: containerd's own handler first.
        let ocivol = runtimes.remove(HANDLER);
        runtimes.insert("runc", Item::Table(added_runc()));
        if let Some(o) = ocivol {
            runtimes.insert(HANDLER, o);
        }
    }
    let out = doc.to_string();
    Ok(if before.is_some_and(|b| b == out) {
        text.to_string()
    } else {
        out
    })
}

/// Whether a decor prefix carries setup's mark.
fn marked(prefix: Option<&str>) -> bool {
    prefix.is_some_and(|p| p.contains(MARK))
}

/// The text of `before` without what [`add`] put there: the ocivol handler, the runc handler
/// and `version` if setup added them. `None` when the file should go (setup created it and
/// nothing else is in it).
pub fn remove(path: &Path, before: &str, notes: &mut Vec<String>) -> Result<Option<String>> {
    let mut doc = parse(path, before)?;
    let version_prefix = doc
        .as_table()
        .key("version")
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let version = match declared_version(path, &doc)? {
        Some(3) => Version::V3,
        Some(2) => Version::V2,
        _ => return Ok(Some(before.to_string())),
    };
    if let Some(runtimes) = doc
        .get_mut("plugins")
        .and_then(Item::as_table_like_mut)
        .and_then(|p| p.get_mut(version.plugin()))
        .and_then(Item::as_table_like_mut)
        .and_then(|p| p.get_mut("containerd"))
        .and_then(Item::as_table_like_mut)
        .and_then(|p| p.get_mut("runtimes"))
        .and_then(Item::as_table_mut)
    {
        runtimes.remove(HANDLER);
        if let Some(Item::Table(runc)) = runtimes.get("runc")
            && marked(runc.decor().prefix().and_then(|p| p.as_str()))
        {
            if canonical(runc) == canonical(&added_runc()) {
                runtimes.remove("runc");
            } else {
                notes.push(format!(
                    "[{}.runc] was added by ocivol setup but has changed since: it stays",
                    version.runtimes_header()
                ));
            }
        }
    }
    let created = version_prefix
        .as_deref()
        .is_some_and(|p| p.contains(MARK) && p.contains("did not exist"));
    if marked(version_prefix.as_deref()) && only_version_left(&doc) {
        if created && doc.trailing().as_str().is_none_or(|s| s.trim().is_empty()) {
            return Ok(None);
        }
        doc.as_table_mut().remove("version");
    }
    let out = doc.to_string();
    Ok(Some(if out == before {
        before.to_string()
    } else {
        out
    }))
}

/// Whether nothing but `version` (and empty implicit tables) is left.
fn only_version_left(doc: &DocumentMut) -> bool {
    fn empty(t: &Table) -> bool {
        t.iter().all(|(_, i)| match i {
            Item::Table(s) => s.is_implicit() && empty(s),
            _ => false,
        })
    }
    doc.as_table()
        .iter()
        .all(|(k, i)| k == "version" || matches!(i, Item::Table(t) if t.is_implicit() && empty(t)))
}

/// What doctor needs to know of a config: the layout, the ocivol and runc handlers.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    pub version: Option<Version>,
    pub ocivol: Option<Table>,
    pub runc: Option<Table>,
}

/// Reads a config for doctor; an error is a finding.
pub fn inspect(path: &Path, text: &str) -> Result<Handlers> {
    let doc = parse(path, text)?;
    let Some(version) = layout(path, &doc)? else {
        return Ok(Handlers::default());
    };
    check_imports(path, &doc, version)?;
    let r = runtimes(&doc, version);
    Ok(Handlers {
        version: Some(version),
        ocivol: r
            .and_then(|r| r.get(HANDLER))
            .and_then(Item::as_table)
            .cloned(),
        runc: r
            .and_then(|r| r.get("runc"))
            .and_then(Item::as_table)
            .cloned(),
    })
}

/// The options of a handler as `(key, value as TOML)` pairs, for doctor's comparisons.
pub fn options_of(handler: &Table) -> Vec<(String, String)> {
    handler
        .get("options")
        .and_then(Item::as_table_like)
        .map(|o| {
            o.iter()
                .filter_map(|(k, i)| i.as_value().map(|v| (k.to_string(), plain(v).to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A handler's string key.
pub fn handler_str(handler: &Table, key: &str) -> Option<String> {
    handler.get(key).and_then(Item::as_str).map(str::to_string)
}

/// A handler's list of strings.
pub fn handler_strings(handler: &Table, key: &str) -> Vec<String> {
    strings(handler.get(key))
}

/// The major version of a `containerd --version` line (`containerd github.com/containerd/containerd/v2 2.1.9+unknown`).
pub fn parse_major(version_output: &str) -> Option<u64> {
    let v = version_output.split_whitespace().nth(2)?;
    v.trim_start_matches('v').split('.').next()?.parse().ok()
}

/// The major version of the containerd installed (looked up where systems install it), if any.
pub fn installed_major() -> Option<u64> {
    for dir in crate::real_runtime::SYSTEM_PATH {
        let bin = Path::new(dir).join("containerd");
        if bin.is_file() {
            let out = std::process::Command::new(&bin)
                .arg("--version")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            return parse_major(&String::from_utf8_lossy(&out.stdout));
        }
    }
    None
}

#[cfg(test)]
mod tests;
