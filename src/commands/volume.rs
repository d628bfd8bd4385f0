//! `ocivol volume create|ls|inspect|rm|prune|diff|reset`: the volume lifecycle for operators.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::output::{escape_path, human_size, table};
use super::{Format, Global, run, store};
use crate::annotations::{self, MountFlags, Source, VolumeSpec};
use crate::plan::{self, HostResolver, Planned};
use crate::store::{StoreError, VolumeDef, VolumeInfo};

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume ahead of use, checked against the policy like an annotation.
    #[command(after_help = "Examples:\n  \
        ocivol volume create cache\n  \
        ocivol volume create dataset --base /srv/datasets/v3 --label team=ml\n  \
        ocivol volume create scratch --base /srv/template --volatile")]
    Create(CreateArgs),
    /// List volumes: name, kind, base, users and the size of their data or changes.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ocivol volume ls\n  \
        ocivol volume ls --filter in-use=false --filter label=team=ml\n  \
        ocivol volume ls --format json"
    )]
    Ls(LsArgs),
    /// Show volumes in detail as JSON: definition, paths, users, mounted or not.
    #[command(after_help = "Example:\n  ocivol volume inspect dataset")]
    Inspect(InspectArgs),
    /// Remove volumes and their data; a volume in use is refused unless --force.
    #[command(
        visible_alias = "remove",
        after_help = "Examples:\n  \
        ocivol volume rm cache\n  \
        ocivol volume rm --force dataset   # even while containers use it: they lose its data"
    )]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with --all, every unused volume).
    #[command(after_help = "Examples:\n  ocivol volume prune\n  ocivol volume prune --all")]
    Prune(PruneArgs),
    /// What the users of a copy-on-write volume changed against its base (A added, C changed,
    /// D deleted), as docker diff prints it.
    #[command(after_help = "Example:\n  ocivol volume diff dataset")]
    Diff(DiffArgs),
    /// Discard the changes of a copy-on-write volume that no container uses.
    #[command(after_help = "Example:\n  ocivol volume reset dataset")]
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The volume's name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 bytes.
    pub name: String,
    /// Make it copy-on-write over this host directory (under the policy's allowed_bases).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// Discard its changes once its last user has left.
    #[arg(long, requires = "base")]
    pub volatile: bool,
    /// A label, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// label=KEY, label=KEY=VALUE, in-use=true or in-use=false (repeatable; all must match).
    #[arg(long = "filter", short = 'f', value_name = "FILTER", value_parser = parse_filter)]
    pub filters: Vec<Filter>,
    /// Only the names.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove volumes even while containers use them; ignore volumes that do not exist.
    #[arg(long, short)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Every unused volume, not only anonymous ones.
    #[arg(long, short)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub name: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub name: String,
}

/// A `--filter` of `volume ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Label(String, Option<String>),
    InUse(bool),
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(format!("label {s:?} has no key; use KEY=VALUE"));
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    match s.split_once('=') {
        Some(("label", rest)) if !rest.is_empty() => Ok(match rest.split_once('=') {
            Some((k, v)) => Filter::Label(k.into(), Some(v.into())),
            None => Filter::Label(rest.into(), None),
        }),
        Some(("in-use", "true")) => Ok(Filter::InUse(true)),
        Some(("in-use", "false")) => Ok(Filter::InUse(false)),
        _ => Err(format!(
            "unknown filter {s:?}; use label=KEY, label=KEY=VALUE, in-use=true or in-use=false"
        )),
    }
}

impl Filter {
    fn matches(&self, v: &VolumeInfo) -> bool {
        match self {
            Filter::Label(k, want) => match (v.labels.get(k), want) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
            Filter::InUse(in_use) => v.users.is_empty() != *in_use,
        }
    }
}

pub fn exec(g: &Global, args: VolumeArgs) -> i32 {
    run(|| {
        let ctx = g.context()?;
        match args.command {
            VolumeCommand::Create(a) => create(&ctx, a),
            VolumeCommand::Ls(a) => ls(&ctx, a),
            VolumeCommand::Inspect(a) => inspect(&ctx, a),
            VolumeCommand::Rm(a) => rm(&ctx, a),
            VolumeCommand::Prune(a) => prune(&ctx, a),
            VolumeCommand::Diff(a) => diff(&ctx, a),
            VolumeCommand::Reset(a) => reset(&ctx, a),
        }
    })
}

