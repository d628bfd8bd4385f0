//! `io.ocivol.volumes-from`: a container gets every volume of other containers, as Docker's
//! `--volumes-from` does.
//!
//! A source is found in ocivol's own records first (they hold the mounts the source ended up
//! with, so a chain A → B → C needs no recursion: C copies B's record, which already has A's
//! volumes), then through the runtime (`state` gives the source's bundle), then in the engines'
//! bundle directories beside this container's own. The merge rules are pure functions, tested as
//! a table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::annotations::{self, AnnotationError, MountFlags, VOLUMES_FROM};
use crate::config::{Policy, VolumesFromScope};
use crate::prepare::check_container_id;
use crate::scope::Scope;
use crate::spec::BundleSpec;
use crate::store::{ContainerRecord, Store, container_key};

/// Longest chain of volumes-from that is followed when looking for a cycle.
pub const MAX_CHAIN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No suffix or `:rw`: each mount keeps its own mode.
    Keep,
    /// `:ro`: every copied mount is read-only.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEntry {
    pub entry: String,
    pub source: String,
    pub mode: Mode,
}

/// Parses `SRC[:ro|:rw]` entries separated by `;`, `,` or newlines.
pub fn parse(value: &str, max_entries: usize) -> Result<Vec<FromEntry>, AnnotationError> {
    if value.len() > annotations::MAX_ANNOTATION_BYTES {
        return Err(AnnotationError::new(
            VOLUMES_FROM,
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
            VOLUMES_FROM,
            "",
            format!(
                "{} entries given; at most {max_entries} are allowed (max_volumes_per_container)",
                entries.len()
            ),
        ));
    }
    entries
        .into_iter()
        .map(|entry| {
            let err = |reason: String| AnnotationError::new(VOLUMES_FROM, entry, reason);
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
                entry: entry.to_string(),
                source: source.to_string(),
                mode,
            })
        })
        .collect()
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
            flags: flags_of(&m.options),
            volume: m.volume.clone(),
            engine: m.engine,
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
                flags: flags_of(m.options().as_deref().unwrap_or_default()),
            })
        })
        .collect()
}

fn flags_of(options: &[String]) -> MountFlags {
    let has = |o: &str| options.iter().any(|x| x == o);
    MountFlags {
        readonly: has("ro"),
        nosuid: has("nosuid"),
        nodev: has("nodev"),
        noexec: has("noexec"),
    }
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

/// How a source not prepared by ocivol is found through its runtime.
pub trait RuntimeState {
    /// The bundle of container `id`, if the runtime knows it.
    fn bundle_of(&self, id: &str) -> Option<PathBuf>;
}

/// The container being prepared.
pub struct Me<'a> {
    pub id: &'a str,
    pub key: &'a str,
    pub runtime_root: Option<&'a str>,
    pub bundle: &'a Path,
    pub scope: &'a Scope,
}

/// What the resolution found: the mounts to add, and the keys of the sources (recorded, for
/// cycle checks of later containers).
pub struct Resolved {
    pub mounts: Vec<(Mode, Vec<SourceMount>)>,
    pub source_keys: Vec<String>,
}

/// Finds every source and its mounts. Errors name the annotation and the entry.
pub fn resolve(
    store: &Store,
    me: &Me,
    entries: &[FromEntry],
    policy: &Policy,
    runtime: &dyn RuntimeState,
) -> Result<Resolved, AnnotationError> {
    let mut out = Resolved {
        mounts: Vec::new(),
        source_keys: Vec::new(),
    };
    for e in entries {
        let err = |reason: String| AnnotationError::new(VOLUMES_FROM, &e.entry, reason);
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
        if let Some(rec) = find_record(store, me, &e.source, policy).map_err(err)? {
            check_chain(store, me.key, &rec).map_err(err)?;
            out.source_keys.push(rec.key());
            out.mounts.push((e.mode, from_record(&rec)));
            continue;
        }
        let bundle = runtime
            .bundle_of(&e.source)
            .or_else(|| sibling_bundle(me.bundle, me.id, &e.source))
            .ok_or_else(|| {
                err(format!(
                    "no container {:?} is known to ocivol or to the runtime in {}",
                    e.source, me.scope
                ))
            })?;
        let spec =
            BundleSpec::load(&bundle).map_err(|x| err(format!("source {}: {x}", e.source)))?;
        let their = Scope::of(&bundle, me.runtime_root, &spec.annotations());
        if policy.volumes_from_scope == VolumesFromScope::Namespace
            && !their.same_namespace(me.scope)
        {
            return Err(err(refusal(&e.source, &their, me.scope)));
        }
        let mounts = spec.mounts().map_err(|x| err(x.to_string()))?;
        out.source_keys
            .push(container_key(&e.source, me.runtime_root));
        out.mounts
            .push((e.mode, from_spec(&mounts, |p| store.volume_of_path(p))));
    }
    Ok(out)
}

