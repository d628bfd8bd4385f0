//! `ocivol hook …`: the ways in for engines that keep their own runtime and run OCI hooks.
//!
//! - `precreate` (podman only): config.json on stdin, the changed config.json on stdout, the same
//!   spec change as the wrapper's `create`.
//! - `create-runtime` (runc, crun, CRI-O, podman): the OCI state on stdin; the volumes are
//!   prepared and mounted into the container's mount namespace (see [`attach`]).
//! - `poststop`: releases what the container held. Idempotent.
//! - no stage: told from stdin (a state with status `creating` or `stopped`, or a config), so
//!   that one hooks.d file can list several stages with the same command.

mod attach;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;

use crate::config::Context;
use crate::mounts::Linux;
use crate::prepare::{Container, prepare};
use crate::process::ProcessId;
use crate::spec::BundleSpec;
use crate::store::{Store, container_key};
use crate::volumes_from::RuntimeState;

/// Set by `precreate` on the spec it returns, so that `poststop` (which gets the engine's ID)
/// finds what precreate took. Always overwritten: a value a user put there is never used.
pub const PRECREATE_KEY: &str = "io.ocivol.precreate-key";

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
}

/// Hooks have no runtime to ask: volumes-from finds sources in ocivol's records and in the
/// engines' bundle directories.
struct NoRuntime;

impl RuntimeState for NoRuntime {
    fn bundle_of(&self, _id: &str) -> Option<PathBuf> {
        None
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
    let store = Store::new(&ctx.paths, Box::new(Linux));
    match stage {
        // The hook's process ends long before the container exists, and there is no pid yet:
        // the users it takes must not be judged by either (see store::reconcile).
        Stage::Precreate => precreate(ctx, &store.untracked(), &text, output),
        Stage::CreateRuntime => {
            let state = parse_state(&text)?;
            // The container's init is known: its death (pid and start time) tells that the
            // container is gone, whatever runtime root it lives under.
            let store = match state.pid.filter(|p| *p > 0).and_then(ProcessId::of) {
                Some(init) => store.with_init(init),
                None => store,
            };
            create_runtime(ctx, &store, &state)
        }
        Stage::Poststop => poststop(&store, &parse_state(&text)?),
    }
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

fn precreate(
    ctx: &Context,
    store: &Store,
    text: &[u8],
    output: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut spec = BundleSpec::parse(PathBuf::from("<stdin>"), text)?;
    if spec.wants_ocivol() {
        // The engine's ID is not in the config yet: precreate names the container itself.
        let key = format!("precreate-{}", crate::store::random_name()?);
        let mut annotations = spec.annotations();
        annotations.remove(PRECREATE_KEY);
        let container = Container {
            id: &key,
            runtime_root: None,
            bundle: Path::new(""),
            annotations: &annotations,
        };
        if let Some(prepared) = prepare(ctx, store, &container, &NoRuntime)? {
            // podman hands the spec to its runtime after this process has exited: the staged
            // mounts stay until poststop releases the container.
            let record_key = container_key(&key, None);
            let staged = crate::staging::stage(
                &ctx.paths.run_root,
                &record_key,
                &prepared.record.mounts,
                &prepared.pins,
                None,
            )
            .map_err(anyhow::Error::from)
            .and_then(|sources| Ok(spec.add_mounts(&prepared.spec_mounts(&sources))?));
            if let Err(e) = staged {
                let _ = store.forget_container(&record_key);
                return Err(e);
            }
            set_annotation(&mut spec, PRECREATE_KEY, &key);
        }
    }
    serde_json::to_writer(&mut *output, &spec.value).context("write the config to stdout")?;
    output.flush().context("write the config to stdout")
}

fn set_annotation(spec: &mut BundleSpec, key: &str, value: &str) {
    if let Some(obj) = spec.value.as_object_mut() {
        let ann = obj
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(map) = ann.as_object_mut() {
            map.insert(
                key.to_string(),
                serde_json::Value::String(value.to_string()),
            );
        }
    }
}

fn create_runtime(ctx: &Context, store: &Store, state: &HookState) -> anyhow::Result<()> {
    let pid = state
        .pid
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow!("createRuntime: the OCI state has no pid"))?;
    let spec = BundleSpec::load(&state.bundle)?;
    if !spec.wants_ocivol() {
        return Ok(());
    }
    let root = spec
        .value
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| anyhow!("{}: no root.path", spec.path.display()))?;
    let rootfs =
        std::fs::canonicalize(state.bundle.join(root)).with_context(|| format!("rootfs {root}"))?;
    let key = container_key(&state.id, None);
    // What an earlier run of a container with this ID held (a restart, a crashed hook).
    store.release_container(&key)?;
    let annotations: BTreeMap<String, String> = spec.annotations();
    let container = Container {
        id: &state.id,
        runtime_root: None,
        bundle: &state.bundle,
        annotations: &annotations,
    };
    let Some(prepared) = prepare(ctx, store, &container, &NoRuntime)? else {
        return Ok(());
    };
    if let Err(e) = attach::attach_all(pid, &rootfs, &prepared.record.mounts, &prepared.pins) {
        if let Err(e2) = store.forget_container(&key) {
            log::error!("release after a failed attach: {e2}");
        }
        return Err(e.into());
    }
    Ok(())
}

fn poststop(store: &Store, state: &HookState) -> anyhow::Result<()> {
    store.release_container(&container_key(&state.id, None))?;
    // A container prepared by podman's precreate is recorded under the key precreate gave it.
    if let Ok(spec) = BundleSpec::load(&state.bundle)
        && let Some(key) = spec.annotations().get(PRECREATE_KEY)
        && crate::prepare::check_container_id(key).is_ok()
    {
        store.release_container(&container_key(key, None))?;
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
