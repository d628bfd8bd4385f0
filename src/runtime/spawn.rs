//! Starting the real runtime without copying ocivol's address space.
//!
//! std's `Command` with a `pre_exec` closure (which the wrapper needs: signal dispositions, the
//! caller's signal mask, `PR_SET_PDEATHSIG` for a create) forks: the kernel copies ocivol's page
//! tables, and every page ocivol touches afterwards (it syncs its writes while the runtime
//! starts) takes a copy-on-write fault. This spawns the way posix_spawn(3) does instead,
//! `clone(CLONE_VM | CLONE_VFORK)`: the child borrows ocivol's memory on a stack of its own,
//! makes a few system calls and execs, and ocivol resumes once it has (0.1-0.2 ms less per
//! container start here, docs/PERFORMANCE.md).
//!
//! The child shares every byte of the parent's memory, so it only reads what was prepared
//! before the clone, makes raw system calls, and reports a failure through one atomic. All
//! signals are blocked in the parent across the clone, so that no handler of ocivol's runs in
//! the child before it has reset the dispositions.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

/// What the child does between the clone and the exec.
pub struct Options<'a> {
    /// Signals put back to their default action (handled or ignored ones in ocivol).
    pub default_signals: &'a [libc::c_int],
    /// The signal mask the runtime starts with.
    pub mask: libc::sigset_t,
    /// Dies with ocivol (PR_SET_PDEATHSIG, SIGKILL), and exits 137 if ocivol is gone already.
    pub die_with_parent: bool,
}

/// The kernel's `struct sigaction` (x86_64): a disposition set by rt_sigaction(2) directly.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: libc::sighandler_t,
    mask: u64,
}

/// Everything the child reads, prepared before the clone.
struct Child {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    default_signals: *const libc::c_int,
    n_default: usize,
    mask: *const libc::sigset_t,
    parent: libc::pid_t,
    die_with_parent: bool,
    /// The errno of the step that failed; 0 if the exec happened.
    error: AtomicI32,
}

/// The child: raw system calls only (it runs on ocivol's memory, in ocivol's thread's TLS).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` of `spawn`, alive until the clone returns in the parent,
    // which is after this process execs or exits (CLONE_VFORK).
    let c = unsafe { &*(arg as *const Child) };
    let fail = |c: &Child| -> libc::c_int {
        // SAFETY: __errno_location is this thread's errno; the parent reads `error` only.
        let errno = unsafe { *libc::__errno_location() };
        c.error.store(errno.max(1), Ordering::SeqCst);
        // SAFETY: _exit(2) ends the child without running anything of the parent's.
        unsafe { libc::_exit(127) }
    };
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for i in 0..c.n_default {
        // SAFETY: `default_signals` has `n_default` entries; rt_sigaction reads `dfl`.
        let sig = unsafe { *c.default_signals.add(i) };
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
        if r != 0 {
            return fail(c);
        }
    }
    if c.die_with_parent {
        // SAFETY: prctl and getppid take no pointers.
        unsafe {
            if libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ) != 0
            {
                return fail(c);
            }
            // The wrapper may have died before the prctl: then nothing would kill us.
            if libc::syscall(libc::SYS_getppid) as libc::pid_t != c.parent {
                libc::_exit(137);
            }
        }
    }
    // SAFETY: `mask` points at the parent's sigset_t; the kernel reads its first 8 bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            c.mask,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        )
    };
    if r != 0 {
        return fail(c);
    }
    // SAFETY: NUL-terminated strings and NULL-terminated arrays of them, built by `spawn`.
    unsafe { libc::syscall(libc::SYS_execve, c.path, c.argv, c.envp) };
    fail(c)
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", s),
        )
    })
}

