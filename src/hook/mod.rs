//! `ocivol hook …`: the ways in for engines that keep their own runtime and run OCI hooks.
//!
//! - `precreate` (podman only): config.json on stdin, the changed config.json on stdout, the same
//!   spec change as the wrapper's `create`.
//! - `create-runtime` (runc, crun, CRI-O, podman): the OCI state on stdin; the volumes are
//!   prepared and mounted into the container's mount namespace (see [`attach`]).
//! - `poststop`: releases what the container held. Idempotent.
//! - no stage: told from stdin (a state with status `creating` or `stopped`, or a config), so
//!   that one hooks.d file can list several stages with the same command.
//!
//! Hooks get no `--root`, so a container's record is keyed by its ID and its bundle path (or the
//! state's `root` where a runtime gives one): two containers with one ID under two runtime roots
//! have two records. Nothing in the spec names the record poststop releases: it is computed
//! from the `id` and `bundle` the engine gives poststop.

mod attach;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

use crate::config::Context;
use crate::container_id::{PRECREATE_KEY_ROOT, container_key, hook_key_root};
use crate::mounts::Linux;
use crate::prepare::{Container, Resolver, key_of, prepare};
use crate::process::ProcessId;
use crate::spec::{BundleSpec, SpecError};
use crate::store::Store;
use crate::userns::{Idmap, UserNs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    Precreate,
    CreateRuntime,
    Poststop,
}

/// The OCI state a runtime passes to its hooks.
#[derive(Debug, Deserialize)]
struct HookState {
    id: String,
    #[serde(default)]
    pid: Option<i32>,
    bundle: PathBuf,
    /// The runtime's root, for runtimes that put it in the state (runc does not).
    #[serde(default)]
    root: Option<String>,
}

impl HookState {
    /// (runtime root, key root) of the container's record.
    fn key_parts(&self) -> (Option<&str>, Option<String>) {
        match self.root.as_deref().filter(|r| !r.is_empty()) {
            Some(root) => (Some(root), None),
            None => (None, Some(hook_key_root(&self.bundle))),
        }
    }
}

/// Runs a hook stage with stdin and stdout. The caller has cleared the environment.
pub fn run(
    stage: Option<Stage>,
    ctx: &Context,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut text = Vec::new();
    input.read_to_end(&mut text).context("read stdin")?;
    let stage = match stage {
        Some(s) => s,
        None => infer_stage(&text)?,
    };
    let store = Store::new(&ctx.paths, Box::new(Linux))
        .with_linger(ctx.config.overlay_linger)
        .deferring_unmounts();
    let done = match stage {
        // The hook's process ends long before the container exists, and there is no pid yet:
        // the users it takes must not be judged by either (see store::reconcile, and
        // Store::untracked in precreate).
        Stage::Precreate => precreate(ctx, store, &text, output),
        Stage::CreateRuntime => {
            let state = parse_state(&text)?;
            // The container's init is known: its death (pid and start time) tells that the
            // container is gone, whatever runtime root it lives under.
            let store = match state.pid.filter(|p| *p > 0).and_then(ProcessId::of) {
                Some(init) => store.with_init(init),
                None => store,
            };
            create_runtime(ctx, store, &state)
        }
        Stage::Poststop => poststop(&store, &parse_state(&text)?),
    };
    // The record and the definitions this hook wrote are synced after it has returned to the
    // runtime (see crate::durable), the overlays it released are unmounted by the same child
    // (Store::deferring_unmounts), and the anonymous volumes it released are removed
    // (crate::store::trash).
    // The detached overlays first: a fork that empties the trash must not inherit their
    // last references (it would end them, and its exit closes the lock before the overlay).
    crate::durable::flush_detached(crate::store::take_detached(done.is_ok()));
    crate::store::empty_trash_as_command_ends(done.is_ok());
    done
}

fn parse_state(text: &[u8]) -> anyhow::Result<HookState> {
    serde_json::from_slice(text).context("stdin is not an OCI state (id, status, pid, bundle)")
}

fn infer_stage(text: &[u8]) -> anyhow::Result<Stage> {
    let v: serde_json::Value = serde_json::from_slice(text).context("stdin is not JSON")?;
    if v.get("bundle").is_some() && v.get("id").is_some() {
        return match v.get("status").and_then(|s| s.as_str()) {
            Some("creating") | Some("created") => Ok(Stage::CreateRuntime),
            Some("stopped") => Ok(Stage::Poststop),
            other => bail!(
                "cannot tell the hook stage from an OCI state with status {other:?}; name the stage"
            ),
        };
    }
    if v.get("ociVersion").is_some() {
        return Ok(Stage::Precreate);
    }
    bail!("stdin is neither an OCI state nor a config.json")
}

