//! `ocivol runtime ARGS…` (or the binary called as `ocivol-runtime`): a drop-in for runc.
//!
//! load → modify → save → run: on `create` and `run` the bundle's config.json gets the volumes'
//! bind mounts before the real runtime sees it; on `delete` the volumes are released after the
//! real runtime deleted the container; everything else is exec()ed straight into the real
//! runtime, so the wrapper costs those commands nothing but one exec.
//!
//! A `create` or `run` is exec()ed untouched too (same argv, same environment, same process)
//! when it asks for help (`-h`/`--help` anywhere runc sees it), when the bundle has no readable
//! config.json (runc says so in its own words), and when the spec has no `io.ocivol.` annotation
//! ([`BundleSpec::parse_if_ocivol`]: a byte search, nothing parsed for almost every spec).

pub mod args;
pub mod log;
mod spawn;

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context as _, anyhow};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::config::Context;
use crate::container_id::{check_container_id, container_key};
use crate::mounts::Linux;
use crate::prepare::{Container, Resolver, prepare};
use crate::process::ProcessId;
use crate::real_runtime::{self, RealRuntime, RuntimeProbe, RuntimeView};
use crate::spec::BundleSpec;
use crate::store::Store;
use crate::userns::{Idmap, UserNs};
use args::RuntimeArgs;

/// Runs the wrapper; returns the exit code (for the commands it does not exec).
pub fn main(raw: Vec<OsString>, context: impl FnOnce() -> anyhow::Result<Context>) -> i32 {
    let args = args::parse(raw);
    let code = match run(&args, context) {
        Ok(code) => code,
        Err(e) => {
            log::report_error(&args, &crate::commands::output::error_chain(&e));
            1
        }
    };
    // The overlays this command released are unmounted by a child (Store::deferring_unmounts),
    // and the anonymous volumes it released are removed after it (crate::store::trash); a
    // command that failed leaves nothing behind. The overlays are handed over first: the fork
    // that empties the trash must not inherit their last references.
    crate::store::close_detached_as_command_ends(code == 0);
    crate::store::empty_trash_as_command_ends(code == 0);
    code
}

fn run(
    args: &RuntimeArgs,
    context: impl FnOnce() -> anyhow::Result<Context>,
) -> anyhow::Result<i32> {
    let ctx = context()?;
    let runtime = real_runtime::find(&ctx.config.runtime)?;
    if args.help {
        return Err(exec(&runtime, args));
    }
    match args.command.as_deref() {
        Some("create" | "run") => create(args, &ctx, &runtime),
        Some("delete") => delete(args, &ctx, &runtime),
        _ => Err(exec(&runtime, args)),
    }
}

/// Replaces this process with the real runtime; returns only on failure.
fn exec(runtime: &Path, args: &RuntimeArgs) -> anyhow::Error {
    crate::durable::flush_or_warn();
    let e = Command::new(runtime).args(&args.raw).exec();
    anyhow!("cannot run {}: {e}", runtime.display())
}

/// The runtime's own state directory of a container: it exists while the runtime knows it.
fn runtime_state_dir(args: &RuntimeArgs, runtime: &Path, id: &str) -> PathBuf {
    real_runtime::state_dir(runtime, args.root.as_deref(), id)
}

/// The store, able to ask the real runtime whether a user's container is gone.
fn store_for(ctx: &Context, runtime: &Path) -> Store {
    Store::new(&ctx.paths, Box::new(Linux))
        .with_linger(ctx.config.overlay_linger)
        .with_probe(Box::new(RealRuntime::new(runtime.to_path_buf())))
        .deferring_unmounts()
}

/// Records the init process of a container the runtime has just created, so that its death is
/// noticed without asking the runtime. Its pid comes from the pid file the runtime wrote (the
/// caller's `--pid-file`, or the wrapper's own, see [`create`]), else from `RUNTIME state`. A
/// failure only costs that later checks ask the runtime instead.
fn record_init(
    store: &Store,
    record: &crate::store::ContainerRecord,
    from_file: Option<i32>,
    args: &RuntimeArgs,
    runtime: &Path,
    id: &str,
) {
    let pid = from_file.or_else(|| {
        match RealRuntime::new(runtime.to_path_buf()).state(id, args.root.as_deref()) {
            RuntimeView::Alive { pid, .. } => pid,
            _ => None,
        }
    });
    let Some(init) = pid.and_then(ProcessId::of) else {
        ::log::warn!("container {id}: its init process could not be found to record");
        return;
    };
    if let Err(e) = store.record_init(record, init) {
        ::log::warn!("container {id}: recording its init process failed: {e}");
    }
}

