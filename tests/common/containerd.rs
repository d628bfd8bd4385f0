//! A containerd daemon of the test's own (never the system one), and `ctr` against it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{Env, OCIVOL, ok};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";

/// Where containerd 1.6's shims put their sockets, whatever `state` says (MACHINE.md).
pub const SHIM_SOCKETS: &str = "/run/containerd/s";

/// The sockets a shim of the daemon at `address` has or had for container `id` of `namespace`:
/// containerd 1.6 names them `sha256(ADDRESS/NAMESPACE/ID)` (`runtime/v2/shim/util_unix.go`,
/// `SocketAddress`) in [`SHIM_SOCKETS`], and a `.debug` one beside it. A shim that is killed
/// leaves them there.
pub fn shim_socket_paths(address: &Path, namespace: &str, id: &str) -> [PathBuf; 2] {
    let digest = Sha256::digest(format!("{}/{namespace}/{id}", address.display()).as_bytes());
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    [
        Path::new(SHIM_SOCKETS).join(&name),
        Path::new(SHIM_SOCKETS).join(format!("{name}.debug")),
    ]
}

/// The `-id` of every process started with `-address ADDRESS` (the shims of that daemon).
pub fn shims_of(address: &Path) -> Vec<(i32, Option<String>)> {
    let needle = format!("-address {}", address.display());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            let id = cmdline
                .split(" -id ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .map(str::to_string);
            found.push((pid, id));
        }
    }
    found
}

/// A containerd daemon of the test's own, with ocivol's state pointed at the test's directories
/// through the environment (the shim passes it on to the runtime binary).
pub struct Containerd {
    pub dir: PathBuf,
    daemon: Child,
    wrapper: PathBuf,
}

impl Containerd {
    pub fn start(env: &Env) -> Containerd {
        Containerd::start_with(env, "", false)
    }

    /// The path of the config the daemon runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Starts the daemon with `extra` appended to its config.toml (tables merged into it), and the
    /// CRI plugin enabled when `cri` is set.
    pub fn start_with(env: &Env, extra: &str, cri: bool) -> Containerd {
        let dir = env.dir.path().join("containerd");
        fs::create_dir_all(dir.join("fifo")).unwrap();
        fs::create_dir_all(dir.join("runc")).unwrap();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  {cri}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  {overlayfs}
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = dir.display(),
            cri = if cri {
                ""
            } else {
                "\"io.containerd.grpc.v1.cri\","
            },
            // The CRI plugin needs a snapshotter; it mounts nothing until a pod is run.
            overlayfs = if cri {
                ""
            } else {
                "\"io.containerd.snapshotter.v1.overlayfs\","
            },
        );
        let config = format!("{config}\n{extra}\n");
        fs::write(dir.join("config.toml"), config).unwrap();
        // The name the shim calls: the binary detects it from argv[0].
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let wrapper = bin.join("ocivol-runtime");
        symlink(OCIVOL, &wrapper).unwrap();
        let daemon = spawn_daemon(env, &dir);
        let c = Containerd {
            dir,
            daemon,
            wrapper,
        };
        ok(
            &c.ctr(&["--connect-timeout", "5s", "version"])
                .output()
                .unwrap(),
            "ctr version",
        );
        c
    }

    /// Stops the daemon (SIGTERM, as a service manager does) and starts it again with the same
    /// config and state: on start containerd cleans up after the shims that are gone.
    pub fn restart(&mut self, env: &Env) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        let _ = fs::remove_file(self.dir.join("c.sock"));
        self.daemon = spawn_daemon(env, &self.dir);
        ok(
            &self
                .ctr(&["--connect-timeout", "5s", "version"])
                .output()
                .unwrap(),
            "ctr version",
        );
    }

    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("-a")
            .arg(self.dir.join("c.sock"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `ctr run` through the wrapper with `io.ocivol.volumes=annotation`, runc's state and the
    /// fifos under the test's dir.
    pub fn run(
        &self,
        flags: &[&str],
        annotation: &str,
        rootfs: &Path,
        id: &str,
        cmd: &[&str],
    ) -> Command {
        self.run_with(flags, &[("io.ocivol.volumes", annotation)], rootfs, id, cmd)
    }

    /// `ctr run` through the wrapper with any annotations (and any `ctr run` flags, `-n NS`
    /// before `run` goes in `flags` as `ctr` global flags are not accepted there: use
    /// [`Containerd::ctr`] for those).
    pub fn run_with(
        &self,
        flags: &[&str],
        annotations: &[(&str, &str)],
        rootfs: &Path,
        id: &str,
        cmd: &[&str],
    ) -> Command {
        let mut c = self.ctr_run(flags);
        c.arg("--runc-binary").arg(&self.wrapper);
        for (k, v) in annotations {
            c.arg("--annotation").arg(format!("{k}={v}"));
        }
        c.arg(rootfs).arg(id).args(cmd);
        c
    }

    /// `ctr run FLAGS` with runc's state and the fifos under the test's dir, without ocivol; the
    /// caller adds `--runc-binary`, annotations, the rootfs, ID and command.
    pub fn ctr_run(&self, flags: &[&str]) -> Command {
        let mut c = Command::new(CTR);
        c.arg("-a")
            .arg(self.dir.join("c.sock"))
            .stdin(Stdio::null());
        // `-n NS` is a global flag of ctr: it must come before `run`.
        let (global, local): (Vec<&str>, Vec<&str>) = split_namespace(flags);
        c.args(global).arg("run").args(local);
        c.arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .arg("--runc-root")
            .arg(self.dir.join("runc"))
            .args(["--rootfs", "--env", "PATH=/bin"]);
        c
    }
}

/// Starts containerd with `DIR/config.toml` and ocivol's state in the environment (the shim
/// passes it on to the runtime binary); returns once its socket is there.
fn spawn_daemon(env: &Env, dir: &Path) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    let mut daemon = Command::new(CONTAINERD)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("OCIVOL_CONFIG", &env.config)
        .env("OCIVOL_ROOT", &env.root)
        .env("OCIVOL_RUN_ROOT", &env.run_root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("containerd must be installed (make test installs it)");
    // The socket appears once every plugin is loaded; `ctr version` on a missing socket would
    // block for 10 s, so wait until it takes a connection (its file exists from bind(), a moment
    // before listen()).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(dir.join("c.sock")).is_err() {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!(
                "containerd exited ({status}): {}",
                fs::read_to_string(dir.join("daemon.log")).unwrap()
            );
        }
        assert!(Instant::now() < deadline, "containerd did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon
}

