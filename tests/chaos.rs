//! Crash recovery proven by random faults (issue 18): containers come and go through one way in
//! (the runtime wrapper, runc with ocivol's hooks, or a private containerd running the wrapper)
//! while a driver SIGKILLs, at random moments, the processes doing the work: the wrapper, the
//! runc it runs, the hook, `ctr`, the containerd shim, and the operator's `ocivol gc`,
//! `volume rm`, `volume reset` and `volume prune`. After each round, `ocivol gc` runs and the
//! invariants of the state are checked; after the last, every container is deleted, one gc runs,
//! and nothing may be left.
//!
//! The schedule (which container gets which kill, after how long, which operator command runs
//! when) comes from a seed and is printed with it; the moment a kill lands in a process still
//! depends on the machine's load, so a replay retries the same schedule, not the same
//! interleaving. Settings (environment):
//!
//! - `CHAOS_N`: containers per way in and seed (default 60: the short version in `make test`;
//!   `make chaos` runs 100);
//! - `CHAOS_SEED=S`, or `CHAOS_SEEDS=1..5` (or `1,2,5`); default: a seed from the clock;
//! - `CHAOS_ROUND`: containers per round (default 10); `CHAOS_WORKERS`: creates at once (4);
//! - `CHAOS_WAYS`: `runtime,hooks,containerd` (default all three);
//! - `CHAOS_DEBUG`: print every kill, with the process it hit.
//!
//! Each way in runs in its own temp directory (state roots, runc root, containerd), with
//! container IDs of a prefix of its own; everything it started is removed when it ends, failed
//! or not (containers, processes, mounts, cgroups, containerd's shim sockets).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::containerd::{Containerd, shims_of};
use common::{Env, RUNC};
use ocivol::store::{ContainerRecord, UserRecord, VolumeDef};

const VOLUMES: &str = "io.ocivol.volumes";
/// Containers per way in and seed when `CHAOS_N` is not set (the short version).
const SHORT_N: usize = 60;
/// A command that has not ended after this long is hung: a violation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a kill waits for its victim to appear.
const LOOK_FOR: Duration = Duration::from_secs(15);
/// How long a shim is looked for once the command that should have started it has ended.
const SHIM_GRACE: Duration = Duration::from_secs(1);
/// How long no process of a round must be seen before the round counts as over.
const QUIET_FOR: Duration = Duration::from_millis(300);
/// How long the processes of a round may take to end once nothing new is started.
const QUIET_TIMEOUT: Duration = Duration::from_secs(60);
/// What the base's file says (see common::Env::new).
const BASE_FILE: &str = "from the base\n";

/// One way in at a time: each already runs several creates at once, and the machine is shared.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn chaos_runtime_wrapper() {
    chaos(Way::Runtime);
}

#[test]
fn chaos_runc_hooks() {
    chaos(Way::Hooks);
}

#[test]
fn chaos_containerd() {
    chaos(Way::Containerd);
}

// ---------------------------------------------------------------------------------------------
// Settings and the seeded schedule

/// splitmix64: small, and the same sequence everywhere for a seed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, salt: u64) -> Rng {
        let mut r = Rng(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
struct Settings {
    n: usize,
    seeds: Vec<u64>,
    round: usize,
    workers: usize,
    ways: Vec<String>,
}

fn settings() -> Settings {
    let num = |key: &str, default: usize| match std::env::var(key) {
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("{key}={v}: not a number")),
        Err(_) => default,
    };
    let seeds = match (std::env::var("CHAOS_SEED"), std::env::var("CHAOS_SEEDS")) {
        (Ok(s), _) => vec![parse_seed(&s)],
        (_, Ok(s)) => parse_seeds(&s),
        _ => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            vec![(t.as_secs() ^ u64::from(t.subsec_nanos())) % 1_000_000]
        }
    };
    let ways = std::env::var("CHAOS_WAYS")
        .unwrap_or_else(|_| "runtime,hooks,containerd".into())
        .split(',')
        .map(|w| w.trim().to_string())
        .collect();
    Settings {
        n: num("CHAOS_N", SHORT_N),
        seeds,
        round: num("CHAOS_ROUND", 10).max(1),
        workers: num("CHAOS_WORKERS", 4).max(1),
        ways,
    }
}

fn parse_seed(s: &str) -> u64 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("seed {s:?}: not a number"))
}

/// `1..5` (both ends), `1-5`, or `1,2,5`.
fn parse_seeds(s: &str) -> Vec<u64> {
    if let Some((a, b)) = s.split_once("..").or_else(|| s.split_once('-')) {
        return (parse_seed(a)..=parse_seed(b.trim_start_matches('='))).collect();
    }
    s.split(',').map(parse_seed).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `ocivol runtime run -d` / `create` + `start` / `delete --force`.
    Runtime,
    /// Plain runc with ocivol's createRuntime and poststop hooks in config.json.
    Hooks,
    /// `ctr run -d --runc-binary ocivol-runtime`, `ctr task rm -f`, `ctr container rm`.
    Containerd,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Runtime => "runtime",
            Way::Hooks => "hooks",
            Way::Containerd => "containerd",
        }
    }
    fn test(self) -> &'static str {
        match self {
            Way::Runtime => "chaos_runtime_wrapper",
            Way::Hooks => "chaos_runc_hooks",
            Way::Containerd => "chaos_containerd",
        }
    }
    fn create_victims(self) -> &'static [Victim] {
        match self {
            Way::Runtime => &[Victim::Wrapper, Victim::Runc],
            Way::Hooks => &[Victim::Runc, Victim::Hook],
            Way::Containerd => &[Victim::Ctr, Victim::Shim, Victim::Wrapper, Victim::Runc],
        }
    }
    fn delete_victims(self) -> &'static [Victim] {
        match self {
            Way::Runtime => &[Victim::Wrapper, Victim::Runc],
            Way::Hooks => &[Victim::Runc, Victim::Hook],
            Way::Containerd => &[Victim::Ctr, Victim::Shim, Victim::Wrapper, Victim::Runc],
        }
    }
}

