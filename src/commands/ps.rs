//! `ocivol ps`: the containers ocivol knows (from its records), with their scope, status and
//! volumes.

use clap::Args;
use serde::Serialize;

use super::output::table;
use super::{Format, Global, run, store};
use crate::real_runtime::RuntimeView;
use crate::store::{ContainerRecord, RecordedMount, boot_id, storage_name};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  ocivol ps\n  ocivol ps --format json")]
pub struct PsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_root: Option<String>,
    bundle: std::path::PathBuf,
    scope: crate::scope::Scope,
    /// created, running, paused (as the runtime says), stopped, gone, half-created (a state
    /// directory the runtime says is no container: a create in progress or cut short), or
    /// unknown.
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    volumes: Vec<String>,
    mounts: Vec<RecordedMount>,
}

/// The status of a recorded container: the runtime's word for it, `gone` if the runtime does
/// not have it (or the record is from an earlier boot), `half-created` if it has a state
/// directory and says there is no such container, `unknown` if the runtime cannot say.
fn status(
    view: Option<RuntimeView>,
    record: &ContainerRecord,
    boot: &str,
) -> (String, Option<i32>) {
    if !record.boot_id.is_empty() && record.boot_id != boot {
        return ("gone".into(), None);
    }
    match view {
        Some(RuntimeView::Absent) => ("gone".into(), None),
        Some(RuntimeView::Stopped) => ("stopped".into(), None),
        Some(RuntimeView::Alive { status, pid }) => (status, pid),
        Some(RuntimeView::HalfCreated) => ("half-created".into(), None),
        Some(RuntimeView::Unreadable) | None => ("unknown".into(), None),
    }
}

/// The VOLUMES column: a volume of the container's own scope by the name the container uses,
/// any other (shared, or of another scope through volumes-from) by its storage name.
fn volume_names(storage: &[String], scope: &crate::scope::Scope) -> Vec<String> {
    let mine = scope.volume_scope();
    storage
        .iter()
        .map(|s| match s.split_once('@') {
            Some((name, _)) if *s == storage_name(name, &mine) => name.to_string(),
            _ => s.clone(),
        })
        .collect()
}

pub fn exec(g: &Global, args: PsArgs) -> i32 {
    run(|| {
        let ctx = g.context()?;
        let store = store(&ctx);
        let boot = boot_id();
        let mut records = store.containers()?;
        records.sort_by(|a, b| a.id.cmp(&b.id).then(a.runtime_root.cmp(&b.runtime_root)));
        let rows: Vec<Row> = records
            .into_iter()
            .map(|r| {
                let view = store.probe_state(&r.id, r.runtime_root.as_deref());
                let (status, pid) = status(view, &r, &boot);
                Row {
                    key: r.key(),
                    id: r.id,
                    runtime_root: r.runtime_root,
                    bundle: r.bundle,
                    scope: r.scope,
                    status,
                    pid,
                    volumes: r.volumes,
                    mounts: r.mounts,
                }
            })
            .collect();
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            Format::Table => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            // The scope string `volume ls` shows and `--scope` takes.
                            r.scope.volume_scope(),
                            r.status.clone(),
                            if r.volumes.is_empty() {
                                "-".into()
                            } else {
                                volume_names(&r.volumes, &r.scope).join(",")
                            },
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["CONTAINER ID", "SCOPE", "STATUS", "VOLUMES"], &cells)
                );
            }
        }
        Ok(0)
    })
}
