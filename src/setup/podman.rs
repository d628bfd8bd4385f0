//! podman's containers.conf: `[engine.runtimes] ocivol = ["…/ocivol-runtime"]`, edited in the file
//! as it is (comments and order kept, by `toml_edit`); with `--hooks`, the directory of ocivol's
//! hooks file in `[engine] hooks_dir` instead, when the file sets `hooks_dir` at all (without it
//! podman reads its default directory, where setup writes the hooks file).
//!
//! Why the file and not a `containers.conf.d` drop-in (podman 4.3 reads those too): a drop-in
//! that sets `hooks_dir` replaces the whole list the main file set, silently, so only an edit of
//! the file that has the list can add one directory to it. The runtimes table merges either way;
//! one place for both keeps `--remove` and doctor simple.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use super::{HANDLER, MARK, Result, SetupError};

pub const DEFAULT_CONFIG: &str = "/etc/containers/containers.conf";
/// Where podman reads hooks when containers.conf sets no `hooks_dir`.
pub const DEFAULT_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";

fn parse(path: &Path, text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        SetupError::Refused(format!(
            "{} is not valid TOML ({}); podman would not start with it either: fix it by hand, then run `ocivol setup podman` again",
            path.display(),
            e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    })
}

/// The `[engine]` table (implicit if made here) or a refusal if it is not a table.
fn engine_mut<'a>(path: &Path, doc: &'a mut DocumentMut) -> Result<&'a mut Table> {
    doc.as_table_mut()
        .entry("engine")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| {
            SetupError::Refused(format!(
                "{}: `engine` is not a [table]; add the ocivol runtime by hand",
                path.display()
            ))
        })
}

fn mark_line() -> String {
    format!(
        "# {MARK}: the runtime \"{HANDLER}\" (podman --runtime {HANDLER}); `ocivol setup podman --remove` takes it out.\n"
    )
}

/// `before` with the ocivol runtime; `before` itself when it already has it.
pub fn add(path: &Path, before: Option<&str>, runtime_path: &Path) -> Result<String> {
    let text = before.unwrap_or("");
    let mut doc = parse(path, text)?;
    let engine = engine_mut(path, &mut doc)?;
    let runtimes = engine
        .entry("runtimes")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.decor_mut().set_prefix(format!("\n{}", mark_line()));
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| {
            SetupError::Refused(format!(
                "{}: `engine.runtimes` is not a [table]; add the ocivol runtime by hand",
                path.display()
            ))
        })?;
    let wanted = runtime_path.to_string_lossy().into_owned();
    let have: Vec<String> = runtimes
        .get(HANDLER)
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if have == [wanted.clone()] {
        return Ok(text.to_string());
    }
    let fresh = !runtimes.contains_key(HANDLER);
    let mut a = Array::new();
    a.push(wanted);
    runtimes.insert(HANDLER, toml_edit::value(a));
    if fresh
        && !marked_table(runtimes)
        && let Some(mut key) = runtimes.key_mut(HANDLER)
    {
        key.leaf_decor_mut().set_prefix(mark_line());
    }
    Ok(doc.to_string())
}

fn marked_table(t: &Table) -> bool {
    t.decor()
        .prefix()
        .and_then(|p| p.as_str())
        .is_some_and(|p| p.contains(MARK))
}

/// `before` with the hooks directory added to `[engine] hooks_dir` if the file sets that list
/// and it lacks the directory; `before` itself otherwise.
pub fn add_hooks_dir(path: &Path, before: Option<&str>, hooks_dir: &Path) -> Result<String> {
    let text = before.unwrap_or("");
    let mut doc = parse(path, text)?;
    let dir = hooks_dir.to_string_lossy().into_owned();
    let Some(list) = doc
        .get_mut("engine")
        .and_then(Item::as_table_like_mut)
        .and_then(|e| e.get_mut("hooks_dir"))
    else {
        return Ok(text.to_string());
    };
    let Some(list) = list.as_array_mut() else {
        return Err(SetupError::Refused(format!(
            "{}: `engine.hooks_dir` is not a list; fix it by hand",
            path.display()
        )));
    };
    if list.iter().any(|v| v.as_str() == Some(dir.as_str())) {
        return Ok(text.to_string());
    }
    let mut v = Value::from(dir);
    // A comment inside the list marks the entry, for --remove.
    v.decor_mut()
        .set_prefix(format!("\n  # {MARK}: ocivol's hooks file.\n  "));
    list.push_formatted(v);
    Ok(doc.to_string())
}

