//! fsync(2) of open files in a child that outlives this process, without copying its address
//! space.
//!
//! A hook syncs what it wrote after it has returned to its caller (see [`crate::durable`]): in a
//! child that closes its stdio, so that the runtime, which waits for the hook's exit and for its
//! output to close, does not wait for the disk. A fork copies ocivol's page tables first, 0.1 to
//! 0.25 ms of the hook's time here (docs/PERFORMANCE.md). All the child does is fsync descriptors
//! that are open already, so it can run as posix_spawn's child does, on this process's memory
//! (`clone(CLONE_VM)`), without the page tables copied; unlike that child it does not exec, and
//! this process does not wait for it (no `CLONE_VFORK`): it goes on, and usually exits first.
//!
//! So the child shares every byte of memory with a process that keeps running and then exits:
//! it reads only a job that is leaked before the clone (never freed, so never reused), runs on
//! a stack that is leaked too, makes raw system calls (no libc call: none writes `errno`, which
//! is this thread's, in memory the parent uses), and keeps every signal blocked, so that no
//! handler of ocivol's runs in it. It has its own copy of the descriptor table (no
//! `CLONE_FILES`): the parent closes its copies at once. Once the parent has exited, the
//! address space lives on for the child alone, until it exits.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// What the child reads: leaked before the clone, never freed.
struct Job {
    fds: Vec<RawFd>,
}

/// The child's stack: a handful of system calls with small frames.
const STACK: usize = 16 * 1024;

/// Starts the child that closes its stdio, leaves the session, fsyncs each of `files` in order
/// and exits with the number of fsyncs that failed (at most 255). Returns its pid; it is this
/// process's child until this process exits.
pub fn spawn<F: AsFd>(files: &[F]) -> io::Result<libc::pid_t> {
    let job: &'static Job = Box::leak(Box::new(Job {
        fds: files.iter().map(|f| f.as_fd().as_raw_fd()).collect(),
    }));
    let stack: &'static mut [u8] = Box::leak(vec![0u8; STACK].into_boxed_slice());
    // SAFETY: one past the end of `stack`, aligned down to 16 bytes (the stack grows down).
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
    let top = ((top as usize) & !15) as *mut libc::c_void;
    // SAFETY: `child_main` reads only `job` and runs only on `stack`, both leaked, and makes raw
    // system calls only (see the module's header); it keeps the blocked mask it starts with.
    unsafe {
        super::clone_signals_blocked(
            child_main,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            job as *const Job as *mut libc::c_void,
            |_| {},
        )
    }
}

/// The child: raw system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `Job` of `spawn`.
    let job = unsafe { &*(arg as *const Job) };
    for fd in 0..3 {
        // SAFETY: the standard descriptors of the child's own table, which it does not use.
        unsafe { raw::syscall1(libc::SYS_close, fd) };
    }
    // SAFETY: as above; a failure (already a session leader) changes nothing here.
    unsafe { raw::syscall1(libc::SYS_setsid, 0) };
    let mut failed: libc::c_int = 0;
    for &fd in &job.fds {
        // SAFETY: fsync of a descriptor of the child's own table.
        if unsafe { raw::syscall1(libc::SYS_fsync, fd as usize) } < 0 {
            failed = (failed + 1).min(255);
        }
    }
    // musl's clone calls exit(2) with this: the child alone ends.
    failed
}

mod raw {
    /// A system call with one argument, without libc (so without `errno`): its raw result.
    ///
    /// # Safety
    /// As the system call `n`.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn syscall1(n: libc::c_long, a: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller's; `syscall` clobbers rcx and r11 and touches no stack.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// Elsewhere, libc's: its `errno` write on a failure lands in the parent's memory, where
    /// only a parent that is exiting could read it.
    ///
    /// # Safety
    /// As the system call `n`.
    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn syscall1(n: libc::c_long, a: usize) -> isize {
        // SAFETY: the caller's.
        unsafe { libc::syscall(n, a) as isize }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        libc::WEXITSTATUS(status)
    }

    /// The child fsyncs every descriptor it was given, in its own copy of the table: it reports
    /// each one that fails (a pipe cannot be synced), and this process may close its copies at
    /// once.
    #[test]
    fn the_child_syncs_each_file_it_was_given_and_reports_each_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let pid = spawn(&[&file, &d]).unwrap();
        drop((file, d));
        assert_eq!(wait(pid), 0);

        let (r, w) = nix::unistd::pipe().unwrap();
        let file = std::fs::File::create(dir.path().join("g")).unwrap();
        let pid = spawn(&[r.as_fd(), file.as_fd(), w.as_fd()]).unwrap();
        drop((r, w, file));
        assert_eq!(wait(pid), 2, "the two ends of the pipe failed");
    }
}
