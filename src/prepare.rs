//! Preparing a container's volumes, the whole data path in one place:
//! annotations → plan → volume store → mounts for the spec (and a record of what was taken).
//!
//! Every way in (the runtime wrapper now, the hooks later) calls [`prepare`] before the
//! container starts and [`Store::release_container`] after it is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::annotations::{self, AnnotationError};
use crate::config::Context;
use crate::copyup::ImageDir;
use crate::pin::{Guard, How, Kind, Pin};
use crate::plan::{self, Planned};
use crate::scope::Scope;
use crate::spec::bind_mount;
use crate::store::{
    ContainerRecord, Fill, RecordedMount, Store, VolumeRequest, boot_id, container_key,
};
use crate::volumes_from::{self, RuntimeState};

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
            .map(|(m, source)| bind_mount(source, &m.destination, m.volume.is_none(), &m.options))
            .collect()
    }
}

/// A container ID becomes a file name in ocivol's state: allow what runc allows
/// (`[\w+.-]+`), never `/`, `.` or `..`.
pub fn check_container_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container ID {id:?}: use letters, digits, '_', '+', '.' and '-'"
        ))
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

/// Whether [`prepare`] may have work for this container: it has an `io.ocivol.` key that
/// applies to it (or a wrong one, for `prepare` to refuse) and is no pod's sandbox. Cheap: for a
/// way in to skip what only a prepared container needs (a user namespace made for it, say).
pub fn wanted(c: &Container) -> bool {
    if !c
        .annotations
        .keys()
        .any(|k| k.starts_with(annotations::PREFIX))
    {
        return false;
    }
    let scope = Scope::of(c.bundle, c.runtime_root, c.annotations);
    !scope.sandbox_container
        && annotations::select(c.annotations, scope.container_name.as_deref())
            .map_or(true, |s| !s.is_empty())
}

/// Resolves the container's annotations and takes its volumes. `Ok(None)`: nothing for ocivol to
/// do (no annotation of ocivol's, only keys for other containers of its pod, or a pod's sandbox
/// container). Every key that applies is parsed and every source found before anything is
/// taken; on a later error what was taken is released again, so nothing is held and no record
/// is left.
pub fn prepare(
    ctx: &Context,
    store: &Store,
    c: &Container,
    runtime: &dyn RuntimeState,
) -> anyhow::Result<Option<Prepared>> {
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
    check_container_id(c.id).map_err(anyhow::Error::msg)?;
    let policy = &ctx.config.policy;
    let guard = Guard::new(
        policy,
        &[ctx.paths.root.as_path(), ctx.paths.run_root.as_path()],
    );
    let max = policy.max_volumes_per_container;
    // The pod's key first, then the container's own, which wins a destination.
    let mut planned: Vec<plan::PlannedMount> = Vec::new();
    for (key, text) in &selected.volumes {
        let specs = annotations::parse_volumes_of(key, text, max)?;
        for m in plan::plan(&specs, key, &guard)? {
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
    let resolved = volumes_from::resolve(store, &me, &from, policy, runtime)?;
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
        &guard,
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
            options: flags.oci_options(),
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
            options: flags.oci_options(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_checked() {
        for ok in ["a", "web-1", "k8s_pod.x+y", "0123456789abcdef"] {
            assert!(check_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
    }
}