/// podman's precreate hook takes the volumes before the container exists, and podman's poststop
/// gets only the container's `id` and `bundle`. The record is keyed by podman's container ID,
/// read from the mounts podman itself wrote into the config (`/etc/hosts`, `/etc/hostname`,
/// `/run/.containerenv`, `/dev/shm` come from `…/DRIVER-containers/ID/userdata/`) and its
/// cgroup path (`…libpod-ID`), never from an annotation.
///
/// A spec with a user namespace gets its mounts idmapped as the runtime wrapper's do (a
/// namespace made with its mappings); podman gives such a container a rootfs that belongs to
/// the mapped root, so its mount points are left to the runtime.
fn precreate(
    ctx: &Context,
    store: Store,
    text: &[u8],
    output: &mut dyn Write,
) -> anyhow::Result<()> {
    // No ocivol key: the config goes back byte for byte.
    let Some(mut spec) = BundleSpec::parse_if_ocivol(PathBuf::from("<stdin>"), text)? else {
        output
            .write_all(text)
            .context("write the config to stdout")?;
        return output.flush().context("write the config to stdout");
    };
    let (id, userdata) = podman_container(&spec)?;
    let userns = UserNs::for_spec(&spec.value)
        .context("the container's user namespace")?
        .map(Arc::new);
    // podman removes `userdata` with the container: a user whose directory is gone is.
    let store = &store.untracked(&userdata).with_userns(userns.clone());
    let annotations = spec.annotations();
    let rootfs = spec.rootfs(&userdata);
    let container = Container {
        id: &id,
        runtime_root: None,
        key_root: Some(PRECREATE_KEY_ROOT),
        bundle: &userdata,
        annotations: &annotations,
        rootfs: rootfs.as_deref(),
    };
    let key = key_of(&container);
    // What an earlier start of this container held, if its poststop never ran: podman runs
    // one container of an ID at a time, and precreate only when it starts it.
    store.release_container(&key)?;
    // Hooks have no runtime to ask (None): volumes-from finds sources in ocivol's records and
    // in the engines' bundle directories.
    if let Some(prepared) = prepare(&Resolver::new(ctx, store, None), &container)? {
        // podman hands the spec to its runtime after this process has exited: the staged
        // mounts stay until poststop releases the container.
        let idmap = userns
            .as_deref()
            .map(|ns| Idmap::new(ns, &ctx.paths.run_root));
        let staged = crate::staging::stage(
            &ctx.paths.run_root,
            &key,
            &prepared.record.mounts,
            &prepared.pins,
            None,
            idmap.as_ref(),
        )
        .map_err(anyhow::Error::from)
        .and_then(|sources| Ok(spec.add_mounts(&prepared.spec_mounts(&sources))?));
        if let Err(e) = staged {
            let _ = store.forget_container(&key);
            return Err(e);
        }
    }
    serde_json::to_writer(&mut *output, &spec.value).context("write the config to stdout")?;
    output.flush().context("write the config to stdout")
}

/// podman's container ID and the `userdata` directory it was read from, from what podman wrote
/// into the config; every place that names an ID must name the same one.
fn podman_container(spec: &BundleSpec) -> anyhow::Result<(String, PathBuf)> {
    let mut found: Option<(String, PathBuf)> = None;
    let mut ids = Vec::new();
    for m in spec.mounts()? {
        if let Some(src) = m.source()
            && let Some((id, dir)) = storage_container_dir(src)
        {
            ids.push(id.clone());
            found.get_or_insert((id, dir));
        }
    }
    if let Some(cg) = spec
        .value
        .pointer("/linux/cgroupsPath")
        .and_then(|v| v.as_str())
        && let Some(pos) = cg.rfind("libpod")
    {
        ids.push(
            cg[pos + "libpod".len()..]
                .trim_start_matches(['-', ':'])
                .to_string(),
        );
    }
    match found {
        Some((id, dir)) if ids.iter().all(|i| *i == id) => Ok((id, dir)),
        Some(_) => bail!(
            "precreate: the config names several podman container IDs ({}); refusing to guess",
            ids.join(", ")
        ),
        None => bail!(
            "precreate: the config has no mount from podman's container directory \
             (…/DRIVER-containers/ID/userdata), so the container cannot be told; \
             use the createRuntime hooks file (hooks.d/ocivol.json) instead"
        ),
    }
}

