//! The `ocivol` binary. Called as `ocivol-runtime` it is the runc wrapper and every argument is
//! runc's; otherwise a small clap program.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use ocivol::commands::{Global, config, doctor, gc, ps, setup, volume};
use ocivol::config::{Context, ENV_CONFIG, ENV_ROOT, ENV_RUN_ROOT};

#[derive(Parser)]
#[command(
    name = "ocivol",
    version,
    about = "Docker-style volumes for containerd, podman, CRI-O, Docker and runc"
)]
struct Cli {
    /// The config file (real runtime and policy).
    #[arg(long, env = ENV_CONFIG, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Persistent state: volume definitions and data, container records.
    #[arg(long, env = ENV_ROOT, value_name = "DIR")]
    root: Option<PathBuf>,
    /// State a reboot clears: overlay mount points, users, locks.
    #[arg(long, env = ENV_RUN_ROOT, value_name = "DIR")]
    run_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A drop-in for runc: `ocivol runtime [runc flags] create --bundle B ID`.
    ///
    /// Example: ctr run --runc-binary /usr/bin/ocivol-runtime --annotation io.ocivol.volumes=cache:/cache …
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Runtime {
        /// The runc command line, passed on unchanged.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// An OCI hook: `precreate` (podman), `create-runtime`, `poststop`; without a stage it is told
    /// from stdin, so one hooks.d file can name several stages.
    ///
    /// Example (config.json of bare runc):
    ///   "hooks": {"createRuntime": [{"path": "/usr/local/bin/ocivol", "args": ["ocivol", "hook", "create-runtime"]}],
    ///             "poststop": [{"path": "/usr/local/bin/ocivol", "args": ["ocivol", "hook", "poststop"]}]}
    Hook {
        #[arg(value_enum)]
        stage: Option<ocivol::hook::Stage>,
    },
    /// Prints a shell completion script for ocivol.
    ///
    /// Example: ocivol completions bash > /usr/share/bash-completion/completions/ocivol
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Writes the man pages of ocivol and its commands into DIR (used by `make install`).
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Volumes: create, ls, inspect, rm, prune, diff, reset, export, import, commit, clone.
    #[command(after_help = "Example:\n  ocivol volume ls")]
    Volume(volume::VolumeArgs),
    /// The containers ocivol knows, with scope, status and volumes.
    Ps(ps::PsArgs),
    /// Release what crashed containers, killed shims and reboots left behind.
    Gc(gc::GcArgs),
    /// Check the host: overlayfs, state directories, the real runtime, the hooks, the engines.
    Doctor(doctor::DoctorArgs),
    /// Give an engine (containerd, crio, podman, docker) the ocivol runtime in its own config.
    Setup(setup::SetupArgs),
    /// Print the configuration in force and where each value came from (file, flag,
    /// environment, default); convert an old config.json.
    Config(config::ConfigArgs),
}

/// Writes ocivol.1 and one page per command (ocivol-runtime.1, ocivol-hook.1, …).
fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let root = Cli::command();
    let mut pages = vec![("ocivol".to_string(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((
            format!("ocivol-{}", sub.get_name()),
            sub.clone()
                .bin_name(format!("ocivol {}", sub.get_name()))
                .display_name(format!("ocivol-{}", sub.get_name())),
        ));
    }
    for (name, cmd) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(())
}

fn init_logger() {
    env_logger::Builder::from_env(env_logger::Env::new().filter_or("OCIVOL_LOG", "warn")).init();
}

/// A hook's environment comes from config.json: keep only ocivol's own variables. (Being a
/// static binary, ocivol was not affected by LD_PRELOAD or LD_LIBRARY_PATH to begin with, and it
/// never runs another program from a hook.)
fn clear_environment() {
    for (key, _) in std::env::vars_os() {
        if !key.to_string_lossy().starts_with("OCIVOL_") {
            // SAFETY: called at start-up, before any other thread exists.
            unsafe { std::env::remove_var(&key) };
        }
    }
}

/// The commands `main` runs without clap's parse of the whole command tree, which costs about
/// 0.2 ms (docs/PERFORMANCE.md): those an engine runs on every container start, and every
/// command passed through to runc (state, kill, start…).
#[derive(Debug, PartialEq)]
enum Fast {
    /// `runtime ARGS…`: runc's arguments.
    Runtime(Vec<OsString>),
    /// `hook [STAGE]`.
    Hook(Option<ocivol::hook::Stage>),
}

/// The global flags and the command of `ocivol [--config F] [--root D] [--run-root D]
/// runtime ARGS…` or `… hook [STAGE]`; `None` for any other command line (clap then parses it,
/// errors and `--help` included). A flag given twice or with an empty value is left to clap too.
#[allow(clippy::type_complexity)]
fn fast_command(
    args: &[OsString],
) -> Option<(Option<PathBuf>, Option<PathBuf>, Option<PathBuf>, Fast)> {
    let mut flags: [Option<PathBuf>; 3] = [None, None, None];
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str()?;
        let fast = match arg {
            "runtime" => Some(Fast::Runtime(args[i + 1..].to_vec())),
            "hook" => match &args[i + 1..] {
                [] => Some(Fast::Hook(None)),
                [stage] => Some(Fast::Hook(Some(
                    <ocivol::hook::Stage as clap::ValueEnum>::from_str(stage.to_str()?, false)
                        .ok()?,
                ))),
                _ => return None,
            },
            _ => None,
        };
        if let Some(fast) = fast {
            let [config, root, run_root] = flags;
            return Some((config, root, run_root, fast));
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        let slot = ["--config", "--root", "--run-root"]
            .iter()
            .position(|f| *f == name)?;
        let value = match inline {
            Some(v) => PathBuf::from(v),
            None => {
                i += 1;
                PathBuf::from(args.get(i)?)
            }
        };
        if flags[slot].is_some() || value.as_os_str().is_empty() {
            return None;
        }
        flags[slot] = Some(value);
        i += 1;
    }
    None
}

/// The runc wrapper with runc's arguments `args`, then exit with its code (what it wrote through
/// ocivol::durable synced first).
fn wrapper(
    args: Vec<OsString>,
    config: Option<PathBuf>,
    root: Option<PathBuf>,
    run_root: Option<PathBuf>,
) -> ! {
    init_logger();
    let code = ocivol::runtime::main(args, || Ok(Context::from_parts(config, root, run_root)?));
    ocivol::durable::flush_or_warn();
    std::process::exit(code);
}

/// The hook of `stage` (`None`: told by its input), then exit with its code (`hook::run` hands
/// what it moved into the trash and wrote through ocivol::durable to children that outlive it).
fn hook(
    stage: Option<ocivol::hook::Stage>,
    config: Option<PathBuf>,
    root: Option<PathBuf>,
    run_root: Option<PathBuf>,
) -> ! {
    clear_environment();
    init_logger();
    let result = Context::from_parts(config, root, run_root)
        .map_err(anyhow::Error::from)
        .and_then(|ctx| {
            ocivol::hook::run(stage, &ctx, &mut std::io::stdin(), &mut std::io::stdout())
        });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ocivol: {}", ocivol::commands::output::error_line(&e));
            1
        }
    };
    ocivol::durable::flush_or_warn();
    std::process::exit(code);
}

