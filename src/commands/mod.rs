//! The operator's subcommands, one file per command group, each with its clap arguments and an
//! `exec()` that returns the exit code: `volume` (create, ls, inspect, rm, prune, diff, reset),
//! `ps`, `gc`, `doctor`, `setup` and `config`. `runtime` (the runc wrapper) lives in [`crate::runtime`].

pub mod config;
pub mod doctor;
pub mod gc;
pub mod output;
pub mod ps;
pub mod setup;
pub mod volume;
pub mod volume_data;

use std::path::PathBuf;

use crate::config::Context;
use crate::mounts::Linux;
use crate::real_runtime::{self, RealRuntime};
use crate::store::Store;

/// The global options, as given (each command loads the config itself: `doctor` reports a
/// broken one instead of failing on it).
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub config: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub run_root: Option<PathBuf>,
}

impl Global {
    pub fn context(&self) -> anyhow::Result<Context> {
        Ok(Context::from_parts(
            self.config.clone(),
            self.root.clone(),
            self.run_root.clone(),
        )?)
    }
}

/// The store, able to ask the real runtime about containers. Without the runtime every
/// container whose state only it could tell is taken as alive, and a warning says so.
pub fn store(ctx: &Context) -> Store {
    let store = Store::new(&ctx.paths, Box::new(Linux)).with_linger(ctx.config.overlay_linger);
    match real_runtime::find(&ctx.config.runtime) {
        Ok(runtime) => store.with_probe(Box::new(RealRuntime::new(runtime))),
        Err(e) => {
            eprintln!(
                "ocivol: warning: {e}; containers whose state only the runtime knows are kept"
            );
            store
        }
    }
}

/// Prints an error and its causes on one escaped line (`ocivol: …`) and gives the exit code 1.
pub fn fail(e: &anyhow::Error) -> i32 {
    eprintln!("ocivol: {}", output::error_line(e));
    1
}

/// Runs a command body: its error is printed, its code returned.
pub fn run(body: impl FnOnce() -> anyhow::Result<i32>) -> i32 {
    body().unwrap_or_else(|e| fail(&e))
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}
