//! Preparing a container's volumes, the whole data path in one place:
//! annotations → plan → volume store → mounts for the spec (and a record of what was taken).
//!
//! Every way in (the runtime wrapper now, the hooks later) calls [`prepare`] before the
//! container starts and [`Store::release_container`] after it is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::annotations::{self, AnnotationError, Selected};
use crate::config::{Context, Policy};
use crate::container_id::{check_container_id, container_key};
use crate::copyup::ImageDir;
use crate::pin::{Guard, How, Kind, Pin};
use crate::plan::{self, Planned};
use crate::real_runtime::RuntimeProbe;
use crate::scope::Scope;
use crate::spec::bind_mount;
use crate::store::{ContainerRecord, Fill, RecordedMount, Store, VolumeRequest, boot_id};
use crate::volumes_from;

/// What a prepared container gets.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What it holds; `record.mounts` are its mounts, parents before children.
    pub record: ContainerRecord,
    /// The checked, open source of each of `record.mounts`, in the same order: what is mounted,
    /// whatever the recorded paths name by now.
    pub pins: Vec<Pin>,
}

impl Prepared {
    /// The spec mounts of the container, each bound from `sources[i]` (where ocivol attached
    /// the pinned source for the runtime, see [`crate::staging`]).
    pub fn spec_mounts(&self, sources: &[PathBuf]) -> Vec<Mount> {
        self.record
            .mounts
            .iter()
            .zip(sources)
            .map(|(m, source)| bind_mount(source, &m.destination, m.volume.is_none(), m.flags))
            .collect()
    }
}

/// The container being prepared, as its engine describes it.
pub struct Container<'a> {
    pub id: &'a str,
    /// The runtime's `--root`, if one was given.
    pub runtime_root: Option<&'a str>,
    /// What tells the container apart from another of the same ID when there is no runtime
    /// root: set by the hooks (see [`ContainerRecord::key_root`]).
    pub key_root: Option<&'a str>,
    pub bundle: &'a Path,
    pub annotations: &'a BTreeMap<String, String>,
    /// Its rootfs on the host (readable before it runs): what fills a volume it creates.
    pub rootfs: Option<&'a Path>,
}

/// The key of the container's record.
pub fn key_of(c: &Container) -> String {
    container_key(c.id, c.runtime_root.or(c.key_root))
}

/// The container's scope and the `io.ocivol.` keys that apply to it; `Ok(None)`: nothing for
/// ocivol to do (no key of ocivol's, a pod's sandbox container, or only keys for other
/// containers of its pod). An error: a key that applies is wrong.
fn selected<'a>(c: &Container<'a>) -> Result<Option<(Scope, Selected<'a>)>, AnnotationError> {
    if !c
        .annotations
        .keys()
        .any(|k| k.starts_with(annotations::PREFIX))
    {
        return Ok(None);
    }
    let scope = Scope::of(c.bundle, c.runtime_root, c.annotations);
    if scope.sandbox_container {
        // The engines copy the pod's annotations into its sandbox (pause) container too.
        return Ok(None);
    }
    let selected = annotations::select(c.annotations, scope.container_name.as_deref())?;
    if selected.is_empty() {
        // Only keys for other containers of the pod.
        return Ok(None);
    }
    Ok(Some((scope, selected)))
}

/// Whether [`prepare`] may have work for this container: it has an `io.ocivol.` key that
/// applies to it (or a wrong one, for `prepare` to refuse) and is no pod's sandbox. Cheap: for a
/// way in to skip what only a prepared container needs (a user namespace made for it, say).
pub fn wanted(c: &Container) -> bool {
    !matches!(selected(c), Ok(None))
}

/// Where [`prepare`] finds what a container's annotations name: the policy and the guard that
/// opens every host path under it, the store (volumes, and other containers' records for
/// volumes-from) and the real runtime (the bundle of a volumes-from source ocivol has no record
/// of; `None` for a hook, which has no runtime to ask). A way in makes one with
/// [`Resolver::new`]; a test gives its own store, policy and runtime, so the whole data path
/// runs without root.
pub struct Resolver<'a> {
    pub policy: &'a Policy,
    pub guard: Guard,
    pub store: &'a Store,
    pub runtime: Option<&'a dyn RuntimeProbe>,
}

