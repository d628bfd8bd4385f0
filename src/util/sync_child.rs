//! fsync(2) of open files, and the last close of others, in a child that outlives this process,
//! without copying its address space.
//!
//! A hook syncs what it wrote after it has returned to its caller (see [`crate::durable`]): in a
//! child that closes its stdio, so that the runtime, which waits for the hook's exit and for its
//! output to close, does not wait for the disk. A fork copies ocivol's page tables first, 0.1 to
//! 0.25 ms of the hook's time here (docs/PERFORMANCE.md). All the child does is fsync descriptors
//! that are open already, so it can run as posix_spawn's child does, on this process's memory
//! (`clone(CLONE_VM)`), without the page tables copied; unlike that child it does not exec, and
//! this process does not wait for it (no `CLONE_VFORK`): it goes on, and usually exits first.
//!
//! The child also closes, last, the descriptors it is handed for that: an overlay detached from
//! its mount point with one of them still open (the superblock lives until its last reference
//! goes, and the kernel syncs the upper filesystem then: 0.3 ms on a quiet disk here, the whole
//! filesystem's dirty data on a busy one; see `crate::store`'s release), and the volume's lock,
//! so that the next user waits until that overlay is gone. Between the two it removes the
//! overlay's own empty `work/work` ([`Last::RemoveDir`]), which the next mount would otherwise
//! remove (the kernel does, or ocivol before it): freeing a directory's block is 0.2 ms on this
//! machine's disk (ext4 mounted with `discard`), and it is off the next start's path here; for
//! the same reason it removes the files that a hook's durable writes replaced
//! ([`Last::RemoveFile`]). The child does all of that only once this process has closed its own
//! copies (it waits for the end of a pipe whose writing end only this process holds), so that
//! its close is the last one and the sync is the child's.
//!
//! So the child shares every byte of memory with a process that keeps running and then exits:
//! it reads only a job that is leaked before the clone (never freed, so never reused), runs on
//! a stack that is leaked too, makes raw system calls (no libc call: none writes `errno`, which
//! is this thread's, in memory the parent uses), and keeps every signal blocked, so that no
//! handler of ocivol's runs in it. It has its own copy of the descriptor table (no
//! `CLONE_FILES`), and closes every descriptor of it but those of its job first (the stdio that
//! an engine waits on, a pipe of the caller's): the parent closes its copies when it likes.
//! Once the parent has exited, the address space lives on for the child alone, until it exits.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// What the child does last, in order, once this process has closed its own copies.
pub enum Last {
    /// Closes the descriptor: an overlay's last reference (its superblock ends, and the kernel
    /// syncs the upper filesystem), a lock (it is free).
    Close(OwnedFd),
    /// Removes the directory `name` in the directory `dir` if it is empty (a failure is no
    /// failure of the child's), then closes `dir`.
    RemoveDir(OwnedFd, &'static CStr),
    /// Removes the file `name` in the directory `dir` (a failure is no failure of the child's:
    /// what is left is a stale temporary file, see `crate::util::remove_stale_temps`), then
    /// closes `dir`: the file a durable write replaced (`crate::durable`).
    RemoveFile(OwnedFd, &'static CStr),
}

impl Last {
    fn owned(&self) -> &OwnedFd {
        match self {
            Last::Close(fd) | Last::RemoveDir(fd, _) | Last::RemoveFile(fd, _) => fd,
        }
    }

    fn fd(&self) -> RawFd {
        self.owned().as_raw_fd()
    }

    /// What the child removes, and unlinkat(2)'s flags for it.
    fn removes(&self) -> Option<(&'static CStr, libc::c_int)> {
        match self {
            Last::Close(_) => None,
            Last::RemoveDir(_, name) => Some((*name, libc::AT_REMOVEDIR)),
            Last::RemoveFile(_, name) => Some((*name, 0)),
        }
    }

    /// Does it here (when no child can).
    pub fn finish(self) {
        use nix::unistd::UnlinkatFlags;
        if let Some((name, flags)) = self.removes() {
            let how = if flags == libc::AT_REMOVEDIR {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            let _ = nix::unistd::unlinkat(self.owned(), name, how);
        }
    }
}

/// One step of [`Last`] as the child reads it.
#[derive(Clone, Copy)]
struct Step {
    fd: RawFd,
    remove: Option<(&'static CStr, libc::c_int)>,
}

/// What the child reads: leaked before the clone, never freed.
struct Job {
    /// fsynced, in order.
    sync: Vec<RawFd>,
    /// Done in order, after `wait` has reached its end.
    last: Vec<Step>,
    /// The reading end of the pipe the parent closes its end of; -1 when `last` is empty.
    wait: RawFd,
    /// Every descriptor above, sorted: the child closes all others.
    keep: Vec<RawFd>,
}

/// The child's stack: a handful of system calls with small frames.
const STACK: usize = 16 * 1024;

/// Starts the child that closes every other descriptor (its stdio too), leaves the session,
/// fsyncs each of `sync` in order, waits until this process has closed its copies of `last`
/// (which this call does before it returns) and does each of them, in order, then exits with
/// the number of fsyncs that failed (at most 255). Returns its pid; it is this process's child
/// until this process exits. If it cannot be started, `last` is done here.
pub fn spawn<F: AsFd>(sync: &[F], last: Vec<Last>) -> io::Result<libc::pid_t> {
    let pipe = if last.is_empty() {
        None
    } else {
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok(pipe) => Some(pipe),
            Err(e) => {
                last.into_iter().for_each(Last::finish);
                return Err(e.into());
            }
        }
    };
    let sync: Vec<RawFd> = sync.iter().map(|f| f.as_fd().as_raw_fd()).collect();
    let steps: Vec<Step> = last
        .iter()
        .map(|l| Step {
            fd: l.fd(),
            remove: l.removes(),
        })
        .collect();
    let wait = pipe.as_ref().map_or(-1, |(r, _)| r.as_raw_fd());
    let mut keep: Vec<RawFd> = sync.to_vec();
    keep.extend(steps.iter().map(|s| s.fd));
    keep.extend((wait >= 0).then_some(wait));
    keep.sort_unstable();
    keep.dedup();
    let job: &'static Job = Box::leak(Box::new(Job {
        sync,
        last: steps,
        wait,
        keep,
    }));
    let stack: &'static mut [u8] = Box::leak(vec![0u8; STACK].into_boxed_slice());
    // SAFETY: one past the end of `stack`, aligned down to 16 bytes (the stack grows down).
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
    let top = ((top as usize) & !15) as *mut libc::c_void;
    // SAFETY: `child_main` reads only `job` and runs only on `stack`, both leaked, and makes raw
    // system calls only (see the module's header); it keeps the blocked mask it starts with.
    let pid = unsafe {
        super::clone_signals_blocked(
            child_main,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            job as *const Job as *mut libc::c_void,
            |_| {},
        )
    };
    // Our copies first (each close is complete when it returns), then the pipe's end: the
    // child's closes come after both. Without a child, here.
    match pid {
        Ok(_) => drop(last),
        Err(_) => last.into_iter().for_each(Last::finish),
    }
    drop(pipe);
    pid
}

