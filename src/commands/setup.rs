//! `ocivol setup ENGINE`: adds the ocivol runtime (or ocivol's hooks) to an engine's own config,
//! shows the diff with `--dry-run`, takes it back out with `--remove`. See [`crate::setup`].

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::output::escape;
use super::{Global, run};
use crate::setup::file::{Change, read_optional};
use crate::setup::{self, Result, containerd, crio, docker, podman};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Containerd,
    Crio,
    Podman,
    Docker,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Containerd => "containerd",
            Engine::Crio => "crio",
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    fn restart(self) -> &'static str {
        match self {
            Engine::Containerd => "systemctl restart containerd",
            Engine::Crio => "systemctl restart crio",
            Engine::Podman => "nothing to restart: podman reads it at each command",
            Engine::Docker => "systemctl restart docker",
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  ocivol setup containerd --dry-run   # the diff of /etc/containerd/config.toml, nothing written
  ocivol setup containerd             # then: systemctl restart containerd
  ocivol setup crio
  ocivol setup podman --hooks
  ocivol setup docker --remove")]
pub struct SetupArgs {
    /// The engine to configure.
    #[arg(value_enum)]
    pub engine: Engine,
    /// The engine's config file: containerd /etc/containerd/config.toml, podman
    /// /etc/containers/containers.conf, docker /etc/docker/daemon.json.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CRI-O's drop-in directory, for 99-ocivol.conf.
    #[arg(long, value_name = "DIR", default_value = crio::DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,
    /// The ocivol-runtime the engine runs (default: the one beside this ocivol, else
    /// /usr/local/bin/ocivol-runtime).
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// crio, podman: ocivol's hooks file instead of a runtime (every container with an
    /// io.ocivol.* annotation gets its volumes; never both ways at once).
    #[arg(long)]
    pub hooks: bool,
    /// With --hooks: where the hooks file goes (default /usr/share/containers/oci/hooks.d, which
    /// CRI-O and podman read).
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// With --hooks: the ocivol binary the hooks file runs (default: this ocivol where it is
    /// installed beside ocivol-runtime, else /usr/local/bin/ocivol).
    #[arg(long, value_name = "PATH")]
    pub hook_path: Option<PathBuf>,
    /// Print the diff of what would change; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Take out what setup added.
    #[arg(long)]
    pub remove: bool,
}

pub fn exec(_g: &Global, args: SetupArgs) -> i32 {
    run(|| {
        let mut notes = Vec::new();
        let changes = plan(&args, &mut notes)?;
        for n in &notes {
            eprintln!("ocivol: note: {}", escape(n));
        }
        let mut changed = false;
        for c in &changes {
            if !c.is_change() {
                println!(
                    "{}: {}",
                    escape(&c.path.display().to_string()),
                    if args.remove {
                        "nothing of ocivol's in it, unchanged"
                    } else {
                        "already set up, unchanged"
                    }
                );
                continue;
            }
            changed = true;
            if args.dry_run {
                print!("{}", c.diff());
                continue;
            }
            let backup = c.apply()?;
            let what = match (&c.before, &c.after) {
                (None, _) => "created".to_string(),
                (_, None) => "removed".to_string(),
                _ => "updated".to_string(),
            };
            let backup = backup
                .map(|b| format!(" (the old one is {})", b.display()))
                .unwrap_or_default();
            println!(
                "{}: {what}{}",
                escape(&c.path.display().to_string()),
                escape(&backup)
            );
        }
        if changed && !args.dry_run {
            println!("to apply it: {}", args.engine.restart());
        }
        Ok(0)
    })
}

/// The changes setup (or `--remove`) would make, computed from the files as they are.
pub fn plan(args: &SetupArgs, notes: &mut Vec<String>) -> Result<Vec<Change>> {
    let runtime_path = args
        .runtime_path
        .clone()
        .unwrap_or_else(setup::default_runtime_path);
    let hook_path = args
        .hook_path
        .clone()
        .unwrap_or_else(setup::default_hook_path);
    let config = |default: &str| {
        args.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(default))
    };
    match args.engine {
        Engine::Containerd => {
            refuse_hooks(args)?;
            let path = config(containerd::DEFAULT_CONFIG);
            let opts = containerd::Options {
                runtime_path,
                new_file_version: containerd::Version::for_containerd(containerd::installed_major()),
            };
            let add = |before: Option<&str>, notes: &mut Vec<String>| {
                containerd::add(&path, before, &opts, notes)
            };
            let remove =
                |before: &str, notes: &mut Vec<String>| containerd::remove(&path, before, notes);
            Ok(vec![edit_in_place(&path, args.remove, add, remove, notes)?])
        }
        Engine::Docker => {
            refuse_hooks(args)?;
            let path = config(docker::DEFAULT_CONFIG);
            let add = |before: Option<&str>, _: &mut Vec<String>| {
                docker::add(&path, before, &runtime_path)
            };
            let remove = |before: &str, _: &mut Vec<String>| docker::remove(&path, before);
            Ok(vec![edit_in_place(&path, args.remove, add, remove, notes)?])
        }
        Engine::Podman => {
            let path = config(podman::DEFAULT_CONFIG);
            if args.hooks {
                let dir = args
                    .hooks_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(podman::DEFAULT_HOOKS_DIR));
                let hooks = owned_file(
                    &dir.join("ocivol.json"),
                    args.remove,
                    setup::hooks_file(&hook_path),
                )?;
                let add = |before: Option<&str>, _: &mut Vec<String>| {
                    podman::add_hooks_dir(&path, before, &dir)
                };
                let remove = |before: &str, _: &mut Vec<String>| podman::remove(&path, before);
                let mut conf = edit_in_place(&path, args.remove, add, remove, notes)?;
                if conf.before.is_none() {
                    // podman reads its default hooks directory: no containers.conf needed.
                    conf.after = None;
                }
                Ok(vec![hooks, conf])
            } else {
                let add = |before: Option<&str>, _: &mut Vec<String>| {
                    podman::add(&path, before, &runtime_path)
                };
                let remove = |before: &str, _: &mut Vec<String>| podman::remove(&path, before);
                Ok(vec![edit_in_place(&path, args.remove, add, remove, notes)?])
            }
        }
        Engine::Crio => {
            if args.config.is_some() {
                return Err(setup::SetupError::Refused(
                    "crio: setup writes a drop-in of its own and edits no file of CRI-O's; give its directory with --config-dir".into(),
                ));
            }
            if args.hooks {
                let dir = args
                    .hooks_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(crio::DEFAULT_HOOKS_DIR));
                Ok(vec![owned_file(
                    &dir.join("ocivol.json"),
                    args.remove,
                    setup::hooks_file(&hook_path),
                )?])
            } else {
                Ok(vec![owned_file(
                    &args.config_dir.join(crio::DROP_IN),
                    args.remove,
                    crio::drop_in(&runtime_path),
                )?])
            }
        }
    }
}

