//! `ocivol volume create|ls|inspect|rm|prune|diff|reset`: the volume lifecycle for operators
//! (`export|import|commit|clone`, the volume's data, are in `volume_data.rs`).

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::output::{escape, escape_path, human_size, table};
use super::{Format, Global, run, store, volume_data};
use crate::annotations::{self, Ownership};
use crate::pin::{Guard, How, Pin};
use crate::plan;
use crate::store::{Store, StoreError, VolumeDef, VolumeInfo, check_scope, storage_name};

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume ahead of use, checked against the policy like an annotation, for one
    /// scope or (--scope any) shared by every scope.
    #[command(after_help = "Examples:\n  \
        ocivol volume create --scope any cache            # every scope's containers share it\n  \
        ocivol volume create --scope containerd/k8s.io,k8s:team-a cache\n  \
        ocivol volume create --scope any dataset --base /srv/datasets/v3 --label team=ml\n  \
        ocivol volume create --scope root:/run/runc scratch --base /srv/template --volatile\n  \
        ocivol volume create --scope any pgdata --uid 999 --gid 999 --mode 0700\n  \
        ocivol volume create --scope any scratch --size 10g --inodes 100000   # project quota")]
    Create(CreateArgs),
    /// List volumes: name, scope, kind, base, users and the size of their data or changes.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  \
        ocivol volume ls\n  \
        ocivol volume ls --scope containerd/k8s.io,k8s:team-a\n  \
        ocivol volume ls --filter in-use=false --filter label=team=ml\n  \
        ocivol volume ls --format json"
    )]
    Ls(LsArgs),
    /// Show volumes in detail as JSON: definition, scope, paths, users, mounted or not.
    #[command(after_help = "Examples:\n  \
        ocivol volume inspect dataset\n  \
        ocivol volume inspect --scope containerd/default cache")]
    Inspect(InspectArgs),
    /// Remove volumes and their data; a volume in use is refused unless --force.
    #[command(
        visible_alias = "remove",
        after_help = "Examples:\n  \
        ocivol volume rm cache\n  \
        ocivol volume rm --scope containerd/k8s.io,k8s:team-a cache\n  \
        ocivol volume rm --force dataset   # even while containers use it: they lose its data"
    )]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with --all, every unused volume).
    #[command(after_help = "Examples:\n  \
        ocivol volume prune\n  \
        ocivol volume prune --all --scope containerd/k8s.io,k8s:team-a")]
    Prune(PruneArgs),
    /// What the users of a copy-on-write volume changed against its base (A added, C changed,
    /// D deleted), as docker diff prints it; file names shown escaped.
    #[command(after_help = "Examples:\n  \
        ocivol volume diff dataset\n  \
        ocivol volume diff --scope root:/run/runc dataset")]
    Diff(DiffArgs),
    /// Discard the changes of a copy-on-write volume that no container uses.
    #[command(after_help = "Example:\n  ocivol volume reset dataset")]
    Reset(ResetArgs),
    /// Write a volume's content as its containers see it (a copy-on-write volume: base +
    /// changes) as a tar archive, or with --changes only its changes as an OCI image layer.
    /// A volume in use is refused.
    #[command(after_help = "Examples:\n  \
        ocivol volume export cache -o cache.tar\n  \
        ocivol volume export dataset | gzip > dataset.tar.gz\n  \
        ocivol volume export --changes dataset -o changes.tar   # an OCI layer over its base")]
    Export(volume_data::ExportArgs),
    /// Replace a volume's content with a tar archive's (podman volume export, ocivol volume
    /// export), or with --changes apply an OCI image layer over it; all or nothing. A volume in
    /// use is refused.
    #[command(after_help = "Examples:\n  \
        ocivol volume import cache cache.tar\n  \
        zcat dataset.tar.gz | ocivol volume import dataset -\n  \
        ocivol volume import --changes dataset changes.tar")]
    Import(volume_data::ImportArgs),
    /// Write a volume's base + changes into a new directory under an allowed base, atomically,
    /// to use as the next base; --reset discards the changes afterwards.
    #[command(after_help = "Examples:\n  \
        ocivol volume commit dataset /srv/datasets/v4\n  \
        ocivol volume commit --reset dataset /srv/datasets/v4")]
    Commit(volume_data::CommitArgs),
    /// Make a new volume from a copy of another: the same base and a copy of its changes, or a
    /// copy of a plain volume's data (reflinked where the filesystem can).
    #[command(after_help = "Examples:\n  \
        ocivol volume clone dataset dataset-experiment\n  \
        ocivol volume clone --scope containerd/default cache cache-backup")]
    Clone(volume_data::CloneArgs),
}