/// The pid a runtime wrote to a pid file, if it did.
fn read_pid(path: Option<&Path>) -> Option<i32> {
    std::fs::read_to_string(path?).ok()?.trim().parse().ok()
}

fn create(args: &RuntimeArgs, ctx: &Context, runtime: &Path) -> anyhow::Result<i32> {
    let bundle = match &args.bundle {
        Some(b) => PathBuf::from(b),
        None => std::env::current_dir()
            .context("the bundle is the working directory, which cannot be read")?,
    };
    let path = bundle.join(crate::spec::CONFIG_FILE);
    // No readable config.json: runc refuses the command with its own message.
    let Ok(text) = std::fs::read(&path) else {
        return Err(exec(runtime, args));
    };
    let Some(mut spec) = BundleSpec::parse_if_ocivol(path, &text)? else {
        return Err(exec(runtime, args));
    };
    let id = args.id.as_deref().ok_or_else(|| {
        anyhow!(
            "{} needs a container ID",
            args.command.as_deref().unwrap_or("create")
        )
    })?;
    check_container_id(id).map_err(anyhow::Error::msg)?;
    let store = store_for(ctx, runtime);
    let key = container_key(id, args.root.as_deref());
    if runtime_state_dir(args, runtime, id).exists()
        && !clear_half_created(&store, args, runtime, id, &key)?
    {
        // The runtime already has this container: let it say so, and touch nothing it holds.
        return Err(exec(runtime, args));
    }
    // A record without a container is what a crashed earlier create (or an earlier container
    // of the same ID) left: release it first.
    store.release_container(&key)?;
    let annotations = spec.annotations();
    let rootfs = spec.rootfs(&bundle);
    let container = Container {
        id,
        runtime_root: args.root.as_deref(),
        key_root: None,
        bundle: &bundle,
        annotations: &annotations,
        rootfs: rootfs.as_deref(),
    };
    if !crate::prepare::wanted(&container) {
        // A pod's sandbox, or keys for other containers of the pod only.
        return Err(exec(runtime, args));
    }
    // The container's user namespace does not exist yet: one with its mappings stands in for
    // it while the volumes are mounted (see crate::userns).
    let userns = UserNs::for_spec(&spec.value)
        .context("the container's user namespace")?
        .map(Arc::new);
    let store = store.with_userns(userns.clone());

    let real = RealRuntime::new(runtime.to_path_buf());
    let Some(prepared) = prepare(&Resolver::new(ctx, &store, Some(&real)), &container)? else {
        return Err(exec(runtime, args));
    };
    // runc is told only paths under ocivol's own run root, mounted from what was checked.
    let idmap = userns
        .as_deref()
        .map(|ns| Idmap::new(ns, &ctx.paths.run_root));
    let staged = crate::staging::stage(
        &ctx.paths.run_root,
        &key,
        &prepared.record.mounts,
        &prepared.pins,
        ProcessId::current(),
        idmap.as_ref(),
    )
    .context("attach the checked sources for the runtime");
    let written = staged.and_then(|sources| {
        spec.add_mounts(&prepared.spec_mounts(&sources))?;
        let made = match &userns {
            Some(_) => mount_points(&spec, &bundle, &prepared)?,
            None => crate::rootfs::Made::default(),
        };
        spec.save().inspect_err(|_| made.undo())?;
        Ok(())
    });
    // What was taken, as saved: a foreground run releases it and a create records its init
    // from this copy, not from a second read of the record. The pins (open sources) close now.
    let crate::prepare::Prepared { record, pins } = prepared;
    drop(pins);
    // The namespace was needed for the mounts only.
    drop(idmap);
    let store = store.with_userns(None);
    drop(userns);
    if let Err(e) = written {
        forget_or_warn(&store, &key);
        return Err(e);
    }
    crate::crash::point("before-runtime");
    // A create (or detached run) leaves a container whose init is recorded. Without a pid file
    // of the caller's, the runtime is asked for one in the staging directory, which goes with
    // the staging: one `RUNTIME state` less (a second Go runtime start, about as costly as the
    // create's own work in ocivol). containerd, podman and CRI-O always pass their own.
    let leaves_container = args.command.as_deref() == Some("create") || args.detach;
    let own_pid_file = (leaves_container && args.pid_file.is_none())
        .then(|| crate::staging::pid_file(&ctx.paths.run_root, &key));
    let argv = own_pid_file
        .as_deref()
        .and_then(|p| args.with_pid_file(p))
        .unwrap_or_else(|| args.raw.clone());
    let status = spawn_and_wait(runtime, &argv, args);
    let from_file = read_pid(
        args.pid_file
            .as_deref()
            .map(Path::new)
            .or(own_pid_file.as_deref()),
    );
    // The container has its own copies of the staged mounts by now (or never will): ours go.
    if let Err(e) = crate::staging::unstage(&ctx.paths.run_root, &key) {
        ::log::warn!("container {id}: remove its staged mounts: {e}");
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            forget_or_warn(&store, &key);
            return Err(e);
        }
    };
    let foreground = args.command.as_deref() == Some("run") && !args.detach;
    if !status.success() && created_anyway(&store, args, id) {
        // Killed (by a signal) after it had created the container, which exists and holds
        // the volumes: they stay its own, as after a create that succeeded. A foreground
        // `run` whose runc is killed leaves its container running, as plain runc does.
        ::log::warn!("container {id}: the runtime failed ({status}) but has created it");
        record_init(&store, &record, from_file, args, runtime, id);
    } else if !status.success() {
        // The runtime did not create the container: give back what it held, and forget it.
        store.forget_container(&key)?;
    } else if foreground && !args.keep {
        // A foreground `run` ended and runc deleted the container: nothing uses the volumes.
        store.release_record(&key, &record)?;
    } else if !foreground {
        crate::crash::point("after-create");
        record_init(&store, &record, from_file, args, runtime, id);
    }
    Ok(pass_on(status))
}