fn main() {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    if Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "ocivol-runtime")
    {
        wrapper(argv.collect(), None, None, None);
    }
    let rest: Vec<OsString> = argv.collect();
    if let Some((config, root, run_root, fast)) = fast_command(&rest) {
        match fast {
            Fast::Runtime(args) => wrapper(args, config, root, run_root),
            Fast::Hook(stage) => hook(stage, config, root, run_root),
        }
    }
    let cli = Cli::parse_from(std::iter::once(argv0).chain(rest));
    if let Cmd::Hook { stage } = cli.command {
        hook(stage, cli.config, cli.root, cli.run_root);
    }
    init_logger();
    let g = Global {
        config: cli.config,
        root: cli.root,
        run_root: cli.run_root,
    };
    let code = match cli.command {
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "ocivol", &mut std::io::stdout());
            0
        }
        Cmd::Man { dir } => match write_man_pages(&dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ocivol: write man pages to {}: {e}", dir.display());
                1
            }
        },
        Cmd::Runtime { args } => ocivol::runtime::main(args, || {
            Ok(Context::from_parts(g.config, g.root, g.run_root)?)
        }),
        Cmd::Hook { .. } => unreachable!("run above"),
        Cmd::Volume(a) => volume::exec(&g, a),
        Cmd::Ps(a) => ps::exec(&g, a),
        Cmd::Gc(a) => gc::exec(&g, a),
        Cmd::Doctor(a) => doctor::exec(&g, a),
        Cmd::Setup(a) => setup::exec(&g, a),
        Cmd::Config(a) => config::exec(&g, a),
    };
    // What any other command set aside in the trash while it reconciled (the runtime and the
    // hooks have emptied theirs already): removed before it returns, nothing left to gc.
    ocivol::store::empty_trash_now();
    // What a command wrote through ocivol::durable is on disk before it returns.
    ocivol::durable::flush_or_warn();
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_global_flags_then_runtime_or_a_hook_skip_clap() {
        use ocivol::hook::Stage;
        let (c, r, rr, a) = fast_command(&os(&[
            "--config",
            "/c.toml",
            "--root=/r",
            "runtime",
            "--root",
            "/x",
            "state",
            "id",
        ]))
        .unwrap();
        assert_eq!(c, Some(PathBuf::from("/c.toml")));
        assert_eq!(r, Some(PathBuf::from("/r")));
        assert_eq!(rr, None);
        assert_eq!(a, Fast::Runtime(os(&["--root", "/x", "state", "id"])));
        assert_eq!(
            fast_command(&os(&["runtime"])).unwrap().3,
            Fast::Runtime(os(&[]))
        );
        let (c, r, rr, h) =
            fast_command(&os(&["--run-root", "/rr", "hook", "create-runtime"])).unwrap();
        assert_eq!((c, r), (None, None));
        assert_eq!(rr, Some(PathBuf::from("/rr")));
        assert_eq!(h, Fast::Hook(Some(Stage::CreateRuntime)));
        for (stage, is) in [
            ("precreate", Stage::Precreate),
            ("poststop", Stage::Poststop),
        ] {
            assert_eq!(
                fast_command(&os(&["hook", stage])).unwrap().3,
                Fast::Hook(Some(is))
            );
        }
        assert_eq!(fast_command(&os(&["hook"])).unwrap().3, Fast::Hook(None));
        for left_to_clap in [
            &["volume", "ls"][..],
            &["--root", "/a", "--root", "/b", "runtime", "state"],
            &["--config=", "runtime", "state"],
            &["--config"],
            &["--verbose", "runtime", "state"],
            &["hook", "runtime"],
            &["hook", "--help"],
            &["hook", "poststop", "extra"],
            &["hook", "Poststop"],
        ] {
            assert!(
                fast_command(&os(left_to_clap)).is_none(),
                "{left_to_clap:?}"
            );
        }
    }
}
