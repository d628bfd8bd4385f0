//! Preparing a container's volumes, the whole data path in one place:
//! annotations → plan → volume store → mounts for the spec (and a record of what was taken).
//!
//! Every way in (the runtime wrapper now, the hooks later) calls [`prepare`] before the
//! container starts and [`Store::release_container`] after it is gone.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::Mount;

use crate::annotations::{self, AnnotationError};
use crate::config::Context;
use crate::plan::{self, HostResolver, Planned};
use crate::spec::bind_mount;
use crate::store::{ContainerRecord, RecordedMount, Store, VolumeRequest, boot_id, container_key};

/// What a prepared container gets.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub record: ContainerRecord,
    /// Bind mounts to add to the spec, parents before children.
    pub mounts: Vec<Mount>,
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

/// Resolves the container's annotations and takes its volumes. `Ok(None)`: nothing for ocivol to
/// do. On error nothing is held: what was taken before the failing entry is released again.
pub fn prepare(
    ctx: &Context,
    store: &Store,
    id: &str,
    runtime_root: Option<&str>,
    bundle: &Path,
    annotations: &BTreeMap<String, String>,
) -> anyhow::Result<Option<Prepared>> {
    if let Some(from) = annotations.get(annotations::VOLUMES_FROM) {
        return Err(AnnotationError::new(
            annotations::VOLUMES_FROM,
            from,
            "volumes-from is not supported by this version of ocivol yet",
        )
        .into());
    }
    let Some(text) = annotations.get(annotations::VOLUMES) else {
        return Ok(None);
    };
    check_container_id(id).map_err(anyhow::Error::msg)?;
    let policy = &ctx.config.policy;
    let specs = annotations::parse_volumes(text, policy.max_volumes_per_container)?;
    let state_dirs = [ctx.paths.root.as_path(), ctx.paths.run_root.as_path()];
    let mut planned = plan::plan(&specs, policy, &state_dirs, &HostResolver)?;
    // Parents before children, so that /a does not hide /a/b.
    planned.sort_by_key(|m| m.destination.components().count());

    let key = container_key(id, runtime_root);
    let mut record = ContainerRecord {
        id: id.to_string(),
        runtime_root: runtime_root.map(str::to_string),
        bundle: bundle.to_path_buf(),
        volumes: Vec::new(),
        mounts: Vec::new(),
        boot_id: boot_id(),
    };
    let taken = (|| -> anyhow::Result<()> {
        for m in &planned {
            let (source, volume) = match &m.what {
                Planned::Bind { source } => (source.clone(), None),
                Planned::Volume {
                    name,
                    base,
                    volatile,
                } => {
                    let req = VolumeRequest {
                        name: name.clone(),
                        base: base.clone(),
                        volatile: *volatile,
                    };
                    let got = store.acquire(&req, &key, policy.auto_create).map_err(|e| {
                        AnnotationError::new(annotations::VOLUMES, &m.entry, e.to_string())
                    })?;
                    record.volumes.push(got.name.clone());
                    (got.source, Some(got.name))
                }
            };
            record.mounts.push(RecordedMount {
                destination: m.destination.clone(),
                source,
                options: m.flags.oci_options(),
                volume,
            });
        }
        store.save_container(&record)?;
        Ok(())
    })();
    if let Err(e) = taken {
        for name in &record.volumes {
            if let Err(e2) = store.release(name, &key) {
                log::error!("release volume {name} after a failed prepare: {e2}");
            }
        }
        let _ = store.remove_container(&key);
        return Err(e);
    }
    let mounts = record.mounts.iter().map(recorded_to_mount).collect();
    Ok(Some(Prepared { record, mounts }))
}

/// The spec mount for a recorded mount: host paths are bound recursively (as Docker's `-v`
/// does), a volume's directory or overlay as it is.
pub fn recorded_to_mount(m: &RecordedMount) -> Mount {
    bind_mount(&m.source, &m.destination, m.volume.is_none(), &m.options)
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