/// Whether the runtime has the container after a `create` or `run` that failed: a runtime
/// killed by a signal may have created it (runc writes its state before it returns) and left it
/// there, created or running. Any other failure leaves none (runc removes what it made, and a
/// foreground `run` deletes its container when it ends, whatever its status).
fn created_anyway(store: &Store, args: &RuntimeArgs, id: &str) -> bool {
    matches!(
        store.probe_state(id, args.root.as_deref()),
        Some(RuntimeView::Alive { .. })
    )
}

/// Clears the way for a create of `id` whose runtime state directory exists but holds a
/// create of ocivol's that was cut short: the runtime says there is no such container
/// ([`RuntimeView::HalfCreated`]), ocivol has a record of the ID, and nothing that
/// record holds is alive (the wrapper that made the directory is dead, and so is the runtime it
/// ran). runc refuses to create an ID whose directory exists until `runc delete ID` removes it;
/// that is what is done here, and the create goes on. Any other directory is left to the
/// runtime, which refuses the create. Returns whether the way is clear.
fn clear_half_created(
    store: &Store,
    args: &RuntimeArgs,
    runtime: &Path,
    id: &str,
    key: &str,
) -> anyhow::Result<bool> {
    let Some(record) = store.load_container(key)? else {
        return Ok(false);
    };
    if store.probe_state(id, args.root.as_deref()) != Some(RuntimeView::HalfCreated)
        || store.holder_alive(&record)?
    {
        return Ok(false);
    }
    let out = RealRuntime::new(runtime.to_path_buf())
        .force_delete(args.root.as_deref(), id)
        .with_context(|| format!("cannot run {}", runtime.display()))?;
    let cleared = !runtime_state_dir(args, runtime, id).exists();
    if cleared {
        ::log::info!("container {id}: removed the half-created state an earlier create left");
    } else {
        ::log::warn!(
            "container {id}: the half-created state an earlier create left could not be removed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(cleared)
}

/// Makes the missing mount points of the volumes in the rootfs, for a container whose root may
/// not (see [`crate::rootfs`]).
fn mount_points(
    spec: &BundleSpec,
    bundle: &Path,
    prepared: &crate::prepare::Prepared,
) -> anyhow::Result<crate::rootfs::Made> {
    let root = spec
        .value
        .pointer("/root/path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| anyhow!("{}: no root.path", spec.path.display()))?;
    let mounted: Vec<PathBuf> = spec
        .mounts()?
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    let wanted: Vec<crate::rootfs::Wanted> = prepared
        .record
        .mounts
        .iter()
        .zip(&prepared.pins)
        .map(|(m, pin)| crate::rootfs::Wanted {
            destination: &m.destination,
            is_dir: pin.is_dir(),
        })
        .collect();
    Ok(crate::rootfs::make_missing(
        &bundle.join(root),
        &wanted,
        &mounted,
    )?)
}

fn delete(args: &RuntimeArgs, ctx: &Context, runtime: &Path) -> anyhow::Result<i32> {
    let status = spawn_and_wait(runtime, &args.raw, args)?;
    let Some(id) = args.id.as_deref() else {
        return Ok(pass_on(status));
    };
    if check_container_id(id).is_err() {
        return Ok(pass_on(status));
    }
    // Release once the runtime no longer has the container: it deleted it now, or it was
    // deleted before (a repeated delete, containerd's cleanup `delete --force`).
    if status.success() || !runtime_state_dir(args, runtime, id).exists() {
        let store = store_for(ctx, runtime);
        store.release_container(&container_key(id, args.root.as_deref()))?;
    }
    Ok(pass_on(status))
}

fn forget_or_warn(store: &Store, key: &str) {
    if let Err(e) = store.forget_container(key) {
        ::log::error!("release of {key} failed: {e}");
    }
}

/// The child whose signals we forward; 0 when there is none.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs the real runtime with the arguments `argv` (the caller's, or with the wrapper's pid
/// file) and the same stdio, forwarding the signals a caller sends to it (runc's `run` passes
/// them on to the container), and waits for it.
fn spawn_and_wait(
    runtime: &Path,
    argv: &[std::ffi::OsString],
    args: &RuntimeArgs,
) -> anyhow::Result<ExitStatus> {
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: the handler only reads an atomic and calls kill(2).
        unsafe { signal::sigaction(*sig, &action) }
            .with_context(|| format!("install a handler for {sig}"))?;
    }
    let creates = match args.command.as_deref() {
        Some("create") => true,
        Some("run") => args.detach,
        _ => false,
    };
    // The runtime starts with the signal mask and dispositions ocivol was given: runc (Go) hands
    // the mask it starts with down to the container's process, where a blocked SIGUSR1 would
    // never reach a trap. So the child puts the forwarded signals back to their default action
    // (a signal that reaches it before runc has its own handlers then does what it does to
    // plain runc; the inherited handler would only drop it), and SIGPIPE, which every Rust
    // program ignores, and restores the mask. A create dies with the wrapper
    // (PR_SET_PDEATHSIG): once the wrapper is dead, no runtime started by it can still be about
    // to create the container, so reconciliation may trust "its wrapper is dead and the
    // runtime does not know it" to mean the container will never exist. (A foreground `run` is
    // left alone: its runtime is the container's parent.)
    let mut default_signals: Vec<libc::c_int> =
        FORWARDED.iter().map(|s| *s as libc::c_int).collect();
    default_signals.push(libc::SIGPIPE);
    let mut argv0 = vec![runtime.as_os_str().to_os_string()];
    argv0.extend_from_slice(argv);
    // SAFETY: pthread_sigmask with a null new set only reads the current mask.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    let options = spawn::Options {
        default_signals: &default_signals,
        mask,
        die_with_parent: creates,
    };
    // The child's pid is stored while every signal is still blocked: a signal that arrives
    // after the spawn finds the child to forward to.
    let pid = spawn::spawn(runtime, &argv0, &options, |pid| {
        CHILD.store(pid, Ordering::SeqCst)
    })
    .inspect_err(|_| {
        // The child of a failed exec is reaped: no signal may go to its pid any more.
        CHILD.store(0, Ordering::SeqCst);
    })
    .with_context(|| format!("cannot run {}", runtime.display()))?;
    // The record, definitions and config.json this start wrote are synced while the runtime
    // creates the container, not before (see crate::durable): here, before waiting for it (a
    // thread for it cost a 2 MiB stack and its page faults).
    crate::durable::flush_or_warn();
    let status = spawn::wait(pid);
    CHILD.store(0, Ordering::SeqCst);
    status.with_context(|| format!("wait for {}", runtime.display()))
}

/// Passes the runtime's end on to our caller: its exit code, or, if a signal killed it, the same
/// signal (restored to its default action and raised on ourselves), so that a shim or a shell sees
/// what it would have seen from the real runtime. Call it last: it may not return.
fn pass_on(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    let Some(sig) = status.signal() else {
        return 1;
    };
    if let Ok(signal) = Signal::try_from(sig) {
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: restoring the default action installs no handler.
        let _ = unsafe { signal::sigaction(signal, &default) };
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = set.thread_unblock();
        let _ = signal::raise(signal);
    }
    // A signal whose default action is not to terminate: report it as a shell does.
    128 + sig
}