impl<'a> Resolver<'a> {
    /// The resolver of this invocation: its policy, with ocivol's own state roots out of every
    /// annotation's reach.
    pub fn new(
        ctx: &'a Context,
        store: &'a Store,
        runtime: Option<&'a dyn RuntimeProbe>,
    ) -> Resolver<'a> {
        let policy = &ctx.config.policy;
        Resolver {
            policy,
            guard: Guard::new(
                policy,
                &[ctx.paths.root.as_path(), ctx.paths.run_root.as_path()],
            ),
            store,
            runtime,
        }
    }
}

/// Resolves the container's annotations and takes its volumes. `Ok(None)`: nothing for ocivol to
/// do (no annotation of ocivol's, only keys for other containers of its pod, or a pod's sandbox
/// container). Every key that applies is parsed and every source found before anything is
/// taken; on a later error what was taken is released again, so nothing is held and no record
/// is left.
pub fn prepare(r: &Resolver, c: &Container) -> anyhow::Result<Option<Prepared>> {
    let Some((scope, selected)) = selected(c)? else {
        return Ok(None);
    };
    check_container_id(c.id).map_err(anyhow::Error::msg)?;
    let (policy, guard, store) = (r.policy, &r.guard, r.store);
    let max = policy.max_volumes_per_container;
    // The pod's key first, then the container's own, which wins a destination.
    let mut planned: Vec<plan::PlannedMount> = Vec::new();
    for (key, text) in &selected.volumes {
        let specs = annotations::parse_volumes_of(key, text, max)?;
        for m in plan::plan(&specs, key, guard)? {
            planned.retain(|p| p.destination != m.destination);
            planned.push(m);
        }
    }
    if planned.len() > max {
        let keys: Vec<&str> = selected.volumes.iter().map(|(k, _)| *k).collect();
        return Err(AnnotationError::new(
            &keys.join(" + "),
            "",
            format!(
                "{} volumes in all; the policy allows at most {max} per container \
                 (max_volumes_per_container)",
                planned.len()
            ),
        )
        .into());
    }
    let mut from = Vec::new();
    for (key, text) in &selected.volumes_from {
        from.extend(volumes_from::parse_of(key, text, max)?);
    }
    let from = volumes_from::dedup(from);

    let key = key_of(c);
    let me = volumes_from::Me {
        id: c.id,
        key: &key,
        runtime_root: c.runtime_root,
        key_root: c.key_root,
        bundle: c.bundle,
        scope: &scope,
    };
    let resolved = volumes_from::resolve(store, &me, &from, policy, r.runtime)?;
    let own: Vec<PathBuf> = planned.iter().map(|m| m.destination.clone()).collect();
    let copied = volumes_from::merge(&own, resolved.mounts);

    let mut record = ContainerRecord {
        id: c.id.to_string(),
        runtime_root: c.runtime_root.map(str::to_string),
        key_root: c.key_root.map(str::to_string),
        bundle: c.bundle.to_path_buf(),
        scope,
        volumes: Vec::new(),
        mounts: Vec::new(),
        volumes_from: resolved.source_keys,
        boot_id: boot_id(),
        init: store.init_process(),
    };
    let mut pins = Vec::new();
    let taken = take(
        store,
        guard,
        policy,
        &key,
        &planned,
        &copied,
        c.rootfs,
        &mut record,
        &mut pins,
    );
    if let Err(e) = taken {
        for name in &record.volumes {
            if let Err(e2) = store.release(name, &key) {
                log::error!("release volume {name} after a failed prepare: {e2}");
            }
        }
        let _ = store.remove_container(&key);
        return Err(e);
    }
    Ok(Some(Prepared { record, pins }))
}

/// What fills a volume at `destination` if this container creates it: the image's content there
/// (Docker's copy-up), unless the container's rootfs is unknown, the volume is copy-on-write (its
/// content is its base), it is one the policy shares with every scope (no tenant's image
/// chooses what the others find in it) or the entry says `nocopy`.
fn image_dir<'a>(
    rootfs: Option<&'a Path>,
    destination: &'a Path,
    no_copy: bool,
    ids: Option<&'a crate::userns::Mappings>,
) -> Option<ImageDir<'a>> {
    rootfs.filter(|_| !no_copy).map(|rootfs| ImageDir {
        rootfs,
        destination,
        ids,
    })
}