/// Resolves `--base` through the same checks and policy as `NAME:DEST:base=DIR` in an
/// annotation would go.
fn resolve_base(
    ctx: &crate::config::Context,
    name: &str,
    base: &std::path::Path,
    volatile: bool,
) -> Result<PathBuf, String> {
    let text = base
        .to_str()
        .ok_or_else(|| format!("base {} is not UTF-8", base.display()))?;
    let checked = annotations::check_host_path("base", text)?;
    let spec = VolumeSpec {
        entry: format!("{name}:/volume:base={text}"),
        source: Source::Named(name.to_string()),
        destination: PathBuf::from("/volume"),
        flags: MountFlags::default(),
        base: Some(checked),
        volatile,
    };
    let state_dirs = [ctx.paths.root.as_path(), ctx.paths.run_root.as_path()];
    let planned = plan::plan(&[spec], &ctx.config.policy, &state_dirs, &HostResolver)
        .map_err(|e| e.reason)?;
    match planned.into_iter().next().map(|p| p.what) {
        Some(Planned::Volume { base: Some(b), .. }) => Ok(b),
        _ => Err(format!("base {text} was not planned as a base")),
    }
}

fn create(ctx: &crate::config::Context, a: CreateArgs) -> anyhow::Result<i32> {
    let name = annotations::check_name(&a.name).map_err(|e| anyhow!(e))?;
    let base = match &a.base {
        Some(b) => Some(
            resolve_base(ctx, name, b, a.volatile).map_err(|e| anyhow!("volume {name}: {e}"))?,
        ),
        None => None,
    };
    let mut def = VolumeDef::new(name, base, a.volatile, false);
    def.labels = a.labels.into_iter().collect();
    store(ctx).create_volume(&def)?;
    println!("{name}");
    Ok(0)
}

fn infos(ctx: &crate::config::Context) -> anyhow::Result<Vec<VolumeInfo>> {
    let store = store(ctx);
    let mut out = Vec::new();
    for def in store.volumes()? {
        out.push(store.volume_info(&def)?);
    }
    Ok(out)
}

fn ls(ctx: &crate::config::Context, a: LsArgs) -> anyhow::Result<i32> {
    let volumes: Vec<VolumeInfo> = infos(ctx)?
        .into_iter()
        .filter(|v| a.filters.iter().all(|f| f.matches(v)))
        .collect();
    if a.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&volumes)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = volumes
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        v.kind_label(),
                        v.base
                            .as_ref()
                            .map_or("-".to_string(), |b| b.display().to_string()),
                        v.users.len().to_string(),
                        human_size(v.size),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "KIND", "BASE", "USERS", "SIZE"], &rows)
            );
        }
    }
    Ok(0)
}

fn inspect(ctx: &crate::config::Context, a: InspectArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &a.names {
        match store.definition(name) {
            Ok(Some(def)) => found.push(store.volume_info(&def)?),
            Ok(None) => missing.push(name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    for name in &missing {
        eprintln!("ocivol: volume {name} does not exist");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}

fn rm(ctx: &crate::config::Context, a: RmArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let mut code = 0;
    for name in &a.names {
        match store.remove_volume(name, a.force) {
            Ok(_) => println!("{name}"),
            Err(StoreError::NoSuchVolume { .. }) if a.force => {}
            Err(e) => {
                eprintln!("ocivol: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(ctx: &crate::config::Context, a: PruneArgs) -> anyhow::Result<i32> {
    let removed = store(ctx).prune(a.all)?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for (name, _) in &removed {
            println!("{name}");
        }
        println!();
    }
    let freed: u64 = removed.iter().map(|(_, n)| n).sum();
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}

fn diff(ctx: &crate::config::Context, a: DiffArgs) -> anyhow::Result<i32> {
    let changes = store(ctx).changes(&a.name)?;
    match a.format {
        Format::Table => {
            // The paths are file names a container chose: escaped, one change a line.
            for c in &changes {
                println!("{} {}", c.kind.letter(), escape_path(&c.path));
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&changes)?),
    }
    Ok(0)
}

fn reset(ctx: &crate::config::Context, a: ResetArgs) -> anyhow::Result<i32> {
    store(ctx).reset(&a.name)?;
    println!("{}", a.name);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_labels_parse() {
        assert_eq!(parse_filter("in-use=true"), Ok(Filter::InUse(true)));
        assert_eq!(
            parse_filter("label=team=ml"),
            Ok(Filter::Label("team".into(), Some("ml".into())))
        );
        assert_eq!(
            parse_filter("label=team"),
            Ok(Filter::Label("team".into(), None))
        );
        assert!(parse_filter("dangling=true").is_err());
        assert!(parse_filter("in-use=maybe").is_err());
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("flag"), Ok(("flag".into(), String::new())));
        assert!(parse_label("=v").is_err());
    }
}
