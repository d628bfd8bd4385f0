//! `io.ocivol.volumes-from`: a container gets every volume of other containers, as Docker's
//! `--volumes-from` does.
//!
//! A source is found in ocivol's own records first (they hold the mounts the source ended up
//! with, so a chain A → B → C needs no recursion: C copies B's record, which already has A's
//! volumes), then through the runtime (`state` gives the source's bundle), then in the engines'
//! bundle directories beside this container's own. The merge rules are pure functions, tested as
//! a table.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::annotations::{self, AnnotationError, VOLUMES_FROM};
use crate::config::{Policy, VolumesFromScope};
use crate::container_id::{check_container_id, container_key, hook_key_root};
use crate::mounts::flags::MountFlags;
use crate::real_runtime::RuntimeProbe;
use crate::scope::Scope;
use crate::spec::BundleSpec;
use crate::store::{ContainerRecord, Store};

/// Longest chain of volumes-from that is followed when looking for a cycle.
pub const MAX_CHAIN: usize = 16;

/// Most container records one container's volumes-from may read (finding its sources and
/// following their chains for cycles). Each source costs one or two reads and each container of
/// a chain one, so only a pathological set-up reaches it; it bounds the work of every create
/// whatever the records say.
pub const MAX_RECORDS_READ: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No suffix or `:rw`: each mount keeps its own mode.
    Keep,
    /// `:ro`: every copied mount is read-only.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEntry {
    /// The key it came from (`io.ocivol.volumes-from` or a per-container form), for errors.
    pub annotation: String,
    pub entry: String,
    pub source: String,
    pub mode: Mode,
}