/// The directory of a volume that `subpath=` names (the volume's root without one).
fn in_volume(root: Pin, subpath: Option<&Path>) -> std::io::Result<Pin> {
    match subpath {
        None => Ok(root),
        Some(rel) => root
            .subdir(rel)
            .map_err(|e| std::io::Error::new(e.kind(), format!("subpath {}: {e}", rel.display()))),
    }
}

/// Takes the container's own volumes and joins the copied ones, filling `record` (and `pins`,
/// the open source of each mount) as it goes so that a failure part-way knows what to give
/// back; then saves the record.
#[allow(clippy::too_many_arguments)]
fn take(
    store: &Store,
    guard: &Guard,
    policy: &crate::config::Policy,
    key: &str,
    planned: &[plan::PlannedMount],
    copied: &[volumes_from::SourceMount],
    rootfs: Option<&Path>,
    record: &mut ContainerRecord,
    pins: &mut Vec<Pin>,
) -> anyhow::Result<()> {
    for m in planned {
        let (pin, volume, flags) = match &m.what {
            Planned::Bind { source } => (source.clone(), None, m.flags),
            Planned::Volume {
                name,
                base,
                volatile,
                owner,
                nocopy,
                subpath,
                limits,
            } => {
                // A name means the volume of the container's scope, or a shared one (see
                // Store::acquire); an anonymous volume records the scope for `volume ls`.
                let req = VolumeRequest {
                    name: name.clone(),
                    base: base.clone(),
                    volatile: *volatile,
                    scope: Some(record.scope.volume_scope()),
                    create_shared: name
                        .as_ref()
                        .is_some_and(|n| policy.shared_volumes.contains(n)),
                    owner: *owner,
                    limits: *limits,
                };
                let refuse = |e: String| AnnotationError::new(&m.annotation, &m.entry, e);
                let image = image_dir(
                    rootfs,
                    &m.destination,
                    base.is_some() || *nocopy || req.create_shared,
                    store.userns_mappings(),
                );
                let got = store
                    .acquire_filled(
                        &req,
                        key,
                        policy.auto_create,
                        guard,
                        image.as_ref().map(|i| i as &dyn Fill),
                    )
                    .map_err(|e| refuse(e.to_string()))?;
                record.volumes.push(got.name.clone());
                let pin = Pin::own(&got.source)
                    .and_then(|p| in_volume(p, subpath.as_deref()))
                    .map_err(|e| refuse(e.to_string()))?;
                (pin, Some(got.name), m.flags.union(got.force))
            }
        };
        let subpath = match &m.what {
            Planned::Volume { subpath, .. } => subpath.clone(),
            Planned::Bind { .. } => None,
        };
        record.mounts.push(RecordedMount {
            destination: m.destination.clone(),
            source: pin.path().to_path_buf(),
            flags,
            volume,
            engine: false,
            subpath,
        });
        pins.push(pin);
    }
    for m in copied {
        let refuse = |reason: String| {
            AnnotationError::new(&m.annotation, &m.destination.display().to_string(), reason)
        };
        let (pin, volume, flags) = match &m.volume {
            None if guard.in_state(&m.source) => {
                // Where ocivol staged a mount of a source whose record is gone: what it held
                // is in no path that can be trusted now.
                log::warn!(
                    "volumes-from: {} comes from ocivol's own state; skipped",
                    m.destination.display()
                );
                continue;
            }
            None => {
                // Checked as if this container had asked for it itself, by today's policy.
                let pin = if m.engine {
                    guard.engine_bind(&m.source)
                } else {
                    guard.check(Kind::BindSource, &m.source, How::Asked)
                }
                .map_err(refuse)?;
                let flags = m.flags.union(pin.force());
                (pin, None, flags)
            }
            Some(name) => match store
                .join(name, key, guard)
                .map_err(|e| refuse(e.to_string()))?
            {
                Some(got) => {
                    record.volumes.push(got.name.clone());
                    // The source's subpath= is resolved again, inside the volume as it is now.
                    let pin = Pin::own(&got.source)
                        .and_then(|p| in_volume(p, m.subpath.as_deref()))
                        .map_err(|e| refuse(e.to_string()))?;
                    (pin, Some(got.name), m.flags.union(got.force))
                }
                None => {
                    // An anonymous volume goes with its last user; a source that has ended
                    // no longer has it.
                    log::warn!(
                        "volumes-from: volume {name} at {} no longer exists; skipped",
                        m.destination.display()
                    );
                    continue;
                }
            },
        };
        record.mounts.push(RecordedMount {
            destination: m.destination.clone(),
            source: pin.path().to_path_buf(),
            flags,
            volume,
            engine: m.engine,
            subpath: m.subpath.clone(),
        });
        pins.push(pin);
    }
    // Parents before children, so that /a does not hide /a/b (a stable sort: the pins follow).
    let mut both: Vec<(RecordedMount, Pin)> = std::mem::take(&mut record.mounts)
        .into_iter()
        .zip(pins.drain(..))
        .collect();
    both.sort_by_key(|(m, _)| m.destination.components().count());
    (record.mounts, *pins) = both.into_iter().unzip();
    store.save_container(record)?;
    Ok(())
}