/// `before` without what [`add`] and [`add_hooks_dir`] put there; `None` when the file should
/// go (nothing else is in it and no file was there: setup made it).
pub fn remove(path: &Path, before: &str) -> Result<Option<String>> {
    let mut doc = parse(path, before)?;
    let Some(engine) = doc.get_mut("engine").and_then(Item::as_table_mut) else {
        return Ok(Some(before.to_string()));
    };
    if let Some(runtimes) = engine.get_mut("runtimes").and_then(Item::as_table_mut) {
        runtimes.remove(HANDLER);
        if runtimes.is_empty() && marked_table(runtimes) {
            engine.remove("runtimes");
        }
    }
    if let Some(list) = engine.get_mut("hooks_dir").and_then(Item::as_array_mut) {
        let ours: Vec<usize> = list
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                v.decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .is_some_and(|p| p.contains(MARK))
            })
            .map(|(i, _)| i)
            .collect();
        if !ours.is_empty() {
            for i in ours.into_iter().rev() {
                list.remove(i);
            }
        }
    }
    let out = doc.to_string();
    if out.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(if out == before {
        before.to_string()
    } else {
        out
    }))
}

/// What doctor reads: the ocivol runtime's paths and `hooks_dir`, if set.
pub fn inspect(path: &Path, text: &str) -> Result<(Vec<String>, Option<Vec<String>>)> {
    let doc = parse(path, text)?;
    let strings = |i: Option<&Item>| -> Option<Vec<String>> {
        i.and_then(Item::as_array).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    };
    let engine = doc.get("engine");
    Ok((
        strings(
            engine
                .and_then(|e| e.get("runtimes"))
                .and_then(|r| r.get(HANDLER)),
        )
        .unwrap_or_default(),
        strings(engine.and_then(|e| e.get("hooks_dir"))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"# containers.conf of this host
[containers]
log_size_max = -1

[engine]
# Runtimes are looked up in this order.
cgroup_manager = "systemd"
hooks_dir = [
  "/usr/share/containers/oci/hooks.d",
  "/etc/containers/oci/hooks.d",
]

[engine.runtimes]
runc = [
  "/usr/sbin/runc",
]

[machine]
cpus = 1
"#;

    fn p() -> &'static Path {
        Path::new("/etc/containers/containers.conf")
    }

    fn inserted(before: &str, after: &str) -> String {
        let diff = similar::TextDiff::from_lines(before, after);
        let mut added = String::new();
        for c in diff.iter_all_changes() {
            match c.tag() {
                similar::ChangeTag::Delete => panic!("a line was lost: {c:?}\n{after}"),
                similar::ChangeTag::Insert => added.push_str(c.value()),
                similar::ChangeTag::Equal => {}
            }
        }
        added
    }

    #[test]
    fn podman_setup_adds_the_runtime_and_remove_restores_the_file() {
        let bin = Path::new("/usr/local/bin/ocivol-runtime");
        let after = add(p(), Some(CONF), bin).unwrap();
        assert_eq!(
            inserted(CONF, &after),
            "# Added by ocivol setup: the runtime \"ocivol\" (podman --runtime ocivol); `ocivol setup podman --remove` takes it out.\nocivol = [\"/usr/local/bin/ocivol-runtime\"]\n"
        );
        assert_eq!(add(p(), Some(&after), bin).unwrap(), after);
        assert_eq!(remove(p(), &after).unwrap().as_deref(), Some(CONF));
        assert_eq!(
            inspect(p(), &after).unwrap().0,
            ["/usr/local/bin/ocivol-runtime"]
        );

        // No file: created with the table, removed again.
        let created = add(p(), None, bin).unwrap();
        assert!(
            created.contains("[engine.runtimes]\nocivol = ["),
            "{created}"
        );
        assert_eq!(remove(p(), &created).unwrap(), None);
        // A file without [engine.runtimes]: the table comes and goes.
        let small = "[engine]\ncgroup_manager = \"cgroupfs\"\n";
        let after = add(p(), Some(small), bin).unwrap();
        assert_eq!(remove(p(), &after).unwrap().as_deref(), Some(small));
    }

    #[test]
    fn podman_hooks_dir_is_added_to_a_list_the_file_sets_and_removed_again() {
        let dir = Path::new("/usr/local/share/ocivol/hooks.d");
        let after = add_hooks_dir(p(), Some(CONF), dir).unwrap();
        assert_eq!(
            inserted(CONF, &after),
            "  # Added by ocivol setup: ocivol's hooks file.\n  \"/usr/local/share/ocivol/hooks.d\",\n"
        );
        assert_eq!(inspect(p(), &after).unwrap().1.unwrap().len(), 3);
        assert_eq!(add_hooks_dir(p(), Some(&after), dir).unwrap(), after);
        assert_eq!(remove(p(), &after).unwrap().as_deref(), Some(CONF));
        // A file without hooks_dir is left alone (podman reads its default directory).
        let small = "[engine]\ncgroup_manager = \"cgroupfs\"\n";
        assert_eq!(add_hooks_dir(p(), Some(small), dir).unwrap(), small);
    }
}