/// The `--scope` of the commands that act on existing volumes.
#[derive(Debug, Args)]
pub struct ScopeArg {
    /// The scope of the volume: `any` for a shared one, or a scope as `ocivol volume ls` shows
    /// it. Needed only when the name is used in several scopes.
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The volume's name: [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 bytes.
    pub name: String,
    /// Whose containers find it by its name: `any` (every scope shares it), or one scope as
    /// `ocivol ps` and `ocivol volume ls` show it (containerd/NAMESPACE or root:RUNTIME_ROOT,
    /// then ,k8s:NAMESPACE under Kubernetes).
    #[arg(long, value_name = "SCOPE")]
    pub scope: String,
    /// Make it copy-on-write over this host directory (under the policy's allowed_bases).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// Discard its changes once its last user has left.
    #[arg(long, requires = "base")]
    pub volatile: bool,
    /// A label, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The owner of its root, a numeric user ID (default: root, or for a copy-on-write volume
    /// the base root's owner); as the annotation option uid=.
    #[arg(long, value_name = "UID", value_parser = |s: &str| annotations::parse_id("uid", s))]
    pub uid: Option<u32>,
    /// The group of its root, a numeric group ID; as the annotation option gid=.
    #[arg(long, value_name = "GID", value_parser = |s: &str| annotations::parse_id("gid", s))]
    pub gid: Option<u32>,
    /// The mode of its root, in octal (default 0755, or the base root's); as the annotation
    /// option mode=.
    #[arg(long, value_name = "OCTAL", value_parser = annotations::parse_mode)]
    pub mode: Option<u32>,
    /// Limit its data (a copy-on-write volume: its changes) to this size (10g, 512m, bytes),
    /// with a project quota; as the annotation option size=.
    #[arg(long, value_name = "SIZE", value_parser = crate::store::quota::parse_size)]
    pub size: Option<u64>,
    /// Limit its number of files and directories, with a project quota; as inodes=.
    #[arg(long, value_name = "N")]
    pub inodes: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// label=KEY, label=KEY=VALUE, in-use=true or in-use=false (repeatable; all must match).
    #[arg(long = "filter", short = 'f', value_name = "FILTER", value_parser = parse_filter)]
    pub filters: Vec<Filter>,
    /// Only the names that pick one volume each (a scoped volume's storage name, NAME@HASH,
    /// which every command takes).
    #[arg(long, short)]
    pub quiet: bool,
    /// Only the volumes of this scope (`any`: the shared ones).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub scope: ScopeArg,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove volumes even while containers use them; ignore volumes that do not exist.
    #[arg(long, short)]
    pub force: bool,
    #[command(flatten)]
    pub scope: ScopeArg,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Every unused volume, not only anonymous ones.
    #[arg(long, short)]
    pub all: bool,
    /// Only volumes of this scope (`any`: the shared ones).
    #[arg(long, value_name = "SCOPE")]
    pub scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub name: String,
    #[command(flatten)]
    pub scope: ScopeArg,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    pub name: String,
    #[command(flatten)]
    pub scope: ScopeArg,
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
            VolumeCommand::Export(a) => volume_data::export(&ctx, a),
            VolumeCommand::Import(a) => volume_data::import(&ctx, a),
            VolumeCommand::Commit(a) => volume_data::commit(&ctx, a),
            VolumeCommand::Clone(a) => volume_data::clone(&ctx, a),
        }
    })
}

/// Checks `--base` as `NAME:DEST:base=DIR` in an annotation would be checked, and opens it; the
/// definition gets its resolved path (checked again, with no symlink on its way, at every use).
fn resolve_base(ctx: &crate::config::Context, base: &std::path::Path) -> Result<Pin, String> {
    let text = base
        .to_str()
        .ok_or_else(|| format!("base {} is not UTF-8", base.display()))?;
    let checked = annotations::check_host_path("base", text)?;
    let guard = Guard::new(
        &ctx.config.policy,
        &[ctx.paths.root.as_path(), ctx.paths.run_root.as_path()],
    );
    plan::base_dir(&guard, &checked, How::Asked)
}

fn create(ctx: &crate::config::Context, a: CreateArgs) -> anyhow::Result<i32> {
    let name = annotations::check_name(&a.name).map_err(|e| anyhow!(e))?;
    check_scope(&a.scope).map_err(|e| anyhow!(e))?;
    let base = match &a.base {
        Some(b) => Some(resolve_base(ctx, b).map_err(|e| anyhow!("volume {name}: {e}"))?),
        None => None,
    };
    let base_path = base.as_ref().map(|b| b.path().to_path_buf());
    let mut def = VolumeDef::new(&storage_name(name, &a.scope), base_path, a.volatile, false);
    def.scope = Some(a.scope.clone());
    def.labels = a.labels.into_iter().collect();
    def.owner = Ownership {
        uid: a.uid,
        gid: a.gid,
        mode: a.mode,
    };
    let limits = annotations::Limits {
        size: a.size,
        inodes: a.inodes,
    };
    def.quota = crate::store::quota::Quota::of(&limits, &def.name);
    store(ctx).create_volume(&def, base.as_ref())?;
    println!("{name}");
    Ok(0)
}