/// Starts `program` with `argv` (the first entry is the program's name) and ocivol's own
/// environment, stdio and working directory. Returns its pid once it has exec()ed; an exec
/// that failed is the error (the child is reaped).
///
/// `before_resume` runs in the parent once the child exists, while every signal is still
/// blocked: the wrapper records the child's pid there, for its signal handlers.
pub fn spawn(
    program: &Path,
    argv: &[OsString],
    options: &Options<'_>,
    before_resume: impl FnOnce(libc::pid_t),
) -> io::Result<libc::pid_t> {
    let path = cstring(program.as_os_str())?;
    let args = argv
        .iter()
        .map(|a| cstring(a))
        .collect::<io::Result<Vec<_>>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let child = Child {
        path: path.as_ptr(),
        argv: arg_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        default_signals: options.default_signals.as_ptr(),
        n_default: options.default_signals.len(),
        mask: &options.mask,
        parent: std::process::id() as libc::pid_t,
        die_with_parent: options.die_with_parent,
        error: AtomicI32::new(0),
    };
    // The child's stack: it makes a handful of calls with small frames.
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: one past the end of `stack`, aligned down to 16 bytes (the stack grows down).
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
    let top = ((top as usize) & !15) as *mut libc::c_void;

    // Every signal blocked across the clone: no handler of ocivol's may run in the child on
    // shared memory (it sets the runtime's own mask before the exec).
    // SAFETY: child_main only reads `child` (alive until clone returns: CLONE_VFORK) and makes
    // raw system calls on `stack`, which outlives it for the same reason.
    let pid = unsafe {
        crate::util::clone_signals_blocked(
            child_main,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &child as *const Child as *mut libc::c_void,
            before_resume,
        )
    };
    drop(stack);
    let pid = pid?;
    match child.error.load(Ordering::SeqCst) {
        0 => Ok(pid),
        errno => {
            // The child has exited (127): reap it.
            let _ = wait(pid);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// Waits for `pid` to end (waitpid(2), again after a signal).
pub fn wait(pid: libc::pid_t) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: a pid of ours and a local int for the status.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_mask() -> libc::sigset_t {
        // SAFETY: sigemptyset on a local sigset_t.
        unsafe {
            let mut m: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut m);
            m
        }
    }

    fn opts(default_signals: &[libc::c_int]) -> Options<'_> {
        Options {
            default_signals,
            mask: empty_mask(),
            die_with_parent: false,
        }
    }

    #[test]
    fn the_exit_status_and_arguments_reach_the_caller() {
        let argv = ["sh", "-c", "[ \"$1\" = two ] && exit 7", "sh", "two"].map(OsString::from);
        let mut seen = 0;
        let pid = spawn(Path::new("/bin/sh"), &argv, &opts(&[]), |p| seen = p).unwrap();
        assert_eq!(seen, pid);
        assert_eq!(wait(pid).unwrap().code(), Some(7));
    }

    #[test]
    fn an_exec_that_fails_is_the_error_and_leaves_no_child() {
        let mut child = 0;
        let e = spawn(
            Path::new("/nonexistent/runtime"),
            &[OsString::from("runtime")],
            &opts(&[]),
            |p| child = p,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(child > 0);
        // Reaped already: no such child of ours any more.
        // SAFETY: waitpid on that pid, without blocking.
        let r = unsafe { libc::waitpid(child, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "child {child} was left to reap");
    }

    #[test]
    fn the_child_gets_the_mask_and_default_dispositions_it_is_given() {
        // SIGPIPE is ignored in every Rust program; the child must not inherit that, and
        // must start with SIGUSR1 blocked when told so. (bash, not dash, which clears its
        // signal mask when it starts.)
        // SAFETY: sigaddset on a local set.
        let mut mask = empty_mask();
        unsafe { libc::sigaddset(&mut mask, libc::SIGUSR1) };
        let options = Options {
            default_signals: &[libc::SIGPIPE],
            mask,
            die_with_parent: true,
        };
        let out = tempfile::NamedTempFile::new().unwrap();
        let script = format!(
            "grep -E '^(SigBlk|SigIgn)' /proc/self/status > {}",
            out.path().display()
        );
        let argv = ["bash", "-c", &script].map(OsString::from);
        let pid = spawn(Path::new("/bin/bash"), &argv, &options, |_| {}).unwrap();
        assert!(wait(pid).unwrap().success());
        let status = std::fs::read_to_string(out.path()).unwrap();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        // Exactly the mask given: not the parent's all-blocked one of the clone.
        assert_eq!(field("SigBlk:"), bit(libc::SIGUSR1), "{status}");
        assert_eq!(field("SigIgn:") & bit(libc::SIGPIPE), 0, "{status}");
    }
}
