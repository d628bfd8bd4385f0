//! `ocivol volume export|import|commit|clone`: the data of a volume, for operators (the
//! store's side is `store/data.rs`, the archive format `archive/`).

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::output::escape;
use super::store;
use super::volume::{ScopeArg, pick};
use crate::annotations;
use crate::archive::Kind;
use crate::config::Context;
use crate::pin::{Guard, How};
use crate::store::{VolumeDef, storage_name};

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub name: String,
    #[command(flatten)]
    pub scope: ScopeArg,
    /// Write the archive to FILE (written aside, then renamed into place) instead of stdout;
    /// `-` is stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only a copy-on-write volume's changes, as an OCI image layer (`.wh.` whiteouts, opaque
    /// directories), to apply over its base.
    #[arg(long)]
    pub changes: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub name: String,
    /// The archive; `-` or none: stdin.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub scope: ScopeArg,
    /// The archive is an OCI image layer: apply it over the volume's content (its whiteouts
    /// delete) instead of replacing the content.
    #[arg(long)]
    pub changes: bool,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    pub name: String,
    /// The new directory, under one of the policy's allowed_bases; it must not exist.
    pub newbase: PathBuf,
    #[command(flatten)]
    pub scope: ScopeArg,
    /// Discard the volume's changes once they are committed (as `ocivol volume reset`).
    #[arg(long)]
    pub reset: bool,
}

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The volume to copy.
    pub source: String,
    /// The new volume's name; it gets the source's scope, base, owner and labels.
    pub new: String,
    #[command(flatten)]
    pub scope: ScopeArg,
}

fn guard(ctx: &Context) -> Guard {
    Guard::new(
        &ctx.config.policy,
        &[ctx.paths.root.as_path(), ctx.paths.run_root.as_path()],
    )
}

fn kind(changes: bool) -> Kind {
    if changes { Kind::Layer } else { Kind::Full }
}

pub fn export(ctx: &Context, a: ExportArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let def = pick(&store, &a.name, a.scope.scope.as_deref())?;
    let guard = guard(ctx);
    match a.output.as_deref().filter(|p| *p != Path::new("-")) {
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                return Err(anyhow!(
                    "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                ));
            }
            let out = store.export(&def.name, kind(a.changes), &guard, stdout.lock())?;
            flush(out)?;
        }
        Some(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let temp = tempfile::Builder::new()
                .prefix(".ocivol-export-")
                .tempfile_in(dir)
                .with_context(|| format!("create a file in {}", dir.display()))?;
            let out = store.export(&def.name, kind(a.changes), &guard, io::BufWriter::new(temp))?;
            let temp = out
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("write {}", path.display()))?;
            temp.as_file()
                .sync_all()
                .with_context(|| format!("write {}", path.display()))?;
            temp.persist(path)
                .with_context(|| format!("rename into {}", path.display()))?;
        }
    }
    Ok(0)
}

fn flush(mut out: impl Write) -> anyhow::Result<()> {
    out.flush().context("write the archive to stdout")
}

pub fn import(ctx: &Context, a: ImportArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let def = pick(&store, &a.name, a.scope.scope.as_deref())?;
    let guard = guard(ctx);
    let got = match a.file.as_deref().filter(|p| *p != Path::new("-")) {
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                return Err(anyhow!(
                    "refusing to read an archive from a terminal; give FILE or redirect stdin"
                ));
            }
            store.import(&def.name, kind(a.changes), &guard, stdin.lock())?
        }
        Some(path) => {
            let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            store.import(&def.name, kind(a.changes), &guard, io::BufReader::new(file))?
        }
    };
    if got.skipped_count > 0 {
        eprintln!(
            "ocivol: warning: {} entries not imported (device nodes and other special files a volume does not hold): {}{}",
            got.skipped_count,
            got.skipped
                .iter()
                .map(|s| escape(s))
                .collect::<Vec<_>>()
                .join(", "),
            if got.skipped_count > got.skipped.len() as u64 {
                ", …"
            } else {
                ""
            }
        );
    }
    println!("{}", escape(&a.name));
    Ok(0)
}

pub fn commit(ctx: &Context, a: CommitArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let def = pick(&store, &a.name, a.scope.scope.as_deref())?;
    let text = a
        .newbase
        .to_str()
        .ok_or_else(|| anyhow!("new base {} is not UTF-8", a.newbase.display()))?;
    let checked = annotations::check_host_path("new base", text).map_err(|e| anyhow!(e))?;
    let (Some(parent), Some(name)) = (checked.parent(), checked.file_name()) else {
        return Err(anyhow!(
            "new base {text:?} names no directory to create; give a path such as /srv/datasets/v4"
        ));
    };
    let guard = guard(ctx);
    let parent = crate::plan::base_dir(&guard, parent, How::Asked)
        .map_err(|e| anyhow!("volume {}: commit to {text}: {e}", a.name))?;
    let made = store.commit(&def.name, &parent, name, a.reset, &guard)?;
    println!("{}", escape(&made.display().to_string()));
    Ok(0)
}

pub fn clone(ctx: &Context, a: CloneArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let src = pick(&store, &a.source, a.scope.scope.as_deref())?;
    let name = annotations::check_name(&a.new).map_err(|e| anyhow!(e))?;
    let scope = src.scope_label().to_string();
    let mut new = VolumeDef::new(&storage_name(name, &scope), None, false, false);
    new.scope = Some(scope);
    new.labels = src.labels.clone();
    store.clone_volume(&src.name, &new, &guard(ctx))?;
    println!("{}", escape(name));
    Ok(0)
}