/// Parses the value of `key`: `SRC[:ro|:rw]` entries separated by `;`, `,` or newlines. Errors
/// name `key`.
pub fn parse_of(
    key: &str,
    value: &str,
    max_entries: usize,
) -> Result<Vec<FromEntry>, AnnotationError> {
    if value.len() > annotations::MAX_ANNOTATION_BYTES {
        return Err(AnnotationError::new(
            key,
            "",
            format!(
                "the annotation is {} bytes long; at most {} are accepted",
                value.len(),
                annotations::MAX_ANNOTATION_BYTES
            ),
        ));
    }
    let entries = annotations::split_entries(value, &[';', ',', '\n']);
    if entries.len() > max_entries {
        return Err(AnnotationError::new(
            key,
            "",
            format!(
                "{} entries given; at most {max_entries} are allowed (max_volumes_per_container)",
                entries.len()
            ),
        ));
    }
    let parsed: Vec<FromEntry> = entries
        .into_iter()
        .map(|entry| {
            let err = |reason: String| AnnotationError::new(key, entry, reason);
            let (source, mode) = match entry.rsplit_once(':') {
                Some((s, "ro")) => (s, Mode::ReadOnly),
                Some((s, "rw")) => (s, Mode::Keep),
                Some((_, m)) if !entry.starts_with('/') => {
                    return Err(err(format!("unknown mode {m:?}; use SRC, SRC:ro or SRC:rw")));
                }
                _ => (entry, Mode::Keep),
            };
            if source.contains('/') {
                return Err(err(
                    "is a path; volumes-from takes a container ID (or, under Kubernetes, a container name of the same pod)"
                        .into(),
                ));
            }
            check_container_id(source).map_err(err)?;
            Ok(FromEntry {
                annotation: key.to_string(),
                entry: entry.to_string(),
                source: source.to_string(),
                mode,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(dedup(parsed))
}

/// Keeps the last of entries with the same source and mode: merging a source's mounts again
/// changes nothing but the order, and the last one decides that (a later source wins a
/// destination), so `a;b;a` is `b;a`.
pub fn dedup(entries: Vec<FromEntry>) -> Vec<FromEntry> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<FromEntry> = entries
        .into_iter()
        .rev()
        .filter(|e| seen.insert((e.source.clone(), e.mode == Mode::ReadOnly)))
        .collect();
    out.reverse();
    out
}

/// A mount of a source container, as it will be copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMount {
    pub destination: PathBuf,
    /// The host path bound (for a volume: where it was when the source got it).
    pub source: PathBuf,
    pub flags: MountFlags,
    /// The ocivol volume behind it, to be joined (a user added) rather than bound blindly.
    pub volume: Option<String>,
    /// Made by an engine in the source's spec, not asked for by an annotation.
    pub engine: bool,
    /// The volumes-from key that brought it, for errors.
    pub annotation: String,
    /// `subpath=`: the directory of `volume` the source mounted.
    pub subpath: Option<PathBuf>,
}

/// Destinations the engines manage themselves; volumes-from never copies them (DESIGN.md).
pub fn is_engine_managed(dest: &Path) -> bool {
    ["/proc", "/sys", "/dev", "/run/secrets", "/var/run/secrets"]
        .iter()
        .any(|p| dest.starts_with(p))
        || ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
            .iter()
            .any(|p| dest == Path::new(p))
}

/// The mounts of a source that ocivol prepared, from its record.
pub fn from_record(rec: &ContainerRecord) -> Vec<SourceMount> {
    rec.mounts
        .iter()
        .filter(|m| !is_engine_managed(&m.destination))
        .map(|m| SourceMount {
            destination: m.destination.clone(),
            source: m.source.clone(),
            flags: m.flags,
            volume: m.volume.clone(),
            engine: m.engine,
            annotation: VOLUMES_FROM.to_string(),
            subpath: m.subpath.clone(),
        })
        .collect()
}

/// The bind mounts of a source's spec. A bind of one of ocivol's volume directories (the source
/// was prepared by ocivol but its record is gone) is recognised by `volume_of`, so the volume is
/// joined and counted, not bound behind the store's back.
pub fn from_spec(
    mounts: &[Mount],
    volume_of: impl Fn(&Path) -> Option<String>,
) -> Vec<SourceMount> {
    mounts
        .iter()
        .filter(|m| {
            let opts = m.options().as_deref().unwrap_or_default();
            m.typ().as_deref() == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind")
        })
        .filter(|m| !is_engine_managed(m.destination()))
        .filter_map(|m| {
            let source = m.source().clone()?;
            let volume = volume_of(&source);
            Some(SourceMount {
                destination: m.destination().clone(),
                engine: volume.is_none(),
                volume,
                source,
                flags: MountFlags::from_oci_options(m.options().as_deref().unwrap_or_default()),
                annotation: VOLUMES_FROM.to_string(),
                subpath: None,
            })
        })
        .collect()
}

/// Merges the sources' mounts in annotation order: a later source wins a destination over an
/// earlier one (as Docker does), the container's own volumes win over all of them, `:ro` makes a
/// source's mounts read-only and `:rw` never makes a read-only one writable.
pub fn merge(
    own_destinations: &[PathBuf],
    sources: Vec<(Mode, Vec<SourceMount>)>,
) -> Vec<SourceMount> {
    let mut by_dest: BTreeMap<PathBuf, SourceMount> = BTreeMap::new();
    for (mode, mounts) in sources {
        for mut m in mounts {
            if mode == Mode::ReadOnly {
                m.flags.readonly = true;
            }
            by_dest.insert(m.destination.clone(), m);
        }
    }
    by_dest
        .into_values()
        .filter(|m| !own_destinations.contains(&m.destination))
        .collect()
}

/// The container being prepared.
pub struct Me<'a> {
    pub id: &'a str,
    pub key: &'a str,
    pub runtime_root: Option<&'a str>,
    /// Set when a hook prepares the container (see [`ContainerRecord::key_root`]).
    pub key_root: Option<&'a str>,
    pub bundle: &'a Path,
    pub scope: &'a Scope,
}

/// What the resolution found: the mounts to add, and the keys of the sources (recorded, for
/// cycle checks of later containers).
#[derive(Debug)]
pub struct Resolved {
    pub mounts: Vec<(Mode, Vec<SourceMount>)>,
    pub source_keys: Vec<String>,
}

/// Finds every source and its mounts. Errors name the annotation and the entry. A source outside
/// this container's scope is refused with the same words as one that does not exist, so that a
/// refusal tells nothing about other scopes. `runtime`: the real runtime, asked for the bundle of
/// a source ocivol has no record of (`None`: a hook, which has no runtime to ask).
pub fn resolve(
    store: &Store,
    me: &Me,
    entries: &[FromEntry],
    policy: &Policy,
    runtime: Option<&dyn RuntimeProbe>,
) -> Result<Resolved, AnnotationError> {
    resolve_with(store, store, me, entries, policy, runtime)
}

/// [`resolve`] with the records read through `records` (tests count the reads).
pub fn resolve_with(
    store: &Store,
    records: &dyn Records,
    me: &Me,
    entries: &[FromEntry],
    policy: &Policy,
    runtime: Option<&dyn RuntimeProbe>,
) -> Result<Resolved, AnnotationError> {
    let records = Budget::new(records, MAX_RECORDS_READ);
    let mut out = Resolved {
        mounts: Vec::new(),
        source_keys: Vec::new(),
    };
    for e in entries {
        let err = |reason: String| AnnotationError::new(&e.annotation, &e.entry, reason);
        if e.source == me.id {
            return Err(err("a container cannot get volumes from itself".into()));
        }
        if me.scope.sandbox.is_some()
            && me.scope.container_name.as_deref() == Some(e.source.as_str())
        {
            // Kubernetes has pod annotations only: the pod's volumes-from reaches every container
            // of the pod, including the one it names. That one already has its own volumes.
            continue;
        }
        if let Some(rec) = find_record(&records, me, &e.source, policy).map_err(err)? {
            check_chain(&records, me.key, &rec).map_err(err)?;
            out.source_keys.push(rec.key());
            let mut mounts = spec_binds(store, &rec);
            mounts.extend(from_record(&rec));
            out.mounts.push((e.mode, via(&e.annotation, mounts)));
            continue;
        }
        let bundle = runtime
            .and_then(|r| r.bundle_of(&e.source, me.runtime_root))
            .or_else(|| sibling_bundle(me.bundle, me.id, &e.source))
            .ok_or_else(|| err(not_in_scope(&e.source)))?;
        let spec =
            BundleSpec::load(&bundle).map_err(|x| err(format!("source {}: {x}", e.source)))?;
        let their = Scope::of(&bundle, me.runtime_root, &spec.annotations());
        if !in_scope(policy, me.scope, &their) {
            return Err(err(not_in_scope(&e.source)));
        }
        let mounts = spec.mounts().map_err(|x| err(x.to_string()))?;
        let key = match me.key_root {
            Some(_) => container_key(&e.source, Some(&hook_key_root(&bundle))),
            None => container_key(&e.source, me.runtime_root),
        };
        out.source_keys.push(key);
        let mounts = from_spec(&mounts, |p| store.volume_of_path(p));
        out.mounts.push((e.mode, via(&e.annotation, mounts)));
    }
    Ok(out)
}

/// The binds an engine put in the spec of a source that ocivol prepared (Kubernetes' hostPath,
/// emptyDir and configMap volumes, `-v` of podman): volumes-from copies them too, as Docker
/// copies every mount of the source. Those at a destination of the record are ocivol's own (the
/// wrapper writes them into the spec) and come from the record instead. A source whose bundle is
/// gone has no engine binds left to copy.
fn spec_binds(store: &Store, rec: &ContainerRecord) -> Vec<SourceMount> {
    let mounts = match BundleSpec::load(&rec.bundle).and_then(|s| s.mounts()) {
        Ok(m) => m,
        Err(e) => {
            log::warn!(
                "volumes-from {}: its spec cannot be read, only ocivol's volumes are copied: {e}",
                rec.id
            );
            return Vec::new();
        }
    };
    from_spec(&mounts, |p| store.volume_of_path(p))
        .into_iter()
        .filter(|m| !rec.mounts.iter().any(|r| r.destination == m.destination))
        .collect()
}

/// Marks the mounts as brought by `key`.
fn via(key: &str, mut mounts: Vec<SourceMount>) -> Vec<SourceMount> {
    for m in &mut mounts {
        m.annotation = key.to_string();
    }
    mounts
}

/// The one refusal for a source that does not exist and for one in another scope.
fn not_in_scope(source: &str) -> String {
    format!("no container {source:?} in this scope")
}

fn in_scope(policy: &Policy, mine: &Scope, theirs: &Scope) -> bool {
    policy.volumes_from_scope == VolumesFromScope::Any || theirs.same_namespace(mine)
}

/// How the records of other containers are looked up. A container start must not read every
/// record (a node keeps one per container it ever ran): the store reads one file for a key, only
/// file names for an ID, and one index entry for a container name in a pod.
pub trait Records {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String>;
    /// The records of containers with this ID under any runtime root.
    fn by_id(&self, id: &str) -> Result<Vec<ContainerRecord>, String>;
    /// The record of the container called `name` in the pod of `sandbox`.
    fn by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>, String>;
}

impl Records for Store {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
        // As when every record was read: one that cannot be read is skipped with a warning.
        Ok(self.load_container(key).unwrap_or_else(|e| {
            log::warn!("skipping container record {key}: {e}");
            None
        }))
    }
    fn by_id(&self, id: &str) -> Result<Vec<ContainerRecord>, String> {
        let keys = self.container_keys_of(id).map_err(|e| e.to_string())?;
        Ok(keys
            .iter()
            .filter_map(|k| self.by_key(k).ok().flatten())
            .collect())
    }
    fn by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>, String> {
        Ok(self.container_by_name(sandbox, name).unwrap_or_else(|e| {
            log::warn!("skipping the name index entry of {name} in sandbox {sandbox}: {e}");
            None
        }))
    }
}

