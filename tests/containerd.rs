//! End to end under a real containerd daemon that the test starts (never the system one):
//! `ctr run --runc-binary ocivol-runtime --annotation io.ocivol.volumes=…`.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Env, OCIVOL, ok};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";

/// A containerd daemon of the test's own, with ocivol's state pointed at the test's directories
/// through the environment (the shim passes it on to the runtime binary).
struct Containerd {
    dir: PathBuf,
    daemon: Child,
    wrapper: PathBuf,
}

impl Containerd {
    fn start(env: &Env) -> Containerd {
        let dir = env.dir.path().join("containerd");
        fs::create_dir_all(dir.join("fifo")).unwrap();
        fs::create_dir_all(dir.join("runc")).unwrap();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = dir.display()
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        // The name the shim calls: the binary detects it from argv[0].
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let wrapper = bin.join("ocivol-runtime");
        symlink(OCIVOL, &wrapper).unwrap();
        let log = fs::File::create(dir.join("daemon.log")).unwrap();
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
        // The socket appears once every plugin is loaded; `ctr version` on a missing socket
        // would block for 10 s, so wait for the file first.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.join("c.sock").exists() {
            if let Some(status) = daemon.try_wait().unwrap() {
                panic!(
                    "containerd exited ({status}): {}",
                    fs::read_to_string(dir.join("daemon.log")).unwrap()
                );
            }
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
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

    fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("-a")
            .arg(self.dir.join("c.sock"))
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `ctr run` through the wrapper, with runc's state and the fifos under the test's dir.
    fn run(
        &self,
        flags: &[&str],
        annotation: &str,
        rootfs: &Path,
        id: &str,
        cmd: &[&str],
    ) -> Command {
        let mut c = self.ctr(&["run"]);
        c.args(flags)
            .arg("--fifo-dir")
            .arg(self.dir.join("fifo"))
            .arg("--runc-root")
            .arg(self.dir.join("runc"))
            .args(["--rootfs", "--env", "PATH=/bin", "--runc-binary"])
            .arg(&self.wrapper)
            .arg("--annotation")
            .arg(format!("io.ocivol.volumes={annotation}"))
            .arg(rootfs)
            .arg(id)
            .args(cmd);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Every task and container of every namespace, then the daemon, then stray shims.
        let lines = |out: std::io::Result<Output>| -> Vec<String> {
            out.map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        for ns in lines(self.ctr(&["ns", "ls", "-q"]).output()) {
            for t in lines(self.ctr(&["-n", &ns, "t", "ls", "-q"]).output()) {
                let _ = self.ctr(&["-n", &ns, "t", "rm", "-f", &t]).output();
            }
            for c in lines(self.ctr(&["-n", &ns, "c", "ls", "-q"]).output()) {
                let _ = self.ctr(&["-n", &ns, "c", "rm", &c]).output();
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.daemon.wait();
        let address = format!("-address {}", self.dir.join("c.sock").display());
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(&address)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[test]
fn ctr_run_with_the_wrapper_gets_volumes_and_releases_them() {
    let Some(env) = Env::new("ctr_run_with_the_wrapper_gets_volumes_and_releases_them") else {
        return;
    };
    let ctrd = Containerd::start(&env);
    let ann = format!("cow:/data:base={};named:/named;/anon", env.base.display());

    let script = "cat /data/file.txt && echo x > /data/new.txt && echo n > /named/n.txt && ls /anon && echo done";
    let out = ctrd
        .run(
            &["--rm"],
            &ann,
            &env.rootfs,
            "ocivol-ctrd-1",
            &["sh", "-c", script],
        )
        .output()
        .unwrap();
    assert_eq!(ok(&out, "ctr run --rm"), "from the base\ndone\n");
    assert_eq!(env.users("cow"), 0, "released when ctr run --rm ended");
    assert_eq!(env.users("named"), 0);
    assert_eq!(env.overlays("cow"), 0, "the overlay is unmounted");
    assert_eq!(
        fs::read_to_string(env.store().data_dir("named").join("n.txt")).unwrap(),
        "n\n"
    );
    assert_eq!(
        fs::read_to_string(env.store().upper_dir("cow").join("new.txt")).unwrap(),
        "x\n"
    );
    assert!(
        !env.base.join("new.txt").exists(),
        "the base is never written"
    );
    let volumes: Vec<String> = fs::read_dir(env.root.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        volumes.len(),
        2,
        "the anonymous volume went with its container: {volumes:?}"
    );

    // Detached: held while the task lives, released by `ctr task rm`.
    let out = ctrd
        .run(
            &["-d"],
            &ann,
            &env.rootfs,
            "ocivol-ctrd-2",
            &["sleep", "600"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    assert_eq!(env.users("cow"), 1);
    assert_eq!(env.overlays("cow"), 1);
    ok(
        &ctrd
            .ctr(&["t", "kill", "-s", "SIGKILL", "ocivol-ctrd-2"])
            .output()
            .unwrap(),
        "kill",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = ctrd.ctr(&["t", "rm", "ocivol-ctrd-2"]).output().unwrap();
        if out.status.success() {
            break;
        }
        // The task may not have been reaped yet.
        assert!(
            Instant::now() < deadline,
            "task rm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(env.users("cow"), 0);
    assert_eq!(env.overlays("cow"), 0);
    ok(
        &ctrd.ctr(&["c", "rm", "ocivol-ctrd-2"]).output().unwrap(),
        "container rm",
    );
    assert!(env.mounts_here().is_empty(), "{:?}", env.mounts_here());
}

#[test]
fn ctr_shows_a_bad_annotation_as_one_line() {
    let Some(env) = Env::new("ctr_shows_a_bad_annotation_as_one_line") else {
        return;
    };
    let ctrd = Containerd::start(&env);
    let out = ctrd
        .run(
            &["--rm"],
            "v:relative",
            &env.rootfs,
            "ocivol-ctrd-3",
            &["true"],
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "ocivol: annotation io.ocivol.volumes: entry \"v:relative\": destination \"relative\" is not an absolute path"
        ),
        "ctr shows ocivol's error: {stderr}"
    );
    assert!(!env.root.exists(), "no state was created");
    assert!(env.mounts_here().is_empty());
}