/// What a kill is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Victim {
    /// `ocivol runtime …` (run by the driver, or by the containerd shim).
    Wrapper,
    /// The runc doing the work (the wrapper's child, or the driver's own in hook mode).
    Runc,
    /// `ocivol hook …`, run by runc.
    Hook,
    Ctr,
    /// The container's containerd-shim-runc-v2.
    Shim,
    Gc,
    VolumeRm,
    VolumeReset,
    VolumePrune,
}

impl Victim {
    /// The longest wait after the victim appears before it is killed (ms): about its lifetime
    /// in a debug build on a busy machine, so that kills land all over it.
    fn max_delay_ms(self) -> u64 {
        match self {
            Victim::Wrapper => 80,
            Victim::Runc => 50,
            Victim::Hook => 30,
            Victim::Ctr => 300,
            Victim::Shim => 300,
            Victim::Gc | Victim::VolumeRm | Victim::VolumeReset | Victim::VolumePrune => 12,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Kill {
    victim: Victim,
    delay_ms: u64,
}

fn plan_kill(rng: &mut Rng, percent: u64, victims: &[Victim]) -> Option<Kill> {
    if !rng.chance(percent) {
        return None;
    }
    let victim = rng.pick(victims);
    Some(Kill {
        victim,
        delay_ms: rng.below(victim.max_delay_ms() + 1),
    })
}

// ---------------------------------------------------------------------------------------------
// Processes

/// (parent pid, state, start time) of a process, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(i32, char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.first()?.chars().next()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(_, s, _)| !matches!(s, 'Z' | 'X'))
}

fn argv(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn base_name(arg: Option<&String>) -> &str {
    arg.map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or("")
}

fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        todo.extend(children(p));
        out.push(p);
    }
    out
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// A process held by a pidfd, so that a kill can never hit another process that took its pid.
struct Held(OwnedFd);

impl Held {
    /// The process `pid`, if it is still the one seen (same start time) once its pidfd is open.
    fn grab(pid: i32) -> Option<Held> {
        let (_, _, start) = stat(pid)?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the fd was just returned to us and is owned by nothing else.
        let held = Held(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        (stat(pid).map(|s| s.2) == Some(start)).then_some(held)
    }

    fn kill(&self) -> bool {
        // SAFETY: pidfd_send_signal with our pidfd, SIGKILL, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Counting what happened

#[derive(Default)]
struct Stats {
    /// (victim) -> (planned, killed while alive)
    kills: BTreeMap<Victim, (u32, u32)>,
    creates: u32,
    created: u32,
    create_failed: u32,
    deletes: u32,
    operator: BTreeMap<&'static str, (u32, u32)>,
    operator_errors: BTreeSet<String>,
    gc_lines: u32,
    /// How long commands took: (what) -> (count, total ms).
    took: BTreeMap<String, (u32, u128)>,
}

impl Stats {
    fn kill(&mut self, k: Option<Kill>, landed: bool) {
        if let Some(k) = k {
            let e = self.kills.entry(k.victim).or_default();
            e.0 += 1;
            e.1 += u32::from(landed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One way in, one seed

struct Run {
    way: Way,
    seed: u64,
    s: Settings,
    ctrd: Option<Containerd>,
    env: Env,
    /// Every container ID of this run starts with it: cgroups and shim sockets are host-wide.
    prefix: String,
    annotation: String,
    stats: Mutex<Stats>,
    /// Every ID a create was tried for.
    ids: Mutex<Vec<String>>,
    /// IDs whose delete went through (bundle removed, as an engine forgets it).
    deleted: Mutex<BTreeSet<String>>,
    /// What was done to each container, to show with a violation about it.
    history: Mutex<BTreeMap<String, Vec<String>>>,
    /// Commands that did not end (a lock never released, a wait that never returns), and
    /// creates that failed with no kill: violations found on the way.
    unexpected: Mutex<Vec<String>>,
}

fn chaos(way: Way) {
    let s = settings();
    if !s.ways.iter().any(|w| w == way.name()) {
        eprintln!("{}: skipped: not in CHAOS_WAYS", way.test());
        return;
    }
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failed = Vec::new();
    for &seed in &s.seeds {
        let Some(mut run) = Run::new(way, seed, &s) else {
            return;
        };
        let started = Instant::now();
        let violations = run.go();
        println!(
            "chaos {} seed={seed}: {} in {:.1}s",
            way.name(),
            if violations.is_empty() {
                "passed".to_string()
            } else {
                format!("{} violation(s)", violations.len())
            },
            started.elapsed().as_secs_f64()
        );
        if !violations.is_empty() {
            failed.push((seed, violations));
        }
    }
    if !failed.is_empty() {
        let mut text = String::new();
        for (seed, v) in &failed {
            text.push_str(&format!(
                "\nseed {seed} (replay: CHAOS_SEED={seed} CHAOS_N={} cargo test --test chaos {} -- --nocapture):\n",
                s.n,
                way.test()
            ));
            for line in v {
                text.push_str(&format!("  - {line}\n"));
            }
        }
        panic!("chaos {}: invariants violated:{text}", way.name());
    }
}

impl Run {
    fn new(way: Way, seed: u64, s: &Settings) -> Option<Run> {
        let env = Env::new(way.test())?;
        if way == Way::Containerd
            && !(Path::new("/usr/bin/containerd").exists() && Path::new("/usr/bin/ctr").exists())
        {
            eprintln!("{}: skipped: requires containerd and ctr", way.test());
            return None;
        }
        let ctrd = (way == Way::Containerd).then(|| Containerd::start(&env));
        let tag = env
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .rsplit('-')
            .next()
            .unwrap()
            .to_lowercase();
        let prefix = format!("cx{tag}-{}{seed}-", &way.name()[..1]);
        let annotation = format!(
            "shared:/data:base={b};scratch:/scratch:base={b},volatile;named:/named;/anon",
            b = env.base.display()
        );
        fs::create_dir_all(env.dir.path().join("out")).unwrap();
        println!(
            "chaos {} seed={seed}: {} containers, rounds of {}, {} at once, IDs {prefix}* \
             (replay: CHAOS_SEED={seed} CHAOS_N={} cargo test --test chaos {} -- --nocapture)",
            way.name(),
            s.n,
            s.round,
            s.workers,
            s.n,
            way.test()
        );
        Some(Run {
            way,
            seed,
            s: s.clone(),
            ctrd,
            env,
            prefix,
            annotation,
            stats: Mutex::new(Stats::default()),
            ids: Mutex::new(Vec::new()),
            deleted: Mutex::new(BTreeSet::new()),
            history: Mutex::new(BTreeMap::new()),
            unexpected: Mutex::new(Vec::new()),
        })
    }

    /// Runs every round and the final check; the violations found.
    fn go(&mut self) -> Vec<String> {
        let mut rng = Rng::new(self.seed, self.way as u64 + 1);
        let mut violations = Vec::new();
        let mut next = 0;
        let mut round = 0;
        while next < self.s.n {
            round += 1;
            let count = self.s.round.min(self.s.n - next);
            let ids: Vec<String> = (next..next + count)
                .map(|i| format!("{}{i}", self.prefix))
                .collect();
            next += count;
            let found = self.round(round, &ids, &mut rng);
            violations.extend(found.into_iter().map(|v| format!("round {round}: {v}")));
        }
        violations.extend(
            self.finish()
                .into_iter()
                .map(|v| format!("after deleting everything: {v}")),
        );
        self.print_stats();
        violations
    }

    fn round(&self, round: usize, ids: &[String], rng: &mut Rng) -> Vec<String> {
        // The schedule is drawn here, in order, so that it depends on the seed alone.
        let creates: Vec<(String, Option<Kill>, bool)> = ids
            .iter()
            .map(|id| {
                let kill = plan_kill(rng, 50, self.way.create_victims());
                (id.clone(), kill, rng.chance(50))
            })
            .collect();
        let known: Vec<String> = {
            let deleted = self.deleted.lock().unwrap();
            self.ids
                .lock()
                .unwrap()
                .iter()
                .chain(ids)
                .filter(|id| !deleted.contains(*id))
                .cloned()
                .collect()
        };
        let mut deletes: Vec<(String, Option<Kill>)> = Vec::new();
        for id in known {
            if rng.chance(50) {
                deletes.push((id, plan_kill(rng, 40, self.way.delete_victims())));
            }
        }
        let operator_rng = Rng::new(rng.next(), 99);

        let stop = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            let op = {
                let stop = stop.clone();
                scope.spawn(move || self.operator(operator_rng, &stop))
            };
            self.ids.lock().unwrap().extend(ids.iter().cloned());
            self.parallel(&creates, |(id, kill, split)| self.create(id, *kill, *split));
            self.parallel(&deletes, |(id, kill)| self.delete(id, *kill));
            stop.store(true, Ordering::SeqCst);
            op.join().unwrap();
        });
        let mut found: Vec<String> = std::mem::take(&mut *self.unexpected.lock().unwrap());
        found.extend(self.quiesce());
        found.extend(self.gc());
        found.extend(self.check(false));
        let users = self.users_summary();
        println!(
            "chaos {} seed={} round {round}: {} created, {} deleted, live {}, users {users}, {} violation(s)",
            self.way.name(),
            self.seed,
            ids.len(),
            deletes.len(),
            self.live().len(),
            found.len()
        );
        for v in &found {
            println!("  violation: {v}");
        }
        found
    }

    /// Runs `f` on every item, `workers` at a time.
    fn parallel<T: Sync>(&self, items: &[T], f: impl Fn(&T) + Sync) {
        let next = Mutex::new(0usize);
        std::thread::scope(|scope| {
            for _ in 0..self.s.workers {
                scope.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap();
                            *n += 1;
                            *n - 1
                        };
                        let Some(item) = items.get(i) else { break };
                        f(item);
                    }
                });
            }
        });
    }

    fn out_file(&self, name: &str) -> fs::File {
        fs::File::create(self.env.dir.path().join("out").join(name)).unwrap()
    }

    fn runc_root(&self) -> PathBuf {
        match &self.ctrd {
            Some(c) => c.runc_root("default"),
            None => self.env.runc_root.clone(),
        }
    }

    fn bundle(&self, id: &str) -> PathBuf {
        match self.way {
            Way::Containerd => self
                .ctrd
                .as_ref()
                .unwrap()
                .dir
                .join("state/io.containerd.runtime.v2.task/default")
                .join(id),
            _ => self.env.dir.path().join("bundles").join(id),
        }
    }

    fn create(&self, id: &str, kill: Option<Kill>, split: bool) {
        let env = &self.env;
        let ann = [(VOLUMES, self.annotation.as_str())];
        let out = self.out_file(&format!("{id}.create"));
        let cmd = match self.way {
            Way::Runtime => {
                let b = env.bundle(id, &["sleep", "3600"], &ann);
                let b = b.to_str().unwrap().to_string();
                if split {
                    env.runtime_cmd(&["create", "--bundle", &b, id])
                } else {
                    env.runtime_cmd(&["run", "--detach", "--bundle", &b, id])
                }
            }
            Way::Hooks => {
                let b = common::Way::Hooks.bundle(env, id, &["sleep", "3600"], &ann);
                env.runc_cmd(&["run", "--detach", "--bundle", b.to_str().unwrap(), id])
            }
            Way::Containerd => self.ctrd.as_ref().unwrap().run(
                &["-d"],
                &self.annotation,
                &env.rootfs,
                id,
                &["sleep", "3600"],
            ),
        };
        let (status, landed) = self.drive(cmd, out, id, kill);
        self.note(
            id,
            format!("create: {kill:?} landed={landed} -> {status:?}"),
        );
        let mut created = status.as_ref().is_ok_and(|s| s.success());
        if created && split && self.way == Way::Runtime {
            // `start` goes straight to runc: its kill is not ocivol's concern.
            let start = env
                .runc_cmd(&["start", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            created = start.success();
        }
        let mut st = self.stats.lock().unwrap();
        st.creates += 1;
        st.kill(kill, landed);
        if created {
            st.created += 1;
        } else if kill.is_none() {
            st.create_failed += 1;
            let said = fs::read_to_string(env.dir.path().join("out").join(format!("{id}.create")))
                .unwrap_or_default();
            self.unexpected.lock().unwrap().push(format!(
                "create of {id} failed and nothing was killed: {status:?}: {}",
                said.trim()
            ));
        }
    }

    fn delete(&self, id: &str, kill: Option<Kill>) {
        let out = self.out_file(&format!("{id}.delete"));
        let cmd = match self.way {
            Way::Runtime => self.env.runtime_cmd(&["delete", "--force", id]),
            Way::Hooks => self.env.runc_cmd(&["delete", "--force", id]),
            Way::Containerd => self.ctrd.as_ref().unwrap().ctr(&["t", "rm", "-f", id]),
        };
        let (status, landed) = self.drive(cmd, out, id, kill);
        self.note(
            id,
            format!("delete: {kill:?} landed={landed} -> {status:?}"),
        );
        let mut forgotten = status.as_ref().is_ok_and(|s| s.success());
        if self.way == Way::Containerd {
            let rm = self
                .ctrd
                .as_ref()
                .unwrap()
                .ctr(&["c", "rm", id])
                .output()
                .unwrap();
            forgotten = rm.status.success();
        }
        if forgotten && kill.is_none_or(|_| !landed) {
            // As an engine does once a container is deleted: its bundle goes.
            if self.way != Way::Containerd {
                let _ = fs::remove_dir_all(self.bundle(id));
            }
            self.deleted.lock().unwrap().insert(id.to_string());
        }
        let mut st = self.stats.lock().unwrap();
        st.deletes += 1;
        st.kill(kill, landed);
    }

    fn note(&self, id: &str, what: String) {
        self.history
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .push(what);
    }

    /// What was done to container `id`.
    fn history_of(&self, id: &str) -> String {
        self.history
            .lock()
            .unwrap()
            .get(id)
            .map(|h| h.join("; "))
            .unwrap_or_default()
    }

    /// Runs a command to its end, killing `kill`'s victim on the way; its exit status (an
    /// error if it hung) and whether the kill landed on a live process.
    fn drive(
        &self,
        mut cmd: Command,
        out: fs::File,
        id: &str,
        kill: Option<Kill>,
    ) -> (Result<ExitStatus, String>, bool) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let top = child.id() as i32;
        let began = Instant::now();
        let mut landed = false;
        if let Some(k) = kill {
            let mut look_until = Instant::now() + LOOK_FOR;
            let mut top_ended = false;
            loop {
                if let Some(pid) = self.find(k.victim, top, id)
                    && let Some(held) = Held::grab(pid)
                {
                    std::thread::sleep(Duration::from_millis(k.delay_ms));
                    landed = alive(pid) && held.kill();
                    if std::env::var_os("CHAOS_DEBUG").is_some() {
                        println!(
                            "  debug: {id} {k:?}: pid {pid} {:?} landed={landed}",
                            argv(pid)
                        );
                    }
                    break;
                }
                // A victim that outlives the command (the shim) is looked for a while longer.
                if !top_ended && !alive(top) {
                    top_ended = true;
                    look_until = look_until.min(Instant::now() + SHIM_GRACE);
                }
                if (k.victim != Victim::Shim && top_ended) || Instant::now() > look_until {
                    if std::env::var_os("CHAOS_DEBUG").is_some() {
                        println!("  debug: {id} {k:?}: not found");
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let status = wait(&mut child);
        if let Err(e) = &status {
            self.unexpected.lock().unwrap().push(format!(
                "{:?} {:?}: {e}",
                cmd.get_program(),
                cmd.get_args().collect::<Vec<_>>()
            ));
        }
        let what = format!(
            "{:?}",
            cmd.get_args()
                .find(
                    |a| ["run", "create", "delete", "rm", "gc", "reset", "prune"]
                        .contains(&a.to_str().unwrap_or(""))
                )
                .unwrap_or_default()
        );
        let mut st = self.stats.lock().unwrap();
        let e = st.took.entry(what).or_default();
        e.0 += 1;
        e.1 += began.elapsed().as_millis();
        drop(st);
        (status, landed)
    }

    /// The process `victim` names for the command `top` working on container `id`.
    fn find(&self, victim: Victim, top: i32, id: &str) -> Option<i32> {
        let is_runc = |p: &i32| {
            let a = argv(*p);
            base_name(a.first()) == "runc" && a.get(1).is_some_and(|x| x != "init")
        };
        match (self.way, victim) {
            (Way::Runtime, Victim::Wrapper)
            | (Way::Hooks, Victim::Runc)
            | (_, Victim::Ctr)
            | (_, Victim::Gc | Victim::VolumeRm | Victim::VolumeReset | Victim::VolumePrune) => {
                alive(top).then_some(top)
            }
            (Way::Runtime, Victim::Runc) => descendants(top).into_iter().find(is_runc),
            (Way::Hooks, Victim::Hook) => descendants(top)
                .into_iter()
                .find(|p| argv(*p).get(1).is_some_and(|a| a == "hook")),
            (Way::Containerd, Victim::Shim) => self.shim(id),
            (Way::Containerd, Victim::Wrapper) => self.shim(id).and_then(|s| {
                descendants(s)
                    .into_iter()
                    .find(|p| base_name(argv(*p).first()) == "ocivol-runtime")
            }),
            (Way::Containerd, Victim::Runc) => self
                .shim(id)
                .and_then(|s| descendants(s).into_iter().find(is_runc)),
            _ => None,
        }
    }

    fn shim(&self, id: &str) -> Option<i32> {
        let address = self.ctrd.as_ref()?.dir.join("c.sock");
        // The shim that serves the container, not the short-lived `start` or `delete` of its
        // binary.
        shims_of(&address)
            .into_iter()
            .find(|(pid, of)| {
                of.as_deref() == Some(id)
                    && alive(*pid)
                    && !argv(*pid).iter().any(|a| a == "start" || a == "delete")
            })
            .map(|(pid, _)| pid)
    }

    /// The operator, meanwhile: gc, rm, reset, prune, each killed half of the time.
    fn operator(&self, mut rng: Rng, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let (victim, args): (Victim, Vec<&str>) = match rng.below(10) {
                0..=3 => (Victim::Gc, vec!["gc"]),
                4..=5 => (
                    Victim::VolumeRm,
                    vec!["volume", "rm", rng.pick(&["named", "shared", "scratch"])],
                ),
                6..=7 => (
                    Victim::VolumeReset,
                    vec!["volume", "reset", rng.pick(&["shared", "scratch"])],
                ),
                8 => (Victim::VolumePrune, vec!["volume", "prune"]),
                _ => (Victim::VolumePrune, vec!["volume", "prune", "--all"]),
            };
            let kill = rng.chance(50).then(|| Kill {
                victim,
                delay_ms: rng.below(victim.max_delay_ms() + 1),
            });
            let pause = rng.below(40);
            let name = format!("op-{}", args.join("-"));
            let (status, landed) =
                self.drive(self.env.ocivol_cmd(&args), self.out_file(&name), "", kill);
            let said =
                fs::read_to_string(self.env.dir.path().join("out").join(&name)).unwrap_or_default();
            let mut st = self.stats.lock().unwrap();
            let e = st.operator.entry(match victim {
                Victim::Gc => "gc",
                Victim::VolumeRm => "volume rm",
                Victim::VolumeReset => "volume reset",
                _ => "volume prune",
            });
            let e = e.or_default();
            e.0 += 1;
            e.1 += u32::from(landed);
            st.kill(kill, landed);
            let killed = status.as_ref().is_ok_and(|s| s.signal() == Some(9));
            if !killed && !status.as_ref().is_ok_and(|s| s.success()) {
                for line in said.lines() {
                    let expected = ["is in use by", "does not exist", "no such volume"]
                        .iter()
                        .any(|e| line.contains(e));
                    if !expected {
                        st.operator_errors
                            .insert(format!("{}: {line}", args.join(" ")));
                    }
                }
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(pause));
        }
    }

    /// Waits until no process of this run is at work (orphaned hooks, runtimes of killed
    /// wrappers, ...): gc and the checks look at a quiet state.
    fn quiesce(&self) -> Vec<String> {
        let deadline = Instant::now() + QUIET_TIMEOUT;
        let mut quiet_since: Option<Instant> = None;
        loop {
            let busy = self.busy();
            if busy.is_empty() {
                // Quiet for a while: containerd starts the cleanup of a dead shim on its own.
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= QUIET_FOR {
                    return Vec::new();
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            quiet_since = None;
            if Instant::now() > deadline {
                return busy
                    .into_iter()
                    .map(|(pid, a)| format!("process {pid} still running after the round: {a}"))
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Processes of this run still at work: ocivol, runc (not a container's init) and ctr
    /// processes whose command line or environment names this run's directory.
    fn busy(&self) -> Vec<(i32, String)> {
        let dir = self.env.dir.path().to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        for pid in all_pids() {
            if pid == me {
                continue;
            }
            let a = argv(pid);
            let name = base_name(a.first()).to_string();
            let ours = match name.as_str() {
                "ocivol" | "ocivol-runtime" | "ctr" => true,
                "runc" => a.get(1).is_some_and(|x| x != "init"),
                // The shim binary run to start a shim or to clean up after one; the shim that
                // serves a container stays.
                "containerd-shim-runc-v2" => a.iter().any(|x| x == "start" || x == "delete"),
                _ => false,
            };
            if !ours || !alive(pid) {
                continue;
            }
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if a.join(" ").contains(&dir) || String::from_utf8_lossy(&environ).contains(&dir) {
                out.push((pid, a.join(" ")));
            }
        }
        out
    }

    fn gc(&self) -> Vec<String> {
        let out = self.env.ocivol(&["gc"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut found = Vec::new();
        if !out.status.success() || !stderr.is_empty() {
            found.push(format!(
                "ocivol gc failed ({}): {stderr}{stdout}",
                out.status
            ));
        }
        if stdout.trim() != "nothing to collect" {
            self.stats.lock().unwrap().gc_lines += stdout.lines().count() as u32;
        }
        // One pass heals everything: a second one finds nothing.
        let again = self.env.ocivol(&["gc"]);
        let again = String::from_utf8_lossy(&again.stdout).into_owned();
        if again.trim() != "nothing to collect" {
            found.push(format!(
                "a second gc still had work (the first said {stdout:?}): {again:?}"
            ));
        }
        found
    }

    // -----------------------------------------------------------------------------------------
    // What is there

    /// The containers the runtime has with a live init: id -> (status, init pid).
    fn live(&self) -> BTreeMap<String, (String, i32)> {
        let out = Command::new(RUNC)
            .arg("--root")
            .arg(self.runc_root())
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let mut live = BTreeMap::new();
        for c in list.as_array().into_iter().flatten() {
            let id = c["id"].as_str().unwrap_or("").to_string();
            let status = c["status"].as_str().unwrap_or("").to_string();
            let pid = c["pid"].as_i64().unwrap_or(0) as i32;
            if matches!(status.as_str(), "created" | "running" | "paused") && alive(pid) {
                live.insert(id, (status, pid));
            }
        }
        live
    }

    /// State directories the runtime has for IDs of this run: id -> has state.json.
    fn runtime_dirs(&self) -> BTreeMap<String, bool> {
        fs::read_dir(self.runc_root())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                id.starts_with(&self.prefix)
                    .then(|| (id, e.path().join("state.json").exists()))
            })
            .collect()
    }

    fn volumes(&self) -> BTreeMap<String, Option<VolumeDef>> {
        let mut out = BTreeMap::new();
        for dir in [
            self.env.root.join("volumes"),
            self.env.run_root.join("volumes"),
        ] {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".ocivol-") {
                    continue;
                }
                let def = VolumeDef::load(&self.env.root.join("volumes").join(&name))
                    .ok()
                    .flatten();
                out.insert(name, def);
            }
        }
        out
    }

    /// The entries of a volume's `users/` (temp files included: they are checked apart).
    fn user_files(&self, volume: &str) -> Vec<String> {
        fs::read_dir(self.env.run_root.join("volumes").join(volume).join("users"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn records(&self) -> Vec<ContainerRecord> {
        ContainerRecord::load_all(&self.env.root.join("containers")).unwrap()
    }

    fn users_summary(&self) -> String {
        let mut parts = Vec::new();
        for (name, def) in self.volumes() {
            if def.as_ref().is_some_and(|d| d.anonymous) {
                continue;
            }
            let short = name.split('@').next().unwrap().to_string();
            parts.push(format!("{short}={}", self.user_files(&name).len()));
        }
        let anon = self
            .volumes()
            .values()
            .filter(|d| d.as_ref().is_some_and(|d| d.anonymous))
            .count();
        parts.push(format!("anonymous volumes={anon}"));
        parts.join(" ")
    }

    // -----------------------------------------------------------------------------------------
    // The invariants

    /// Checks the state after a gc. `end`: everything was deleted, nothing may be left.
    fn check(&self, end: bool) -> Vec<String> {
        let mut v = Vec::new();
        let live = self.live();
        let runtime_dirs = self.runtime_dirs();
        let records: BTreeMap<String, ContainerRecord> =
            self.records().into_iter().map(|r| (r.key(), r)).collect();
        let volumes = self.volumes();
        let host = common::mountinfo();
        let upper_root = self.env.root.join("volumes");
        let superblocks = overlay_superblocks(&upper_root);

        // No temp file anywhere in ocivol's state.
        for root in [&self.env.root, &self.env.run_root] {
            for path in walk(root) {
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".ocivol-"))
                {
                    v.push(format!("temp file left: {}", path.display()));
                }
            }
        }

        for (name, def) in &volumes {
            let Some(def) = def else {
                let root = self.env.root.join("volumes").join(name);
                let run = self.env.run_root.join("volumes").join(name);
                v.push(format!(
                    "volume directory without a definition: {} [{}], {} [{}]",
                    root.display(),
                    list(&root).join(" "),
                    run.display(),
                    list(&run).join(" ")
                ));
                continue;
            };
            let users = self.user_files(name);
            // Every user belongs to a container the runtime has, or whose init lives.
            for key in &users {
                if key.starts_with(".ocivol-") {
                    continue;
                }
                let path = self
                    .env
                    .run_root
                    .join("volumes")
                    .join(name)
                    .join("users")
                    .join(key);
                let user = UserRecord::load(&path, key).ok().flatten();
                let init_alive = user
                    .as_ref()
                    .and_then(|u| u.init)
                    .is_some_and(|i| i.is_alive());
                let id = records.get(key).map(|r| r.id.clone());
                let has = id.as_ref().is_some_and(|id| live.contains_key(id));
                if !has && !init_alive {
                    let runtime = match id.as_ref().and_then(|id| runtime_dirs.get(id)) {
                        None => "the runtime has no state for it",
                        Some(true) => "the runtime has it, stopped",
                        Some(false) => "the runtime has a state directory without state.json",
                    };
                    v.push(format!(
                        "volume {name}: user {key} of a container that is gone ({}; {runtime}; record {})",
                        match &user {
                            Some(u) => format!(
                                "owner {:?} alive={}, init {:?}",
                                u.owner.map(|o| o.pid),
                                u.owner.is_some_and(|o| o.is_alive()),
                                u.init.map(|i| i.pid)
                            ),
                            None => "unreadable user record".into(),
                        },
                        if id.is_some() { "present" } else { "missing" }
                    ));
                }
            }
            // One overlay per copy-on-write volume with users, none without.
            if def.base.is_some() {
                let merged = self.env.run_root.join("volumes").join(name).join("merged");
                let mounted: Vec<&common::MountEntry> = host
                    .iter()
                    .filter(|m| Path::new(&m.mount_point) == merged)
                    .collect();
                let want = usize::from(!users.is_empty());
                if mounted.len() != want {
                    v.push(format!(
                        "volume {name}: {} users but {} overlay mount(s) at {}",
                        users.len(),
                        mounted.len(),
                        merged.display()
                    ));
                }
                let devs = superblocks.get(name).cloned().unwrap_or_default();
                if devs.len() > 1 || (users.is_empty() && !devs.is_empty()) {
                    v.push(format!(
                        "volume {name}: {} users, overlay superblocks over its upper directory in \
                         some mount namespace: {devs:?}",
                        users.len()
                    ));
                }
            }
            if def.anonymous {
                let holders: Vec<&ContainerRecord> = users
                    .iter()
                    .filter_map(|k| records.get(k))
                    .filter(|r| live.contains_key(&r.id))
                    .collect();
                if holders.len() != 1 || users.len() != 1 {
                    v.push(format!(
                        "anonymous volume {name}: users {users:?}, of live containers {:?}",
                        holders.iter().map(|r| &r.id).collect::<Vec<_>>()
                    ));
                }
            }
        }

        // Every live container holds its four volumes, and reads them.
        for (id, (status, pid)) in &live {
            let Some(record) = records.values().find(|r| &r.id == id) else {
                v.push(format!(
                    "live container {id} ({status}) has no ocivol record"
                ));
                continue;
            };
            if record.volumes.len() != 4 {
                v.push(format!(
                    "live container {id} holds volumes {:?}, not four",
                    record.volumes
                ));
            }
            for name in &record.volumes {
                let user = self
                    .env
                    .run_root
                    .join("volumes")
                    .join(name)
                    .join("users")
                    .join(record.key());
                if !user.exists() {
                    v.push(format!(
                        "live container {id} ({status}) is not counted as a user of {name}"
                    ));
                }
            }
            v.extend(self.reads_its_volumes(id, *pid, record, &volumes));
        }

        // No mount under ocivol's roots but the overlays of volumes with users.
        for m in &host {
            let p = Path::new(&m.mount_point);
            if !(p.starts_with(&self.env.root) || p.starts_with(&self.env.run_root)) {
                continue;
            }
            let of_volume = p
                .strip_prefix(self.env.run_root.join("volumes"))
                .ok()
                .and_then(|rest| {
                    let mut c = rest.components();
                    let name = c.next()?.as_os_str().to_string_lossy().into_owned();
                    (c.as_path() == Path::new("merged")).then_some(name)
                });
            let counted = of_volume
                .as_ref()
                .is_some_and(|n| !self.user_files(n).is_empty());
            if !counted {
                v.push(format!(
                    "mount {} ({}) with no user record behind it",
                    m.mount_point, m.fstype
                ));
            }
        }
        let staging = self.env.run_root.join("mnt");
        for e in list(&staging) {
            let dir = staging.join(&e);
            v.push(format!(
                "staged mounts left: {} [{}] owner {:?}",
                dir.display(),
                list(&dir).join(" "),
                fs::read_to_string(dir.join("owner")).ok()
            ));
        }

        // Records of containers gone for good are collected.
        for (key, r) in &records {
            let held = volumes
                .keys()
                .any(|n| self.user_files(n).iter().any(|u| u == key));
            if !held && !runtime_dirs.contains_key(&r.id) && !r.bundle.join("config.json").exists()
            {
                v.push(format!(
                    "record of container {} left: the runtime and its bundle are gone",
                    r.id
                ));
            }
        }

        if end {
            for (name, def) in &volumes {
                let users = self.user_files(name);
                if !users.is_empty() {
                    v.push(format!("volume {name} still has users {users:?}"));
                }
                if def.as_ref().is_some_and(|d| d.anonymous) {
                    v.push(format!("anonymous volume {name} left"));
                }
            }
            for r in records.values() {
                v.push(format!(
                    "record of container {} left (its bundle {} {})",
                    r.id,
                    r.bundle.display(),
                    if r.bundle.join("config.json").exists() {
                        "is still there"
                    } else {
                        "is gone"
                    }
                ));
            }
            for (id, has_state) in &runtime_dirs {
                let state = Command::new(RUNC)
                    .arg("--root")
                    .arg(self.runc_root())
                    .args(["state", id])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).replace('\n', ""))
                    .unwrap_or_default();
                v.push(format!(
                    "the runtime still has {id}{}: {state} [history: {}]",
                    if *has_state { "" } else { " (half-created)" },
                    self.history_of(id)
                ));
            }
            for (name, devs) in &superblocks {
                v.push(format!("overlay of {name} still alive somewhere: {devs:?}"));
            }
        }
        v
    }

    /// What a live container sees at its volumes, read through /proc/PID/root: the base's file
    /// in both copy-on-write volumes, on the overlay the host has mounted for each; the named
    /// and anonymous volumes' data directories themselves.
    fn reads_its_volumes(
        &self,
        id: &str,
        pid: i32,
        record: &ContainerRecord,
        volumes: &BTreeMap<String, Option<VolumeDef>>,
    ) -> Vec<String> {
        let mut v = Vec::new();
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        for m in &record.mounts {
            let Some(name) = &m.volume else { continue };
            let inside = root.join(m.destination.strip_prefix("/").unwrap());
            let def = volumes.get(name).cloned().flatten();
            let Some(def) = def else {
                v.push(format!(
                    "live container {id}: its volume {name} does not exist"
                ));
                continue;
            };
            let host = if def.base.is_some() {
                self.env.run_root.join("volumes").join(name).join("merged")
            } else {
                self.env.root.join("volumes").join(name).join("data")
            };
            let (Ok(a), Ok(b)) = (fs::metadata(&inside), fs::metadata(&host)) else {
                v.push(format!(
                    "live container {id}: cannot stat {} or {}",
                    inside.display(),
                    host.display()
                ));
                continue;
            };
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                v.push(format!(
                    "live container {id}: {} is not volume {name} as the host has it ({}:{} vs {}:{})",
                    m.destination.display(),
                    a.dev(),
                    a.ino(),
                    b.dev(),
                    b.ino()
                ));
            }
            if def.base.is_some() {
                match fs::read_to_string(inside.join("file.txt")) {
                    Ok(t) if t == BASE_FILE => {}
                    other => v.push(format!(
                        "live container {id}: {}/file.txt reads {other:?}",
                        m.destination.display()
                    )),
                }
            } else if let Err(e) = fs::read_dir(&inside) {
                v.push(format!(
                    "live container {id}: {} cannot be listed: {e}",
                    m.destination.display()
                ));
            }
        }
        v
    }

    // -----------------------------------------------------------------------------------------
    // The end

    /// Deletes every container (no kills), forgets their bundles, runs one gc and checks that
    /// nothing is left.
    fn finish(&mut self) -> Vec<String> {
        let ids: Vec<String> = self.ids.lock().unwrap().clone();
        self.delete_all(&ids);
        for id in &ids {
            if self.way != Way::Containerd {
                let _ = fs::remove_dir_all(self.bundle(id));
            }
        }
        if self.way == Way::Containerd && !self.engine_leftovers().is_empty() {
            // containerd loses a task whose `ctr run` is killed while the shim creates it (runc
            // has the container, `ctr task rm` finds no task), and a bundle whose shim is killed
            // at some moments. ocivol keeps what such a container holds: it exists, or its engine
            // keeps its bundle. containerd cleans up after dead shims when it starts; what it
            // still leaves is removed as an operator would.
            let lost = self.engine_leftovers();
            println!(
                "chaos {} seed={}: containerd lost {}; restarting it",
                self.way.name(),
                self.seed,
                lost.join(", ")
            );
            let _ = self.quiesce();
            self.ctrd.as_mut().unwrap().restart(&self.env);
            self.delete_all(&ids);
            let still = self.engine_leftovers();
            if !still.is_empty() {
                println!(
                    "  after the restart it still has {}: deleted through the wrapper, bundles removed",
                    still.join(", ")
                );
                let root = self.runc_root();
                for id in self.runtime_dirs().keys() {
                    let _ = self.env.ocivol(&[
                        "runtime",
                        "--root",
                        root.to_str().unwrap(),
                        "delete",
                        "--force",
                        id,
                    ]);
                }
                for id in &ids {
                    let _ = fs::remove_dir_all(self.bundle(id));
                }
            }
        }
        let mut v = self.quiesce();
        let out = self.env.ocivol(&["gc"]);
        if !out.status.success() {
            v.push(format!(
                "gc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        v.extend(self.check(true));
        println!(
            "chaos {} seed={}: after deleting everything and one gc: {} violation(s)",
            self.way.name(),
            self.seed,
            v.len()
        );
        for x in &v {
            println!("  violation: {x}");
        }
        v
    }

    /// What containerd still has of this run's containers once they were all deleted through it:
    /// containers runc has, and bundles.
    fn engine_leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .runtime_dirs()
            .into_keys()
            .map(|id| format!("container {id} (runc has it)"))
            .collect();
        for id in self.ids.lock().unwrap().iter() {
            if self.bundle(id).exists() {
                out.push(format!("the bundle of {id}"));
            }
        }
        out
    }

    /// Deletes every container of `ids` through the way in, with no kill.
    fn delete_all(&self, ids: &[String]) {
        self.parallel(ids, |id| match self.way {
            Way::Runtime => {
                let _ = self.env.runtime(&["delete", "--force", id]);
            }
            Way::Hooks => {
                let _ = self.env.runc_cmd(&["delete", "--force", id]).output();
            }
            Way::Containerd => {
                let c = self.ctrd.as_ref().unwrap();
                let _ = c.ctr(&["t", "rm", "-f", id]).output();
                let _ = c.ctr(&["c", "rm", id]).output();
            }
        });
    }

    fn print_stats(&self) {
        let st = self.stats.lock().unwrap();
        let kills: Vec<String> = st
            .kills
            .iter()
            .map(|(k, (planned, landed))| format!("{k:?} {landed}/{planned}"))
            .collect();
        let ops: Vec<String> = st
            .operator
            .iter()
            .map(|(k, (runs, killed))| format!("{k} {runs} (killed {killed})"))
            .collect();
        println!(
            "chaos {} seed={}: creates {} (succeeded {}, failed unkilled {}), deletes {}, \
             kills landed/planned: {}; operator: {}; gc lines {}",
            self.way.name(),
            self.seed,
            st.creates,
            st.created,
            st.create_failed,
            st.deletes,
            kills.join(", "),
            ops.join(", "),
            st.gc_lines
        );
        for (what, (n, ms)) in &st.took {
            println!(
                "  {what}: {n} took {} ms on average",
                ms / u128::from((*n).max(1))
            );
        }
        for e in &st.operator_errors {
            println!("  operator error: {e}");
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Whatever is still at work, then every container, then containerd (its Drop removes
        // tasks, shims and their sockets), then mounts (Env's Drop), then cgroups.
        for (pid, _) in self.busy() {
            if let Some(h) = Held::grab(pid) {
                h.kill();
            }
        }
        let root = self.runc_root();
        for id in self.runtime_dirs().keys() {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id])
                .output();
        }
        self.ctrd.take();
        remove_cgroups(&self.prefix);
    }
}

/// Waits for a command, killing it if it hangs.
fn wait(child: &mut Child) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung for {COMMAND_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every path under `dir` (not following symlinks, not crossing into mounts' contents: a
/// merged overlay shows the base).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(top) = fs::symlink_metadata(dir) else {
        return out;
    };
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if let Ok(m) = fs::symlink_metadata(&p)
                && m.is_dir()
                && m.dev() == top.dev()
            {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// The overlay superblocks (device numbers) whose upper directory is a volume's under
/// `volumes`, in every mount namespace of the host: volume -> devices.
fn overlay_superblocks(volumes: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen_ns = BTreeSet::new();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let needle = format!("upperdir={}/", volumes.display());
    for pid in all_pids() {
        let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if !seen_ns.insert(ns) {
            continue;
        }
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            if f.get(sep + 1) != Some(&"overlay") {
                continue;
            }
            let opts = f.get(sep + 3).copied().unwrap_or("");
            let Some(rest) = opts.split(needle.as_str()).nth(1) else {
                continue;
            };
            let name = rest.split('/').next().unwrap_or("").to_string();
            out.entry(name).or_default().insert(f[2].to_string());
        }
    }
    out
}

/// Removes the cgroups runc made for containers of this run that no runc delete removed (a
/// create killed half-way leaves them): directories named `PREFIX…` under /sys/fs/cgroup.
fn remove_cgroups(prefix: &str) {
    fn walk(dir: &Path, prefix: &str, depth: usize) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = fs::remove_dir(e.path());
            } else if depth > 0 {
                walk(&e.path(), prefix, depth - 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), prefix, 4);
}