impl Records for Vec<ContainerRecord> {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
        Ok(self.iter().find(|r| r.key() == key).cloned())
    }
    fn by_id(&self, id: &str) -> Result<Vec<ContainerRecord>, String> {
        Ok(self.iter().filter(|r| r.id == id).cloned().collect())
    }
    fn by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>, String> {
        Ok(self
            .iter()
            .find(|r| {
                r.scope.sandbox.as_deref() == Some(sandbox)
                    && r.scope.container_name.as_deref() == Some(name)
            })
            .cloned())
    }
}

/// Records read through a budget: past `left` records, every lookup is an error.
struct Budget<'a> {
    inner: &'a dyn Records,
    left: Cell<usize>,
}

impl<'a> Budget<'a> {
    fn new(inner: &'a dyn Records, max: usize) -> Budget<'a> {
        Budget {
            inner,
            left: Cell::new(max),
        }
    }

    fn take(&self, n: usize) -> Result<(), String> {
        match self.left.get().checked_sub(n) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(format!(
                "resolving it would read more than {MAX_RECORDS_READ} container records"
            )),
        }
    }
}

impl Records for Budget<'_> {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
        self.take(1)?;
        self.inner.by_key(key)
    }
    fn by_id(&self, id: &str) -> Result<Vec<ContainerRecord>, String> {
        let found = self.inner.by_id(id)?;
        self.take(found.len().max(1))?;
        Ok(found)
    }
    fn by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>, String> {
        self.take(1)?;
        self.inner.by_name(sandbox, name)
    }
}