fn refusal(source: &str, theirs: &Scope, mine: &Scope) -> String {
    format!(
        "container {source:?} is in {theirs}, this one in {mine}; the policy's volumes_from_scope is \"namespace\", \
         so volumes-from cannot cross it"
    )
}

/// How the records of other containers are looked up. A container start must not read every
/// record (a node keeps one per container it ever ran): the store reads one file for a key and
/// only file names for an ID; all of them are read only for a container name in a pod.
pub trait Records {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String>;
    /// A record of a container with this ID under any runtime root.
    fn by_id(&self, id: &str) -> Result<Option<ContainerRecord>, String>;
    fn all(&self) -> Result<Vec<ContainerRecord>, String>;
}

impl Records for Store {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
        // As when every record was read: one that cannot be read is skipped with a warning.
        Ok(self.load_container(key).unwrap_or_else(|e| {
            log::warn!("skipping container record {key}: {e}");
            None
        }))
    }
    fn by_id(&self, id: &str) -> Result<Option<ContainerRecord>, String> {
        let keys = self.container_keys_of(id).map_err(|e| e.to_string())?;
        Ok(keys.iter().find_map(|k| self.by_key(k).ok().flatten()))
    }
    fn all(&self) -> Result<Vec<ContainerRecord>, String> {
        self.containers().map_err(|e| e.to_string())
    }
}

impl Records for Vec<ContainerRecord> {
    fn by_key(&self, key: &str) -> Result<Option<ContainerRecord>, String> {
        Ok(self.iter().find(|r| r.key() == key).cloned())
    }
    fn by_id(&self, id: &str) -> Result<Option<ContainerRecord>, String> {
        Ok(self.iter().find(|r| r.id == id).cloned())
    }
    fn all(&self) -> Result<Vec<ContainerRecord>, String> {
        Ok(self.clone())
    }
}

/// A record of `source` this container may use: by ID under the same runtime root, else by
/// container name in the same pod, else by ID anywhere (allowed only when the scope is `any`).
fn find_record(
    records: &dyn Records,
    me: &Me,
    source: &str,
    policy: &Policy,
) -> Result<Option<ContainerRecord>, String> {
    let mut candidate = records.by_key(&container_key(source, me.runtime_root))?;
    if candidate.is_none()
        && let Some(sandbox) = me.scope.sandbox.as_deref()
    {
        candidate = records.all()?.into_iter().find(|r| {
            r.scope.sandbox.as_deref() == Some(sandbox)
                && r.scope.container_name.as_deref() == Some(source)
        });
    }
    if candidate.is_none() {
        candidate = records.by_id(source)?;
    }
    match candidate {
        Some(r)
            if policy.volumes_from_scope == VolumesFromScope::Namespace
                && !r.scope.same_namespace(me.scope) =>
        {
            Err(refusal(source, &r.scope, me.scope))
        }
        other => Ok(other),
    }
}

/// Follows the sources' own volumes-from back; reaching this container again is a cycle.
fn check_chain(records: &dyn Records, me: &str, start: &ContainerRecord) -> Result<(), String> {
    let mut frontier = vec![(start.clone(), 1usize)];
    while let Some((rec, depth)) = frontier.pop() {
        if depth > MAX_CHAIN {
            return Err(format!(
                "the volumes-from chain is deeper than {MAX_CHAIN} containers"
            ));
        }
        for k in &rec.volumes_from {
            if k == me {
                return Err(format!(
                    "cycle: {} already gets volumes from this container",
                    rec.id
                ));
            }
            if let Some(next) = records.by_key(k)? {
                frontier.push((next, depth + 1));
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
            bundle: "/b".into(),
            scope: Scope::default(),
            volumes: vec![],
            mounts: vec![],
            volumes_from: from.iter().map(|f| container_key(f, None)).collect(),
            boot_id: String::new(),
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
}