/// Why a name given to an operator command picks no volume, or more than one.
#[derive(Debug, thiserror::Error)]
pub(super) enum Pick {
    #[error("volume {0} does not exist")]
    Missing(String),
    #[error("volume {0} does not exist in scope {1}")]
    MissingIn(String, String),
    #[error("volume {name} exists in {} scopes; pick one with --scope: {}", .scopes.len(), .scopes.iter().map(|s| format!("--scope {s}")).collect::<Vec<_>>().join(", "))]
    Ambiguous { name: String, scopes: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one volume `name` (optionally in `scope`) means: a storage name (`NAME@HASH`, what
/// `ls -q` prints) is that volume; a bare name is the volume of that name in `scope`, or the
/// only volume of that name in any scope.
pub(super) fn pick(store: &Store, name: &str, scope: Option<&str>) -> Result<VolumeDef, Pick> {
    if let Some(s) = scope {
        check_scope(s).map_err(|e| {
            Pick::Store(StoreError::Conflict {
                name: name.to_string(),
                reason: e,
            })
        })?;
    }
    let found: Vec<VolumeDef> = store
        .volumes_named(name)?
        .into_iter()
        .filter(|d| scope.is_none_or(|s| d.scope_label() == s))
        .collect();
    match (found.len(), scope) {
        (1, _) => Ok(found.into_iter().next().expect("one")),
        (0, None) => Err(Pick::Missing(name.to_string())),
        (0, Some(s)) => Err(Pick::MissingIn(name.to_string(), s.to_string())),
        _ => Err(Pick::Ambiguous {
            name: name.to_string(),
            scopes: found.iter().map(|d| d.scope_label().to_string()).collect(),
        }),
    }
}

fn infos(ctx: &crate::config::Context) -> anyhow::Result<Vec<VolumeInfo>> {
    let store = store(ctx);
    let mut out = Vec::new();
    for def in store.volumes()? {
        out.push(store.volume_info(&def)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.scope.cmp(&b.scope)));
    Ok(out)
}

fn ls(ctx: &crate::config::Context, a: LsArgs) -> anyhow::Result<i32> {
    if let Some(s) = &a.scope {
        check_scope(s).map_err(|e| anyhow!(e))?;
    }
    let volumes: Vec<VolumeInfo> = infos(ctx)?
        .into_iter()
        .filter(|v| a.filters.iter().all(|f| f.matches(v)))
        .filter(|v| a.scope.as_ref().is_none_or(|s| *s == v.scope))
        .collect();
    if a.quiet {
        for v in &volumes {
            println!("{}", escape(&v.storage));
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
                        v.scope.clone(),
                        v.kind_label(),
                        v.base
                            .as_ref()
                            .map_or("-".to_string(), |b| b.display().to_string()),
                        v.users.len().to_string(),
                        match v
                            .quota
                            .and_then(|q| q.size_limit.map(|l| (q.used_bytes, l)))
                        {
                            Some((used, limit)) => {
                                format!("{}/{}", human_size(used), human_size(limit))
                            }
                            None => human_size(v.size),
                        },
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NAME", "SCOPE", "KIND", "BASE", "USERS", "SIZE"], &rows)
            );
        }
    }
    Ok(0)
}

fn inspect(ctx: &crate::config::Context, a: InspectArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.names {
        match pick(&store, name, a.scope.scope.as_deref()) {
            Ok(def) => found.push(store.volume_info(&def)?),
            Err(Pick::Store(e)) => return Err(e.into()),
            Err(e) => errors.push(e),
        }
    }
    if found.is_empty() && !errors.is_empty() {
        for e in &errors {
            eprintln!("ocivol: {}", escape(&e.to_string()));
        }
        return Ok(1);
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    for e in &errors {
        eprintln!("ocivol: {}", escape(&e.to_string()));
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

fn rm(ctx: &crate::config::Context, a: RmArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let mut code = 0;
    for name in &a.names {
        let removed = pick(&store, name, a.scope.scope.as_deref())
            .and_then(|def| Ok(store.remove_volume(&def.name, a.force)?));
        match removed {
            Ok(_) => println!("{}", escape(name)),
            Err(Pick::Missing(_) | Pick::MissingIn(..)) if a.force => {}
            Err(Pick::Store(StoreError::NoSuchVolume { .. })) if a.force => {}
            Err(e) => {
                eprintln!("ocivol: {}", escape(&e.to_string()));
                code = 1;
            }
        }
    }
    Ok(code)
}

fn prune(ctx: &crate::config::Context, a: PruneArgs) -> anyhow::Result<i32> {
    if let Some(s) = &a.scope {
        check_scope(s).map_err(|e| anyhow!(e))?;
    }
    let removed = store(ctx).prune(a.all, a.scope.as_deref())?;
    if !removed.is_empty() {
        println!("Deleted Volumes:");
        for (name, _) in &removed {
            println!("{}", escape(name));
        }
        println!();
    }
    let freed: u64 = removed.iter().map(|(_, n)| n).sum();
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(0)
}

fn diff(ctx: &crate::config::Context, a: DiffArgs) -> anyhow::Result<i32> {
    let store = store(ctx);
    let def = pick(&store, &a.name, a.scope.scope.as_deref())?;
    let changes = store.changes(&def.name)?;
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
    let store = store(ctx);
    let def = pick(&store, &a.name, a.scope.scope.as_deref())?;
    store.reset(&def.name)?;
    println!("{}", escape(&a.name));
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