/// The data path from annotations to planned mounts, without root: a store over a fake kernel
/// ([`crate::mounts::tests::Recording`]), host directories, bundles and state roots in a temp
/// directory, and a fake runtime that knows bundles by ID.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowedPath;
    use crate::config::StatePaths;
    use crate::mounts::flags::MountFlags;
    use crate::mounts::tests::Recording;
    use crate::real_runtime::RuntimeView;
    use std::collections::HashMap;
    use std::fs;

    const RUNTIME_ROOT: &str = "/run/ocivol-test-runc";

    struct Node {
        dir: tempfile::TempDir,
        paths: StatePaths,
        store: Store,
        policy: Policy,
    }

    /// A runtime that knows the bundle of each ID it was given.
    struct FakeRuntime(HashMap<String, PathBuf>);

    impl RuntimeProbe for FakeRuntime {
        fn state(&self, id: &str, _root: Option<&str>) -> RuntimeView {
            match self.0.contains_key(id) {
                true => RuntimeView::Alive {
                    status: "created".into(),
                    pid: None,
                },
                false => RuntimeView::Absent,
            }
        }
        fn bundle_of(&self, id: &str, root: Option<&str>) -> Option<PathBuf> {
            assert_eq!(
                root,
                Some(RUNTIME_ROOT),
                "asked under the container's own root"
            );
            self.0.get(id).cloned()
        }
    }

    impl Node {
        /// `host/srv` may be bound, `host/base` may be a base.
        fn new() -> Node {
            let dir = tempfile::tempdir().unwrap();
            let host = dir.path().join("host");
            for d in ["srv/app", "srv/cache", "base/etc", "secret"] {
                fs::create_dir_all(host.join(d)).unwrap();
            }
            fs::write(host.join("base/etc/conf"), "base").unwrap();
            let paths = StatePaths {
                root: dir.path().join("root"),
                run_root: dir.path().join("run"),
            };
            let policy = Policy {
                allowed_bind_sources: vec![AllowedPath::new(host.join("srv"))],
                allowed_bases: vec![AllowedPath::new(host.join("base"))],
                ..Default::default()
            };
            let store = Store::new(&paths, Box::new(Recording::default()));
            Node {
                dir,
                paths,
                store,
                policy,
            }
        }

        fn host(&self, p: &str) -> PathBuf {
            self.dir.path().join("host").join(p)
        }

        fn resolver<'a>(&'a self, runtime: Option<&'a dyn RuntimeProbe>) -> Resolver<'a> {
            Resolver {
                policy: &self.policy,
                guard: Guard::new(&self.policy, &[&self.paths.root, &self.paths.run_root]),
                store: &self.store,
                runtime,
            }
        }

        /// A bundle `bundles/ID` with these spec mounts and a rootfs.
        fn bundle(&self, id: &str, mounts: serde_json::Value) -> PathBuf {
            let b = self.dir.path().join("bundles").join(id);
            fs::create_dir_all(b.join("rootfs")).unwrap();
            let spec = serde_json::json!({"ociVersion": "1.0.2", "mounts": mounts});
            fs::write(b.join("config.json"), spec.to_string()).unwrap();
            b
        }

        fn prepare(
            &self,
            id: &str,
            annotations: &[(&str, &str)],
            runtime: Option<&dyn RuntimeProbe>,
        ) -> anyhow::Result<Option<Prepared>> {
            let bundle = match self.dir.path().join("bundles").join(id) {
                b if b.exists() => b,
                _ => self.bundle(id, serde_json::json!([])),
            };
            self.prepare_at(&bundle, id, annotations, runtime)
        }

        /// Prepares container `id` of `bundle`, and checks that [`wanted`] agrees.
        fn prepare_at(
            &self,
            bundle: &Path,
            id: &str,
            annotations: &[(&str, &str)],
            runtime: Option<&dyn RuntimeProbe>,
        ) -> anyhow::Result<Option<Prepared>> {
            let annotations: BTreeMap<String, String> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let rootfs = bundle.join("rootfs");
            let c = Container {
                id,
                runtime_root: Some(RUNTIME_ROOT),
                key_root: None,
                bundle,
                annotations: &annotations,
                rootfs: Some(&rootfs),
            };
            let got = prepare(&self.resolver(runtime), &c);
            assert_eq!(
                wanted(&c),
                !matches!(got, Ok(None)),
                "wanted() says whether prepare() has work"
            );
            got
        }

        fn record(&self, id: &str) -> Option<ContainerRecord> {
            self.store
                .load_container(&container_key(id, Some(RUNTIME_ROOT)))
                .unwrap()
        }
    }

    /// (destination, flags, volume) of each planned mount, in mount order; a volume by its name
    /// without the scope's hash, an anonymous one (a random name) as `<anonymous>`.
    fn planned(p: &Prepared) -> Vec<(String, MountFlags, Option<String>)> {
        p.record
            .mounts
            .iter()
            .map(|m| {
                let volume = m.volume.as_deref().map(|v| {
                    let name = v.split('@').next().unwrap();
                    match name.len() == 32 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                        true => "<anonymous>".to_string(),
                        false => name.to_string(),
                    }
                });
                (m.destination.display().to_string(), m.flags, volume)
            })
            .collect()
    }

    fn mount(
        dest: &str,
        flags: MountFlags,
        volume: Option<&str>,
    ) -> (String, MountFlags, Option<String>) {
        (dest.to_string(), flags, volume.map(str::to_string))
    }

    const RW: MountFlags = MountFlags {
        readonly: false,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    const RO: MountFlags = MountFlags {
        readonly: true,
        ..RW
    };

    #[test]
    fn annotations_become_planned_mounts_parents_first_and_a_saved_record() {
        let node = Node::new();
        let src = node.host("srv/app");
        let text = format!(
            "data:/data/db:nodev;{}:/data:ro;/scratch;etc:/etc/app:base={},volatile",
            src.display(),
            node.host("base/etc").display()
        );
        let got = node
            .prepare("web", &[("io.ocivol.volumes", &text)], None)
            .unwrap()
            .unwrap();
        assert_eq!(
            planned(&got),
            [
                mount("/data", RO, None),
                mount("/scratch", RW, Some("<anonymous>")),
                mount("/data/db", MountFlags { nodev: true, ..RW }, Some("data")),
                mount("/etc/app", RW, Some("etc")),
            ]
        );
        // Every mount has its checked source open; the bind is the host directory itself.
        assert_eq!(got.pins.len(), 4);
        assert_eq!(got.record.mounts[0].source, fs::canonicalize(&src).unwrap());
        // The copy-on-write volume's overlay was mounted, and the record is on disk.
        let etc = got.record.mounts[3].volume.clone().unwrap();
        assert!(node.store.is_mounted(&etc));
        assert_eq!(node.record("web").unwrap(), got.record);
    }

    #[test]
    fn a_new_volume_is_filled_from_the_image_unless_nocopy() {
        let node = Node::new();
        let bundle = node.bundle("web", serde_json::json!([]));
        for d in ["app", "logs"] {
            fs::create_dir_all(bundle.join("rootfs").join(d)).unwrap();
            fs::write(bundle.join("rootfs").join(d).join("seed"), d).unwrap();
        }
        let got = node
            .prepare(
                "web",
                &[("io.ocivol.volumes", "app:/app;logs:/logs:nocopy")],
                None,
            )
            .unwrap()
            .unwrap();
        let seed = |i: usize| got.record.mounts[i].source.join("seed");
        assert_eq!(fs::read_to_string(seed(0)).unwrap(), "app");
        assert!(!seed(1).exists(), "nocopy: the volume starts empty");
    }

    #[test]
    fn volumes_from_a_recorded_source_joins_its_volumes_read_only() {
        let node = Node::new();
        let cache = node.host("srv/cache");
        let text = format!("data:/data;{}:/cache", cache.display());
        let src = node
            .prepare("src", &[("io.ocivol.volumes", &text)], None)
            .unwrap()
            .unwrap();
        let got = node
            .prepare("reader", &[("io.ocivol.volumes-from", "src:ro")], None)
            .unwrap()
            .unwrap();
        assert_eq!(
            planned(&got),
            [mount("/cache", RO, None), mount("/data", RO, Some("data"))]
        );
        // The same volume, now with two users; the same host directory.
        let data = src.record.mounts[0].volume.clone().unwrap();
        assert_eq!(got.record.mounts[1].volume.as_ref(), Some(&data));
        assert_eq!(node.store.users(&data).unwrap().len(), 2);
        assert_eq!(got.record.mounts[0].source, src.record.mounts[1].source);
        assert_eq!(got.record.volumes_from, [src.record.key()]);
    }

    #[test]
    fn volumes_from_asks_the_runtime_for_a_source_ocivol_never_prepared() {
        let node = Node::new();
        let shared = node.host("srv/cache");
        let plain = node.bundle(
            "plain",
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/shared", "type": "bind", "source": shared,
                 "options": ["rbind", "rprivate", "nosuid"]},
            ]),
        );
        let runtime = FakeRuntime(HashMap::from([("plain".to_string(), plain)]));
        let got = node
            .prepare(
                "reader",
                &[("io.ocivol.volumes-from", "plain")],
                Some(&runtime),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            planned(&got),
            [mount("/shared", MountFlags { nosuid: true, ..RW }, None)]
        );
        assert!(got.record.mounts[0].engine, "an engine's bind, copied");
        // Without a runtime to ask (a hook) the source is not found, and nothing is held.
        let e = node
            .prepare("reader2", &[("io.ocivol.volumes-from", "plain")], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no container \"plain\" in this scope"), "{e}");
        assert!(node.record("reader2").is_none());
    }

    #[test]
    fn a_refused_entry_gives_back_what_was_taken_and_leaves_no_record() {
        let mut node = Node::new();
        node.policy.auto_create = false;
        // An operator made "data"; "missing" does not exist and may not be made.
        let req = crate::store::VolumeRequest::shared(Some("data"), None, false);
        let guard = Guard::new(&node.policy, &[]);
        node.store.acquire(&req, "op", true, &guard).unwrap();
        node.store.release("data", "op").unwrap();
        let e = node
            .prepare(
                "web",
                &[("io.ocivol.volumes", "data:/data;missing:/m")],
                None,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "annotation io.ocivol.volumes: entry \"missing:/m\": volume missing does not exist"
            ),
            "names the annotation and the entry: {e}"
        );
        assert!(node.store.users("data").unwrap().is_empty(), "given back");
        assert!(node.record("web").is_none());
        // A host path outside the policy is refused before anything is taken.
        let secret = format!("{}:/s", node.host("secret").display());
        let e = node
            .prepare("web", &[("io.ocivol.volumes", &secret)], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&secret), "{e}");
        assert!(node.record("web").is_none());
    }

    #[test]
    fn nothing_to_do_for_no_keys_a_sandbox_or_keys_of_other_containers() {
        let node = Node::new();
        assert!(node.prepare("plain", &[], None).unwrap().is_none());
        // A containerd pod: the sandbox gets the pod's keys too, and is left alone; a key for
        // another container of the pod is no work for this one.
        let pod = node
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task/k8s.io");
        let at = |id: &str, kind: &str, key: &str| {
            let bundle = pod.join(id);
            fs::create_dir_all(&bundle).unwrap();
            node.prepare_at(
                &bundle,
                id,
                &[
                    (crate::scope::CRI_CONTAINER_TYPE, kind),
                    (crate::scope::CRI_CONTAINER_NAME, id),
                    (crate::scope::CRI_SANDBOX_ID, "sb"),
                    (key, "/scratch"),
                ],
                None,
            )
        };
        assert!(at("sb", "sandbox", "io.ocivol.volumes").unwrap().is_none());
        assert!(
            at("app", "container", "io.ocivol.volumes/web")
                .unwrap()
                .is_none()
        );
        assert!(
            at("web", "container", "io.ocivol.volumes/web")
                .unwrap()
                .is_some()
        );
        // A misspelt key is work: prepare refuses it.
        let e = at("app", "container", "io.ocivol.volume").unwrap_err();
        assert!(e.to_string().contains("io.ocivol.volume"), "{e}");
    }
}