/// The child: raw system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `Job` of `spawn`.
    let job = unsafe { &*(arg as *const Job) };
    close_all_but(&job.keep);
    // SAFETY: a failure (already a session leader) changes nothing here.
    unsafe { raw::syscall3(libc::SYS_setsid, 0, 0, 0) };
    let mut failed: libc::c_int = 0;
    for &fd in &job.sync {
        // SAFETY: fsync of a descriptor of the child's own table.
        if unsafe { raw::syscall3(libc::SYS_fsync, fd as usize, 0, 0) } < 0 {
            failed = (failed + 1).min(255);
        }
    }
    if job.wait >= 0 {
        let mut byte = 0u8;
        loop {
            // SAFETY: a read of one byte into the child's own stack. Only the end (0) or an
            // error comes: nobody writes into the pipe.
            let n = unsafe {
                raw::syscall3(
                    libc::SYS_read,
                    job.wait as usize,
                    &mut byte as *mut u8 as usize,
                    1,
                )
            };
            if n != -(libc::EINTR as isize) {
                break;
            }
        }
    }
    for step in &job.last {
        if let Some((name, flags)) = step.remove {
            // SAFETY: `name` is a 'static C string; `fd` is a directory of the child's table.
            // A failure (a directory not empty, gone) leaves the entry as it is: the next mount
            // handles a directory, gc a file.
            unsafe {
                raw::syscall3(
                    libc::SYS_unlinkat,
                    step.fd as usize,
                    name.as_ptr() as usize,
                    flags as usize,
                )
            };
        }
        // SAFETY: the child's own copy.
        unsafe { raw::syscall3(libc::SYS_close, step.fd as usize, 0, 0) };
    }
    // musl's clone calls exit(2) with this: the child alone ends.
    failed
}

