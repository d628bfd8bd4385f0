//! Crash injection for the crash-recovery tests: `OCIVOL_TEST_CRASH=POINT[,POINT…]` makes the
//! process SIGKILL itself when it reaches a named point, as a `kill -9` or an OOM kill would, with
//! whatever locks, mounts and half-written state it has at that moment.
//!
//! Honoured only in debug builds (what `cargo test` builds) or with the `crash-injection` cargo
//! feature; a release build ignores the variable, so it can never be used against production.
//!
//! Points: `after-mount` (acquire: overlay mounted, user not yet recorded), `after-user-added`
//! (acquire: user recorded, container record not yet written), `before-runtime` (the wrapper has
//! prepared everything and not started the real runtime), `after-create` (the runtime created
//! the container, its init pid is not yet recorded), `after-user-removed` (release: user record
//! removed, overlay not yet unmounted), `half-written-user`, `half-written-record`,
//! `half-written-definition` (a user record, a container record, a volume's definition: the
//! temporary file written, not yet renamed into place), `half-written-spec` (the bundle's
//! config.json, likewise), `before-deferred-sync` (the records, definitions and config.json of
//! a start written and renamed into place, not yet synced: see [`crate::durable`]; in the
//! runtime wrapper, the real runtime is running), `mid-unstage` (the staged mounts of a
//! container: the first one detached and removed, the others and the owner file not yet),
//! `mid-import` (`volume import`: the archive extracted beside the volume's data or changes,
//! not yet exchanged with them).

/// The environment variable naming the points to crash at.
pub const ENV: &str = "OCIVOL_TEST_CRASH";

/// Kills this process with SIGKILL if `point` is named in `OCIVOL_TEST_CRASH`.
#[cfg(any(debug_assertions, feature = "crash-injection"))]
pub fn point(point: &str) {
    let Some(wanted) = std::env::var_os(ENV) else {
        return;
    };
    if wanted
        .to_string_lossy()
        .split(',')
        .any(|p| p.trim() == point)
    {
        eprintln!("ocivol: {ENV}: killed at {point}");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught; in case it is somehow not delivered at once:
        std::process::abort();
    }
}

#[cfg(not(any(debug_assertions, feature = "crash-injection")))]
#[inline(always)]
pub fn point(_point: &str) {}