/// Splits `-n NS` out of `flags`.
fn split_namespace<'a>(flags: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut global = Vec::new();
    let mut local = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if *f == "-n" {
            global.push(*f);
            global.extend(it.next());
        } else {
            local.push(*f);
        }
    }
    (global, local)
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Every task and container of every namespace, then the daemon, then stray shims, then
        // the sockets those shims left in /run/containerd/s.
        let lines = |out: std::io::Result<Output>| -> Vec<String> {
            out.map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        let address = self.dir.join("c.sock");
        // (namespace, id) of every container this daemon may have had a shim for.
        let mut ids: Vec<(String, String)> = Vec::new();
        let namespaces = lines(self.ctr(&["ns", "ls", "-q"]).output());
        for ns in &namespaces {
            for t in lines(self.ctr(&["-n", ns, "t", "ls", "-q"]).output()) {
                let _ = self.ctr(&["-n", ns, "t", "rm", "-f", &t]).output();
            }
            for c in lines(self.ctr(&["-n", ns, "c", "ls", "-q"]).output()) {
                let _ = self.ctr(&["-n", ns, "c", "rm", &c]).output();
                ids.push((ns.clone(), c));
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        for (pid, _) in shims_of(&address) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Bundles and runc state name containers too (one whose container record is gone), and
        // so does the daemon's log for every shim it started ("starting signal loop" with the
        // bundle's path), whether or not anything is left of that container.
        let log = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let tasks = format!(
            "{}/",
            self.dir
                .join("state/io.containerd.runtime.v2.task")
                .display()
        );
        for line in log.lines() {
            for part in line.split(&tasks).skip(1) {
                let mut it = part.split(|c: char| c == '/' || c == '"' || c.is_whitespace());
                if let (Some(ns), Some(id)) = (it.next(), it.next())
                    && !ns.is_empty()
                    && !id.is_empty()
                {
                    ids.push((ns.to_string(), id.to_string()));
                }
            }
        }
        for base in [
            self.dir.join("state/io.containerd.runtime.v2.task"),
            self.dir.join("runc"),
        ] {
            for ns in fs::read_dir(&base).into_iter().flatten().flatten() {
                let ns_name = ns.file_name().to_string_lossy().into_owned();
                for c in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    ids.push((
                        ns_name.clone(),
                        c.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        ids.sort();
        ids.dedup();
        for (ns, id) in ids {
            for socket in shim_socket_paths(&address, &ns, &id) {
                let _ = fs::remove_file(socket);
            }
        }
    }
}

impl Containerd {
    /// runc's `--root` for a containerd namespace (what the shim passes to the runtime).
    pub fn runc_root(&self, namespace: &str) -> PathBuf {
        self.dir.join("runc").join(namespace)
    }

    /// Runs a shell command in a running task, through runc directly.
    pub fn exec(&self, namespace: &str, id: &str, script: &str) -> Output {
        Command::new(super::RUNC)
            .arg("--root")
            .arg(self.runc_root(namespace))
            .args(["exec", id, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Kills a task, removes it (which deletes it in the runtime) and its container.
    pub fn remove(&self, namespace: &str, id: &str) {
        let _ = self
            .ctr(&["-n", namespace, "t", "kill", "-s", "SIGKILL", id])
            .output();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self
                .ctr(&["-n", namespace, "t", "rm", id])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "task rm {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ok(
            &self
                .ctr(&["-n", namespace, "c", "rm", id])
                .output()
                .unwrap(),
            "container rm",
        );
    }
}