/// Closes every descriptor of this process's table but `keep` (sorted; negative entries are
/// none), with raw system calls only, for a child of a fork or a clone: close_range(2) over each
/// gap, or, where the kernel has none (before 5.9), close(2) of each below 1024.
pub(crate) fn close_all_but(keep: &[RawFd]) {
    let kept = || keep.iter().filter(|&&fd| fd >= 0).map(|&fd| fd as usize);
    let mut from: usize = 0;
    for fd in kept().chain(std::iter::once(RawFd::MAX as usize)) {
        if fd > from {
            // SAFETY: closes descriptors of this process's own table only.
            let r = unsafe { raw::syscall3(libc::SYS_close_range, from, fd - 1, 0) };
            if r < 0 {
                for other in (0..1024).filter(|f| !kept().any(|k| k == *f)) {
                    // SAFETY: as above.
                    unsafe { raw::syscall3(libc::SYS_close, other, 0, 0) };
                }
                return;
            }
        }
        from = fd.saturating_add(1);
    }
}

mod raw {
    /// A system call with three arguments, without libc (so without `errno`): its raw result.
    ///
    /// # Safety
    /// As the system call `n`.
    #[cfg(target_arch = "x86_64")]
    pub unsafe fn syscall3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller's; `syscall` clobbers rcx and r11 and touches no stack.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") n as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// Elsewhere, libc's: its `errno` write on a failure lands in the parent's memory, where
    /// only a parent that is exiting could read it. The result is -errno on failure, as the
    /// raw call's.
    ///
    /// # Safety
    /// As the system call `n`.
    #[cfg(not(target_arch = "x86_64"))]
    pub unsafe fn syscall3(n: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        // SAFETY: the caller's.
        let r = unsafe { libc::syscall(n, a, b, c) } as isize;
        if r < 0 {
            // SAFETY: errno of this thread, just set.
            -(unsafe { *libc::__errno_location() } as isize)
        } else {
            r
        }
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
        let pid = spawn(&[&file, &d], Vec::new()).unwrap();
        drop((file, d));
        assert_eq!(wait(pid), 0);

        let (r, w) = nix::unistd::pipe().unwrap();
        let file = std::fs::File::create(dir.path().join("g")).unwrap();
        let pid = spawn(&[r.as_fd(), file.as_fd(), w.as_fd()], Vec::new()).unwrap();
        drop((r, w, file));
        assert_eq!(wait(pid), 2, "the two ends of the pipe failed");
    }

    /// Last, once this process has closed its copies: an empty directory it was given is
    /// removed, one that is not empty stays, and neither is a failure of the child's.
    #[test]
    fn the_child_removes_the_empty_directories_it_was_given_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/work")).unwrap();
        std::fs::create_dir_all(dir.path().join("b/work/kept")).unwrap();
        let step = |d: &str| {
            let fd = OwnedFd::from(std::fs::File::open(dir.path().join(d)).unwrap());
            Last::RemoveDir(fd, c"work")
        };
        let pid = spawn::<OwnedFd>(&[], vec![step("a"), step("b")]).unwrap();
        assert_eq!(wait(pid), 0);
        assert!(!dir.path().join("a/work").exists(), "empty: removed");
        assert!(dir.path().join("b/work/kept").exists(), "not empty: kept");

        // Here, when no child can take it.
        std::fs::create_dir(dir.path().join("a/work")).unwrap();
        step("a").finish();
        assert!(!dir.path().join("a/work").exists());
    }

    /// A file it is given to remove goes (a directory of that name does not: that is another
    /// step), and a name that is gone already is no failure of the child's.
    #[test]
    fn the_child_removes_the_files_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old"), "x").unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        let step = |name: &'static CStr| {
            let fd = OwnedFd::from(std::fs::File::open(dir.path()).unwrap());
            Last::RemoveFile(fd, name)
        };
        let pid =
            spawn::<OwnedFd>(&[], vec![step(c"old"), step(c"subdir"), step(c"none")]).unwrap();
        assert_eq!(wait(pid), 0);
        assert!(!dir.path().join("old").exists(), "removed");
        assert!(dir.path().join("subdir").is_dir(), "not a file: kept");

        std::fs::write(dir.path().join("old"), "x").unwrap();
        step(c"old").finish();
        assert!(!dir.path().join("old").exists(), "removed here");
    }
}