/// A record of `source` this container may use: by ID under the same runtime root, else by
/// container name in the same pod, else by ID under any root. A record of another scope is not
/// one (unless the policy's scope is `any`).
fn find_record(
    records: &dyn Records,
    me: &Me,
    source: &str,
    policy: &Policy,
) -> Result<Option<ContainerRecord>, String> {
    let usable = |r: &ContainerRecord| in_scope(policy, me.scope, &r.scope);
    if let Some(r) = records
        .by_key(&container_key(source, me.runtime_root))?
        .filter(usable)
    {
        return Ok(Some(r));
    }
    if let Some(sandbox) = me.scope.sandbox.as_deref()
        && let Some(r) = records.by_name(sandbox, source)?.filter(|r| {
            usable(r)
                && r.scope.sandbox.as_deref() == Some(sandbox)
                && r.scope.container_name.as_deref() == Some(source)
        })
    {
        return Ok(Some(r));
    }
    Ok(records.by_id(source)?.into_iter().find(usable))
}

/// Follows the sources' own volumes-from back, each container once (breadth first, so a
/// container's depth is its shortest chain); reaching this container again is a cycle.
fn check_chain(records: &dyn Records, me: &str, start: &ContainerRecord) -> Result<(), String> {
    let mut seen = BTreeSet::from([start.key()]);
    let mut queue = VecDeque::from([(start.clone(), 1usize)]);
    while let Some((rec, depth)) = queue.pop_front() {
        for k in &rec.volumes_from {
            if k == me {
                return Err(format!(
                    "cycle: {} already gets volumes from this container",
                    rec.id
                ));
            }
            if !seen.insert(k.clone()) {
                continue;
            }
            if depth >= MAX_CHAIN {
                return Err(format!(
                    "the volumes-from chain is deeper than {MAX_CHAIN} containers"
                ));
            }
            if let Some(next) = records.by_key(k)? {
                queue.push_back((next, depth + 1));
            }
        }
    }
    Ok(())
}

