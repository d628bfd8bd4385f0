//! Telling a live process from a dead one, and from a new process that reuses its pid.
//!
//! A pid alone is not an identity: the kernel reuses pids. A process is named here by its pid and
//! its start time (field 22 of `/proc/PID/stat`, clock ticks after boot), which together are
//! unique within one boot; across boots the boot id (`/proc/sys/kernel/random/boot_id`) tells
//! records apart.

use std::fs;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// One process, for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start: u64,
}

impl ProcessId {
    /// The process now running as `pid`, if there is one that has not exited (a zombie has).
    pub fn of(pid: i32) -> Option<ProcessId> {
        start_time(pid).map(|start| ProcessId { pid, start })
    }

    /// This process. Read once per process (a start then names itself in every record it
    /// writes); a forked child, whose pid differs, reads its own.
    pub fn current() -> Option<ProcessId> {
        static CURRENT: OnceLock<(u32, Option<ProcessId>)> = OnceLock::new();
        let pid = std::process::id();
        let (read_for, id) = *CURRENT.get_or_init(|| (pid, ProcessId::of(pid as i32)));
        if read_for == pid {
            id
        } else {
            ProcessId::of(pid as i32)
        }
    }

    /// Whether this very process still runs: same pid and same start time.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// The start time of the live process `pid`; `None` if there is none or it is a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let text = read_proc(&format!("/proc/{pid}/stat")).ok()?;
    let (state, start) = parse_stat(&text)?;
    // Z: exited, waiting for its parent; X: being reaped. Neither runs any more.
    (!matches!(state, 'Z' | 'X')).then_some(start)
}

/// A small file of /proc, in one read where it fits in 1 KiB (`/proc/PID/stat` does): a /proc
/// file has no size to go by, and `read_to_string` reads it with probes that grow from 32 bytes
/// (six reads for a stat line). Called for every user judged alive or gone.
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(1024);
    fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The state (field 3) and start time (field 22) from the text of `/proc/PID/stat`. The command
/// name (field 2) is in parentheses and may itself hold spaces and ')': fields are counted after
/// the last ')'.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("1 (x) Z 0"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        let reused = ProcessId {
            start: me.start + 1,
            ..me
        };
        assert!(
            !reused.is_alive(),
            "same pid, other start time: another process"
        );
        assert_eq!(ProcessId::of(0), None);
    }
}