/// `(ID, …/DRIVER-containers/ID/userdata)` for a path under such a directory.
fn storage_container_dir(path: &Path) -> Option<(String, PathBuf)> {
    let parts: Vec<Component> = path.components().collect();
    let at = parts.iter().position(|c| c.as_os_str() == "userdata")?;
    if at < 2 {
        return None;
    }
    let id = parts[at - 1].as_os_str().to_str()?;
    let store = parts[at - 2].as_os_str().to_str()?;
    let is_id = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (is_id && store.ends_with("-containers"))
        .then(|| (id.to_string(), parts[..=at].iter().collect()))
}

fn create_runtime(ctx: &Context, store: Store, state: &HookState) -> anyhow::Result<()> {
    let path = state.bundle.join(crate::spec::CONFIG_FILE);
    let text = std::fs::read(&path).map_err(|source| SpecError::Io {
        path: path.clone(),
        source,
    })?;
    // No ocivol key: nothing to do, and nothing else of the spec is read.
    let Some(spec) = BundleSpec::parse_if_ocivol(path, &text)? else {
        return Ok(());
    };
    let pid = state
        .pid
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("createRuntime: the OCI state has no pid"))?;
    let root = spec
        .value
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| anyhow!("{}: no root.path", spec.path.display()))?;
    let rootfs =
        std::fs::canonicalize(state.bundle.join(root)).with_context(|| format!("rootfs {root}"))?;
    let annotations: BTreeMap<String, String> = spec.annotations();
    // The container's own user namespace, opened on the host before anything enters its mount
    // namespace: its mounts are idmapped to it.
    let userns = UserNs::of_process(pid)
        .context("the container's user namespace")?
        .map(Arc::new);
    let store = &store.with_userns(userns.clone());
    let (runtime_root, key_root) = state.key_parts();
    let container = Container {
        id: &state.id,
        runtime_root,
        key_root: key_root.as_deref(),
        bundle: &state.bundle,
        annotations: &annotations,
        rootfs: Some(&rootfs),
    };
    let key = key_of(&container);
    // What an earlier container with this ID and bundle held (a crashed hook, one whose poststop
    // never ran) is released first, but only once it is known to be gone.
    if let Some(old) = store.load_container(&key)? {
        if store.holder_alive(&old)? {
            bail!(
                "container {}: a container with the same ID and bundle still holds volumes; \
                 delete it first",
                state.id
            );
        }
        store.release_record(&key, &old)?;
    }
    let Some(prepared) = prepare(&Resolver::new(ctx, store, None), &container)? else {
        return Ok(());
    };
    let idmap = userns
        .as_deref()
        .map(|ns| Idmap::new(ns, &ctx.paths.run_root));
    let attached = attach::attach_all(
        pid,
        &rootfs,
        &prepared.record.mounts,
        &prepared.pins,
        idmap.as_ref(),
    );
    if let Err(e) = attached {
        if let Err(e2) = store.forget_container(&key) {
            log::error!("release after a failed attach: {e2}");
        }
        return Err(e.into());
    }
    Ok(())
}

/// Releases what the container of this `id` and `bundle` held: its createRuntime record, and
/// what podman's precreate took for a container of podman's with this ID.
fn poststop(store: &Store, state: &HookState) -> anyhow::Result<()> {
    let (runtime_root, key_root) = state.key_parts();
    let key = container_key(&state.id, runtime_root.or(key_root.as_deref()));
    match store.load_container(&key)? {
        // The container poststop runs for has stopped: a record whose init lives is another
        // container's with the same ID and bundle (one whose create this one's failure undid).
        Some(r) if r.init.is_some_and(|i| i.is_alive()) => {
            log::warn!(
                "poststop of {}: its record belongs to a running container; kept",
                state.id
            );
        }
        Some(_) => store.release_container(&key)?,
        None => {}
    }
    if storage_container_dir(&state.bundle).is_some_and(|(id, _)| id == state.id) {
        store.release_container(&container_key(&state.id, Some(PRECREATE_KEY_ROOT)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_told_from_stdin() {
        let state = |s: &str| {
            format!(r#"{{"ociVersion":"1.0.2","id":"c","status":"{s}","pid":1,"bundle":"/b"}}"#)
        };
        assert_eq!(
            infer_stage(state("creating").as_bytes()).unwrap(),
            Stage::CreateRuntime
        );
        assert_eq!(
            infer_stage(state("stopped").as_bytes()).unwrap(),
            Stage::Poststop
        );
        assert!(infer_stage(state("running").as_bytes()).is_err());
        assert_eq!(
            infer_stage(br#"{"ociVersion":"1.0.2","process":{}}"#).unwrap(),
            Stage::Precreate
        );
        assert!(infer_stage(b"[]").is_err());
        assert!(infer_stage(b"nope").is_err());
    }
}