fn refuse_hooks(args: &SetupArgs) -> Result<()> {
    if args.hooks || args.hooks_dir.is_some() || args.hook_path.is_some() {
        return Err(setup::SetupError::Refused(format!(
            "{}: --hooks is for crio and podman; {} runs ocivol as its runtime",
            args.engine.name(),
            args.engine.name()
        )));
    }
    Ok(())
}

/// A file setup owns whole (a drop-in, a hooks file): written as it should be, or removed.
fn owned_file(path: &Path, remove: bool, text: String) -> Result<Change> {
    let before = read_optional(path)?;
    Ok(Change {
        path: path.to_path_buf(),
        after: if remove { None } else { Some(text) },
        before,
        backup: false,
    })
}

/// A file of the engine's that setup edits. `--remove` restores the backup exactly when the
/// file is still what setup made of it (a reformatted daemon.json, a last line that had no
/// newline), and otherwise takes out setup's entries.
fn edit_in_place(
    path: &Path,
    remove: bool,
    add: impl Fn(Option<&str>, &mut Vec<String>) -> Result<String>,
    take_out: impl Fn(&str, &mut Vec<String>) -> Result<Option<String>>,
    notes: &mut Vec<String>,
) -> Result<Change> {
    let before = read_optional(path)?;
    let after = if !remove {
        Some(add(before.as_deref(), notes)?)
    } else {
        match &before {
            None => None,
            Some(text) => {
                let change = Change {
                    path: path.to_path_buf(),
                    before: None,
                    after: None,
                    backup: true,
                };
                let backup = read_optional(&change.backup_path())?;
                match backup {
                    Some(b)
                        if b != *text
                            && add(Some(&b), &mut Vec::new()).ok().as_ref() == Some(text) =>
                    {
                        Some(b)
                    }
                    _ => take_out(text, notes)?,
                }
            }
        }
    };
    Ok(Change {
        path: path.to_path_buf(),
        before,
        after,
        backup: true,
    })
}