/// The bundle of `source` beside ours, where the engines keep them: containerd's
/// `…/io.containerd.runtime.v2.task/NS/ID`, podman's and CRI-O's `…/ID/userdata`.
fn sibling_bundle(bundle: &Path, my_id: &str, source: &str) -> Option<PathBuf> {
    let candidate = if bundle.file_name()? == "userdata" && bundle.parent()?.file_name()? == my_id {
        bundle.parent()?.parent()?.join(source).join("userdata")
    } else if bundle.file_name()? == my_id && crate::scope::containerd_namespace(bundle).is_some() {
        bundle.parent()?.join(source)
    } else {
        return None;
    };
    candidate.join("config.json").is_file().then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn parse(value: &str, max_entries: usize) -> Result<Vec<FromEntry>, AnnotationError> {
        parse_of(VOLUMES_FROM, value, max_entries)
    }

    fn sm(dest: &str, ro: bool, volume: Option<&str>) -> SourceMount {
        SourceMount {
            destination: dest.into(),
            source: format!("/host{dest}").into(),
            flags: MountFlags {
                readonly: ro,
                ..Default::default()
            },
            volume: volume.map(str::to_string),
            engine: false,
            annotation: VOLUMES_FROM.into(),
            subpath: None,
        }
    }

    #[test]
    fn parse_entries_and_modes() {
        let e = parse("a;b:ro, c:rw\nd", 64).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.source.as_str(), e.mode)).collect();
        assert_eq!(
            got,
            [
                ("a", Mode::Keep),
                ("b", Mode::ReadOnly),
                ("c", Mode::Keep),
                ("d", Mode::Keep)
            ]
        );
        for (bad, reason) in [
            ("a:rx", "unknown mode"),
            ("/run/containerd/x", "is a path"),
            ("../x", "is a path"),
            ("a b", "invalid container ID"),
            ("a:b:ro", "invalid container ID"),
        ] {
            let msg = parse(bad, 64).unwrap_err().to_string();
            assert!(
                msg.starts_with("annotation io.ocivol.volumes-from: entry "),
                "{msg}"
            );
            assert!(msg.contains(reason), "{bad}: {msg}");
        }
        assert!(
            parse(&"a;".repeat(100), 64)
                .unwrap_err()
                .to_string()
                .contains("100 entries")
        );
    }

    #[test]
    fn merge_rules_as_a_table() {
        struct Case {
            what: &'static str,
            own: Vec<&'static str>,
            sources: Vec<(Mode, Vec<SourceMount>)>,
            want: Vec<(&'static str, bool, &'static str)>,
        }
        let cases = [
            Case {
                what: "keep: each mount keeps its mode",
                own: vec![],
                sources: vec![(
                    Mode::Keep,
                    vec![sm("/a", false, None), sm("/b", true, Some("v"))],
                )],
                want: vec![("/a", false, "/host/a"), ("/b", true, "/host/b")],
            },
            Case {
                what: ":ro makes every copied mount read-only",
                own: vec![],
                sources: vec![(
                    Mode::ReadOnly,
                    vec![sm("/a", false, None), sm("/b", true, None)],
                )],
                want: vec![("/a", true, "/host/a"), ("/b", true, "/host/b")],
            },
            Case {
                what: ":rw never upgrades a read-only mount",
                own: vec![],
                sources: vec![(Mode::Keep, vec![sm("/ro", true, None)])],
                want: vec![("/ro", true, "/host/ro")],
            },
            Case {
                what: "the container's own volumes win by destination",
                own: vec!["/a"],
                sources: vec![(
                    Mode::Keep,
                    vec![sm("/a", false, None), sm("/b", false, None)],
                )],
                want: vec![("/b", false, "/host/b")],
            },
            Case {
                what: "a later source wins over an earlier one",
                own: vec![],
                sources: vec![
                    (Mode::ReadOnly, vec![sm("/a", false, None)]),
                    (
                        Mode::Keep,
                        vec![SourceMount {
                            source: "/second".into(),
                            ..sm("/a", false, None)
                        }],
                    ),
                ],
                want: vec![("/a", false, "/second")],
            },
        ];
        for c in cases {
            let own: Vec<PathBuf> = c.own.iter().map(PathBuf::from).collect();
            let got: Vec<_> = merge(&own, c.sources)
                .into_iter()
                .map(|m| {
                    (
                        m.destination.display().to_string(),
                        m.flags.readonly,
                        m.source.display().to_string(),
                    )
                })
                .collect();
            let want: Vec<_> = c
                .want
                .iter()
                .map(|(d, r, s)| (d.to_string(), *r, s.to_string()))
                .collect();
            assert_eq!(got, want, "{}", c.what);
        }
    }

    #[test]
    fn engine_managed_paths_are_not_copied() {
        let mount = |dest: &str, typ: &str| {
            oci_spec::runtime::MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(format!("/host{dest}"))
                .options(if typ == "bind" {
                    vec!["rbind".to_string(), "ro".to_string()]
                } else {
                    vec![]
                })
                .build()
                .unwrap()
        };
        let spec_mounts = [
            mount("/proc", "proc"),
            mount("/dev/shm", "bind"),
            mount("/etc/hosts", "bind"),
            mount("/etc/hostname", "bind"),
            mount("/etc/resolv.conf", "bind"),
            mount("/run/secrets/kubernetes.io/serviceaccount", "bind"),
            mount("/var/run/secrets/x", "bind"),
            mount("/dev/termination-log", "bind"),
            mount("/sys/fs/cgroup", "bind"),
            mount("/data", "bind"),
            mount("/etc/app", "bind"),
            mount("/tmpfs", "tmpfs"),
        ];
        let got: Vec<_> = from_spec(&spec_mounts, |_| None)
            .into_iter()
            .map(|m| m.destination)
            .collect();
        assert_eq!(got, [PathBuf::from("/data"), PathBuf::from("/etc/app")]);
        let got = from_spec(&[mount("/data", "bind")], |_| Some("vol".into()));
        assert_eq!(got[0].volume.as_deref(), Some("vol"));
        assert!(got[0].flags.readonly);
    }

    fn record(id: &str, from: &[&str]) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            runtime_root: None,
            key_root: None,
            bundle: "/b".into(),
            scope: Scope::default(),
            volumes: vec![],
            mounts: vec![],
            volumes_from: from.iter().map(|f| container_key(f, None)).collect(),
            boot_id: String::new(),
            init: None,
        }
    }

    #[test]
    fn cycles_and_deep_chains_are_refused() {
        // b gets from a, c from b: a asking for c's volumes would close a cycle.
        let records = Vec::from([record("a", &[]), record("b", &["a"]), record("c", &["b"])]);
        let e = check_chain(&records.to_vec(), &container_key("a", None), &records[2]).unwrap_err();
        assert!(
            e.contains("cycle: b already gets volumes from this container"),
            "{e}"
        );
        assert!(check_chain(&records.to_vec(), &container_key("d", None), &records[2]).is_ok());
        // A chain of 20: deeper than MAX_CHAIN.
        let chain: Vec<_> = (0..20)
            .map(|i| {
                if i == 0 {
                    record("n0", &[])
                } else {
                    record(&format!("n{i}"), &[&format!("n{}", i - 1)])
                }
            })
            .collect();
        let e = check_chain(&chain, &container_key("new", None), &chain[19]).unwrap_err();
        assert!(e.contains("deeper than 16"), "{e}");
        assert!(check_chain(&chain, &container_key("new", None), &chain[10]).is_ok());
    }

    #[test]
    fn sibling_bundles_of_the_engines() {
        let dir = tempfile::tempdir().unwrap();
        let ctrd = dir.path().join("io.containerd.runtime.v2.task/default");
        let pod = dir.path().join("overlay-containers");
        for b in [ctrd.join("src"), pod.join("src/userdata")] {
            std::fs::create_dir_all(&b).unwrap();
            std::fs::write(b.join("config.json"), "{}").unwrap();
        }
        assert_eq!(
            sibling_bundle(&ctrd.join("me"), "me", "src"),
            Some(ctrd.join("src"))
        );
        assert_eq!(
            sibling_bundle(&pod.join("me/userdata"), "me", "src"),
            Some(pod.join("src/userdata"))
        );
        assert_eq!(sibling_bundle(&ctrd.join("me"), "me", "nope"), None);
        assert_eq!(sibling_bundle(Path::new("/some/bundle"), "me", "src"), None);
    }

    /// Counts the records a lookup returns.
    struct Counting<'a>(&'a dyn Records, Cell<usize>);
    impl Records for Counting<'_> {
        fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
            self.1.set(self.1.get() + 1);
            self.0.by_key(key)
        }
        fn by_id(&self, id: &str) -> Result<Vec<ContainerRecord>, String> {
            let found = self.0.by_id(id)?;
            self.1.set(self.1.get() + found.len().max(1));
            Ok(found)
        }
        fn by_name(&self, sandbox: &str, name: &str) -> Result<Option<ContainerRecord>, String> {
            self.1.set(self.1.get() + 1);
            self.0.by_name(sandbox, name)
        }
    }

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::config::StatePaths {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
        };
        let store = Store::new(&paths, Box::new(crate::mounts::Linux));
        (dir, store)
    }

    /// Resolves `entries` for container `id` of `scope` (no runtime root, the default policy,
    /// no runtime to ask), reading the records through `records`; the error as its text.
    fn resolve_as(
        store: &Store,
        records: &dyn Records,
        id: &str,
        scope: &Scope,
        entries: &[FromEntry],
    ) -> Result<Resolved, String> {
        let key = container_key(id, None);
        let me = Me {
            id,
            key: &key,
            runtime_root: None,
            key_root: None,
            bundle: Path::new("/nonexistent/bundle"),
            scope,
        };
        resolve_with(store, records, &me, entries, &Policy::default(), None)
            .map_err(|e| e.to_string())
    }

    /// Issue 12, reproduction 4: 64 duplicate entries per level made the cycle check read
    /// 64^depth records (depth 4: 108 s). Each record is read once now.
    #[test]
    fn a_deep_chain_of_duplicate_entries_reads_each_record_once() {
        let (_dir, store) = temp_store();
        // n5 gets from n4 64 times, n4 from n3 64 times, … (records written before entries were
        // de-duplicated, or by hand).
        let chain: Vec<ContainerRecord> = (0..6)
            .map(|i| {
                let prev = format!("n{}", i.max(1) - 1);
                let from: Vec<&str> = if i == 0 { vec![] } else { vec![&prev; 64] };
                record(&format!("n{i}"), &from)
            })
            .collect();
        let entries = parse(&"n5;".repeat(64), 64).unwrap();
        assert_eq!(entries.len(), 1, "duplicate entries are one");
        let scope = Scope::default();
        let counting = Counting(&chain, Cell::new(0));
        let got = resolve_as(&store, &counting, "new", &scope, &entries).unwrap();
        assert_eq!(got.source_keys, [container_key("n5", None)]);
        assert_eq!(counting.1.get(), 6, "n5 found, then n4 … n0 once each");

        // The same chain closing a cycle is refused as cheaply.
        let counting = Counting(&chain, Cell::new(0));
        let e = resolve_as(&store, &counting, "n0", &scope, &entries).unwrap_err();
        assert!(e.contains("cycle: n1 already gets volumes"), "{e}");
        assert!(counting.1.get() <= 6, "{}", counting.1.get());
    }

    #[test]
    fn the_records_one_create_reads_are_bounded() {
        let (_dir, store) = temp_store();
        // 64 sources, each getting from 10 others of its own: 704 records to follow.
        let mut records = Vec::new();
        let mut names = Vec::new();
        for i in 0..64 {
            let leaves: Vec<String> = (0..10).map(|j| format!("leaf-{i}-{j}")).collect();
            for l in &leaves {
                records.push(record(l, &[]));
            }
            let refs: Vec<&str> = leaves.iter().map(String::as_str).collect();
            records.push(record(&format!("src-{i}"), &refs));
            names.push(format!("src-{i}"));
        }
        let entries = parse(&names.join(";"), 64).unwrap();
        let scope = Scope::default();
        let counting = Counting(&records, Cell::new(0));
        let e = resolve_as(&store, &counting, "new", &scope, &entries).unwrap_err();
        assert!(e.contains("more than 512 container records"), "{e}");
        assert!(counting.1.get() <= MAX_RECORDS_READ, "{}", counting.1.get());
    }

    #[test]
    fn duplicate_entries_keep_the_last_of_each_source_and_mode() {
        let got: Vec<_> = parse("a;b;a;a:ro;b;a:ro", 64)
            .unwrap()
            .into_iter()
            .map(|e| e.entry)
            .collect();
        assert_eq!(got, ["a", "b", "a:ro"]);
    }

    /// Issue 12, reproduction 5: volumes-from by a Kubernetes container name read every record
    /// (10 s per create with 20,000). It reads the name index and one record now.
    #[test]
    fn volumes_from_by_container_name_reads_one_record_among_20000() {
        let (dir, store) = temp_store();
        let records = dir.path().join("root/containers");
        fs::create_dir_all(&records).unwrap();
        let pod = |sandbox: &str, name: &str| Scope {
            namespace: "containerd/k8s.io".into(),
            pod_namespace: Some("team-a".into()),
            sandbox: Some(sandbox.into()),
            container_name: Some(name.into()),
            engine: crate::scope::Engine::Containerd,
            sandbox_container: false,
        };
        for i in 0..20_000 {
            let mut r = record(&format!("old-{i:05}"), &[]);
            r.scope = pod(&format!("sb-{}", i % 5000), "app");
            fs::write(
                records.join(format!("{}.json", r.key())),
                serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
        }
        let mut db = record("db-id", &[]);
        db.scope = pod("sb-1", "db");
        store.save_container(&db).unwrap();
        // An index entry that lies: it points at a record of another pod.
        let mut other = record("other-id", &[]);
        other.scope = pod("sb-2", "cache");
        store.save_container(&other).unwrap();
        fs::write(dir.path().join("run/names/sb-1/cache"), other.key()).unwrap();

        let scope = pod("sb-1", "app");
        let before = crate::store::records_read();
        let got = resolve_as(&store, &store, "reader", &scope, &parse("db", 64).unwrap()).unwrap();
        assert_eq!(got.source_keys, [db.key()]);
        let read = crate::store::records_read() - before;
        assert!(read <= 3, "{read} record files read");

        let before = crate::store::records_read();
        let e = resolve_as(
            &store,
            &store,
            "reader",
            &scope,
            &parse("cache", 64).unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("no container \"cache\" in this scope"), "{e}");
        assert!(crate::store::records_read() - before <= 3);

        // Removing the record removes its index entry.
        store.remove_container(&db.key()).unwrap();
        assert!(!dir.path().join("run/names/sb-1/db").exists());
    }
}
