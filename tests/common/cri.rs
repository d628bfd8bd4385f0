//! A containerd of the test's own with its CRI plugin enabled (never the system one), driven
//! through the CRI v1 API (`runtime.v1`) the way the kubelet drives it: RunPodSandbox with the
//! `ocivol` runtime handler, CreateContainer, StartContainer, ExecSync, StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox.
//!
//! The daemon's config is the drop-in that docs/INSTALL.md tells users to merge
//! (`packaging/containerd/ocivol.toml`, read here as it is) with two test-only changes, both on
//! the `ocivol` handler's options: `BinaryName` is a script that runs ocivol with this test's
//! config and state roots instead of `/usr/local/bin/ocivol-runtime` with the host's, and runc's
//! `Root` is in the test's directory (so is the `runc` handler's). The runtime handler the pods
//! ask for is the one `packaging/kubernetes/runtimeclass.yaml` names.
//!
//! Pods use the host's network, so no CNI is needed (the CNI directories are empty ones of the
//! test's). The image, also the sandbox image, is a busybox the test builds from busybox-static
//! and imports with `ctr images import`: nothing is pulled. Root here lacks CAP_SYS_RESOURCE,
//! so `restrict_oom_score_adj = true` (MACHINE.md).
//!
//! [`Cri::start_with`] runs another containerd release (a directory with its `containerd`,
//! `ctr` and `containerd-shim-runc-v2`, first on the daemon's PATH) with a config the test writes
//! (tests/setup.rs: a node's config.toml after `ocivol setup containerd`).
//!
//! Dropping a [`Cri`] (also when the test panics) removes every pod as the kubelet would, stops
//! the daemon by its PID, kills the shims it left, removes their sockets from
//! `/run/containerd/s` (containerd 1.6, 1.7 and 2.1 put them there whatever `state` says; only
//! the ones named after this daemon's address are touched) and unmounts everything under its
//! directory.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Env, OCIVOL, ok, unmount_all_under};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
/// Where Debian 12's containerd (1.6) has its binaries.
pub const INSTALLED_BIN: &str = "/usr/bin";

/// The containerd namespace of the CRI plugin.
pub const NAMESPACE: &str = "k8s.io";
/// The image the test builds and imports; `localhost/` so that nothing could be pulled for it.
pub const IMAGE: &str = "localhost/ocivol-test/busybox:1";

/// The drop-in users merge into /etc/containerd/config.toml (docs/INSTALL.md).
pub const DROP_IN: &str = include_str!("../../packaging/containerd/ocivol.toml");
/// The RuntimeClass pods choose ocivol with (docs/INSTALL.md).
pub const RUNTIME_CLASS: &str = include_str!("../../packaging/kubernetes/runtimeclass.yaml");
/// The line of the drop-in that names the installed binary; the test puts its script there.
const BINARY_NAME_LINE: &str = "BinaryName = \"/usr/local/bin/ocivol-runtime\"";

/// Busybox applets the image has.
const APPLETS: &[&str] = &[
    "sh",
    "sleep",
    "true",
    "false",
    "cat",
    "ls",
    "id",
    "touch",
    "stat",
    "mkdir",
    "echo",
    "test",
    "rm",
    "mv",
    "ln",
    "chmod",
    "grep",
    "head",
    "wc",
    "sha256sum",
    "mount",
];

/// The uid and gid of the image's non-root user `app`, whose home has directories prepared for
/// it (`/home/app/named`, `/home/app/anon`, each with a file `from-image`), as an image that
/// prepares `/var/lib/postgresql/data` for its user would.
pub const APP_UID: u32 = 1000;

/// The runtime handler `packaging/kubernetes/runtimeclass.yaml` names.
pub fn handler() -> &'static str {
    RUNTIME_CLASS
        .lines()
        .find_map(|l| l.strip_prefix("handler:"))
        .map(str::trim)
        .expect("runtimeclass.yaml names a handler")
}

/// Skips (with a line saying why) when containerd or ctr is not installed.
pub fn require_containerd(test: &str) -> Option<()> {
    if Path::new(CONTAINERD).exists() && Path::new(CTR).exists() {
        Some(())
    } else {
        eprintln!("{test}: skipped: requires containerd and ctr (make deps installs them)");
        None
    }
}

/// A finished ExecSync.
#[derive(Debug)]
pub struct Exec {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A pod the test ran: its sandbox ID and the config the kubelet would send again with each
/// CreateContainer.
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

pub struct Cri {
    /// The daemon's directory: root, state, socket, config, runc root, CNI dirs, image.
    pub dir: PathBuf,
    address: PathBuf,
    /// The directory of the release's `ctr`.
    bin: PathBuf,
    daemon: Daemon,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// Every sandbox and container ID this daemon gave out, for their shim sockets.
    ids: RefCell<BTreeSet<String>>,
}

/// The daemon's process, killed if dropped before the [`Cri`] that stops it gracefully exists
/// (a start that fails half-way).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pods of this test process, for UIDs no other pod has.
static PODS: AtomicU32 = AtomicU32::new(0);

impl Cri {
    /// Starts the daemon for this test's ocivol state, imports the image and waits until the
    /// CRI says the runtime is ready and the image is there.
    pub fn start(env: &Env) -> Cri {
        Cri::start_with(env, Path::new(INSTALLED_BIN), |dir, wrapper| {
            let config = daemon_config(dir, wrapper);
            fs::write(dir.join("config.toml"), config).unwrap();
        })
    }

    /// The directory of a daemon of this test (`DIR/cri`): root, state, socket, config.toml,
    /// runc roots, CNI dirs, image, and `bin/` with the `ocivol-runtime` script.
    pub fn dir_of(env: &Env) -> PathBuf {
        env.dir.path().join("cri")
    }

    /// Starts the containerd of `bin` (its `containerd`, `ctr` and shim) after `write_config`
    /// has written `DIR/config.toml`, given the daemon's directory and the `ocivol-runtime`
    /// script (see [`Cri::dir_of`]). `DIR/bin` comes first on the daemon's PATH, then `bin`,
    /// then the system's directories.
    pub fn start_with(env: &Env, bin: &Path, write_config: impl FnOnce(&Path, &Path)) -> Cri {
        let dir = Cri::dir_of(env);
        for d in ["cni/bin", "cni/conf", "runc", "pods"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let wrapper = write_wrapper(env, &dir.join("bin"));
        write_config(&dir, &wrapper);
        let address = dir.join("c.sock");
        let log = fs::File::create(dir.join("daemon.log")).unwrap();
        let path = format!(
            "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            dir.join("bin").display(),
            bin.display()
        );
        let mut daemon = Daemon(
            Command::new(bin.join("containerd"))
                .arg("--config")
                .arg(dir.join("config.toml"))
                .env("PATH", path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("containerd must be installed (make test installs it)"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        // The socket's file exists from bind(), before listen(): wait until it takes a connection.
        while std::os::unix::net::UnixStream::connect(&address).is_err() {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                panic!(
                    "containerd exited ({status}): {}",
                    fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt.block_on(connect(address.clone()));
        let cri = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            dir,
            address,
            bin: bin.to_path_buf(),
            daemon,
            rt,
            ids: RefCell::new(BTreeSet::new()),
        };
        cri.wait_ready();
        cri.import_image();
        cri
    }

    /// The daemon's log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Waits until the CRI answers Status with RuntimeReady (NetworkReady stays false: there is
    /// no CNI, and host-network pods need none).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut c = self.runtime.clone();
            let status = self
                .rt
                .block_on(c.status(cri::StatusRequest { verbose: false }));
            let ready = status.as_ref().ok().and_then(|s| {
                s.get_ref().status.as_ref().map(|st| {
                    st.conditions
                        .iter()
                        .any(|c| c.r#type == "RuntimeReady" && c.status)
                })
            });
            if ready == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the CRI is not ready: {status:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Builds the image and imports it into the CRI's namespace, then waits until the CRI's own
    /// image service has it (as the kubelet's ImageStatus would see it; nothing is pulled).
    fn import_image(&self) {
        let tar = build_image(&self.dir.join("image"));
        ok(
            &Command::new(self.bin.join("ctr"))
                .arg("-a")
                .arg(&self.address)
                .args(["-n", NAMESPACE, "images", "import"])
                .arg(&tar)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
            "ctr images import",
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = self.images.clone();
            let status = self.rt.block_on(c.image_status(cri::ImageStatusRequest {
                image: Some(image_spec()),
                verbose: false,
            }));
            if status.as_ref().is_ok_and(|s| s.get_ref().image.is_some()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the CRI does not see the imported image: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The config the kubelet sends for a host-network pod with these annotations, with its own
    /// name, UID and log directory. `namespace` is the Kubernetes namespace.
    pub fn pod_config(
        &self,
        name: &str,
        namespace: &str,
        annotations: &[(&str, &str)],
    ) -> cri::PodSandboxConfig {
        // A UUID like the API server's, from this process's ID and its count of pods.
        let n = PODS.fetch_add(1, Ordering::Relaxed);
        let uid = format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id());
        let log_directory = self
            .dir
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        fs::create_dir_all(&log_directory).unwrap();
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", namespace),
            ("io.kubernetes.pod.uid", uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut all: HashMap<String, String> = [
            ("kubernetes.io/config.source", "api"),
            ("kubernetes.io/config.seen", "2025-01-01T00:00:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.extend(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid,
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            // The kubelet leaves it empty for a host-network pod (runc refuses a hostname without
            // a UTS namespace of the container's own).
            hostname: String::new(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels,
            annotations: all,
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with the `ocivol` handler.
    pub fn run_pod(&self, config: cri::PodSandboxConfig) -> Result<Pod, tonic::Status> {
        self.run_pod_on(handler(), config)
    }

    /// RunPodSandbox with a runtime handler (a RuntimeClass's `handler`).
    pub fn run_pod_on(
        &self,
        runtime_handler: &str,
        config: cri::PodSandboxConfig,
    ) -> Result<Pod, tonic::Status> {
        let mut c = self.runtime.clone();
        let id = self
            .rt
            .block_on(c.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.to_string(),
            }))?
            .into_inner()
            .pod_sandbox_id;
        self.ids.borrow_mut().insert(id.clone());
        Ok(Pod { id, config })
    }

    /// A pod with these annotations, which must start.
    pub fn pod(&self, name: &str, namespace: &str, annotations: &[(&str, &str)]) -> Pod {
        let config = self.pod_config(name, namespace, annotations);
        self.run_pod(config)
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {}", e.message()))
    }

    /// A container config as the kubelet writes it: the image, `sh -c SCRIPT`, a log path in the
    /// pod's log directory, the kubelet's labels and annotations, the pod's namespaces.
    pub fn container(&self, pod: &Pod, name: &str, script: &str) -> cri::ContainerConfig {
        let meta = pod.config.metadata.clone().unwrap_or_default();
        let labels: HashMap<String, String> = [
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", meta.name.as_str()),
            ("io.kubernetes.pod.namespace", meta.namespace.as_str()),
            ("io.kubernetes.pod.uid", meta.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let annotations: HashMap<String, String> = [
            ("io.kubernetes.container.hash", "0"),
            ("io.kubernetes.container.restartCount", "0"),
            (
                "io.kubernetes.container.terminationMessagePath",
                "/dev/termination-log",
            ),
            ("io.kubernetes.container.terminationMessagePolicy", "File"),
            ("io.kubernetes.pod.terminationGracePeriod", "30"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(image_spec()),
            command: vec!["sh".into(), "-c".into(), script.into()],
            labels,
            annotations,
            log_path: format!("{name}/0.log"),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// CreateContainer then StartContainer (runc's `create` runs in StartContainer). On an
    /// error the container may exist (created, not started): removing its pod removes it.
    pub fn start_container(
        &self,
        pod: &Pod,
        config: cri::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let mut c = self.runtime.clone();
        let id = self
            .rt
            .block_on(c.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }))?
            .into_inner()
            .container_id;
        self.ids.borrow_mut().insert(id.clone());
        self.rt
            .block_on(c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            }))?;
        Ok(id)
    }

    /// A container `sh -c SCRIPT` in the pod, which must start.
    pub fn run(&self, pod: &Pod, name: &str, script: &str) -> String {
        let config = self.container(pod, name, script);
        self.start_container(pod, config)
            .unwrap_or_else(|e| panic!("CreateContainer/StartContainer {name}: {}", e.message()))
    }

    /// ExecSync of `sh -c SCRIPT` in a running container.
    pub fn exec(&self, container: &str, script: &str) -> Exec {
        let mut c = self.runtime.clone();
        let out = self
            .rt
            .block_on(c.exec_sync(cri::ExecSyncRequest {
                container_id: container.to_string(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 20,
            }))
            .unwrap_or_else(|e| panic!("ExecSync {script:?}: {}", e.message()))
            .into_inner();
        Exec {
            code: out.exit_code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// ExecSync that must succeed; its stdout.
    pub fn exec_ok(&self, container: &str, script: &str) -> String {
        let e = self.exec(container, script);
        assert_eq!(e.code, 0, "{script:?} in {container}: {e:?}");
        e.stdout
    }

    /// Removes a pod the way the kubelet does: StopContainer and RemoveContainer for each of its
    /// containers, then StopPodSandbox and RemovePodSandbox.
    pub fn remove_pod(&self, pod_id: &str) -> Result<(), tonic::Status> {
        let mut c = self.runtime.clone();
        let containers = self
            .rt
            .block_on(c.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: pod_id.to_string(),
                    ..Default::default()
                }),
            }))?
            .into_inner()
            .containers;
        for ctr in containers {
            self.ids.borrow_mut().insert(ctr.id.clone());
            self.rt
                .block_on(c.stop_container(cri::StopContainerRequest {
                    container_id: ctr.id.clone(),
                    timeout: 0,
                }))?;
            self.rt
                .block_on(c.remove_container(cri::RemoveContainerRequest {
                    container_id: ctr.id,
                }))?;
        }
        self.rt
            .block_on(c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            }))?;
        self.rt
            .block_on(c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            }))?;
        Ok(())
    }

    /// Every pod the CRI knows.
    pub fn pods(&self) -> Result<Vec<String>, tonic::Status> {
        let mut c = self.runtime.clone();
        let pods = self
            .rt
            .block_on(c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }))?
            .into_inner()
            .items;
        Ok(pods.into_iter().map(|p| p.id).collect())
    }

    /// Removes every pod (see [`Cri::remove_pod`]); panics on an error.
    pub fn remove_all_pods(&self) {
        for id in self.pods().expect("ListPodSandbox") {
            self.ids.borrow_mut().insert(id.clone());
            self.remove_pod(&id)
                .unwrap_or_else(|e| panic!("removing pod {id}: {}", e.message()));
        }
    }

    /// The bundle the runc shim made for a sandbox or container.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir
            .join("state/io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }

    /// The annotations of a sandbox's or container's config.json, as runc (and ocivol) got them.
    pub fn spec_annotations(&self, id: &str) -> serde_json::Map<String, Value> {
        let path = self.bundle(id).join("config.json");
        let spec: Value = serde_json::from_slice(
            &fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap();
        spec["annotations"].as_object().cloned().unwrap_or_default()
    }

    /// The sockets in /run/containerd/s that this daemon's shims have or had: containerd 1.6
    /// names them `sha256(ADDRESS/NAMESPACE/ID)` (`runtime/v2/shim/util_unix.go`,
    /// `SocketAddress`), ID the sandbox's (its containers share its shim) or a container's.
    pub fn shim_socket_candidates(&self) -> Vec<PathBuf> {
        self.shims();
        let mut paths = Vec::new();
        for id in self.ids.borrow().iter() {
            paths.extend(super::containerd::shim_socket_paths(
                &self.address,
                NAMESPACE,
                id,
            ));
        }
        paths
    }

    /// Those of [`Cri::shim_socket_candidates`] that exist now.
    pub fn shim_sockets(&self) -> Vec<PathBuf> {
        self.shim_socket_candidates()
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }

    /// The PIDs of processes started with this daemon's address (its shims).
    fn shims(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for (pid, id) in super::containerd::shims_of(&self.address) {
            pids.push(pid);
            // The shim's own -id is a socket name source too.
            if let Some(id) = id {
                self.ids.borrow_mut().insert(id);
            }
        }
        pids
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // As the kubelet would: every container and sandbox stopped and removed.
        if let Ok(pods) = self.pods() {
            for id in pods {
                self.ids.borrow_mut().insert(id.clone());
                if let Err(e) = self.remove_pod(&id) {
                    eprintln!("cleanup: removing pod {id}: {}", e.message());
                }
            }
        }
        let daemon = &mut self.daemon.0;
        let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
        for shim in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(shim),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Anything runc still has under this daemon's runc root (a shim killed above).
        let runc_root = self.dir.join("runc").join(NAMESPACE);
        if let Ok(out) = Command::new(super::RUNC)
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new(super::RUNC)
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "--force", id])
                    .output();
            }
        }
        for socket in self.shim_sockets() {
            let _ = fs::remove_file(socket);
        }
        unmount_all_under(&self.dir);
    }
}

/// The script the `ocivol` handler runs as `BinaryName`: ocivol as the runtime, pointed at the
/// test's config and state roots (an installed ocivol reads /etc/ocivol/config.toml and its
/// default roots instead).
fn write_wrapper(env: &Env, bin: &Path) -> PathBuf {
    fs::create_dir_all(bin).unwrap();
    let wrapper = bin.join("ocivol-runtime");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# containerd's runc shim runs this as BinaryName: ocivol with the test's \
             config and state.\nexec '{}' --config '{}' --root '{}' --run-root '{}' runtime \"$@\"\n",
            OCIVOL,
            env.config.display(),
            env.root.display(),
            env.run_root.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The daemon's config.toml: its own root, state, sockets and plugin dirs; the CRI plugin with
/// the test's image as sandbox image, empty CNI dirs, `restrict_oom_score_adj`, a streaming
/// server on a free loopback port (tests run side by side); then the drop-in's tables.
fn daemon_config(dir: &Path, wrapper: &Path) -> String {
    let d = dir.display();
    let head = format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{d}/cni/bin"
  conf_dir = "{d}/cni/conf"
"#
    );
    // The drop-in as docs/INSTALL.md merges it: its tables, without its `version` line.
    let tables: String = DROP_IN
        .lines()
        .filter(|l| !l.starts_with("version"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        tables.matches(BINARY_NAME_LINE).count(),
        1,
        "the drop-in names the installed binary once:\n{DROP_IN}"
    );
    let tables = tables.replace(
        BINARY_NAME_LINE,
        &format!(
            "BinaryName = \"{}\"\n    Root = \"{d}/runc\"",
            wrapper.display()
        ),
    );
    format!(
        "{head}\n{tables}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  Root = \"{d}/runc\"\n"
    )
}

/// A tonic channel to a unix socket (the URI is a placeholder: every connection goes to the
/// socket).
async fn connect(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://localhost")
        .timeout(Duration::from_secs(60))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's socket")
}

fn image_spec() -> cri::ImageSpec {
    cri::ImageSpec {
        image: IMAGE.to_string(),
        ..Default::default()
    }
}

/// Host network, a PID namespace per container, the pod's IPC: what the kubelet sends for a
/// `hostNetwork: true` pod.
fn host_network() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a blob into an OCI layout; its descriptor's digest and size.
fn blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = hex(&Sha256::digest(bytes));
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&digest), bytes).unwrap();
    (format!("sha256:{digest}"), bytes.len())
}

/// Builds the busybox image as an OCI archive (oci-layout, index.json, a manifest, a config and
/// one plain tar layer) in `dir`; returns the archive's path. The layer has /bin/busybox with
/// its applets, /etc/passwd and /etc/group naming root and `app` (uid and gid [`APP_UID`]), and
/// `app`'s home with two directories of its own. Its command (the sandbox's) sleeps.
pub fn build_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static must be installed (make test installs it)");
    for a in APPLETS {
        symlink("busybox", bin.join(a)).unwrap();
    }
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\napp:x:{APP_UID}:{APP_UID}:app:/home/app:/bin/sh\n"),
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\napp:x:{APP_UID}:\n"),
    )
    .unwrap();
    let home = rootfs.join("home/app");
    for d in ["named", "anon"] {
        fs::create_dir_all(home.join(d)).unwrap();
        fs::write(home.join(d).join("from-image"), "prepared by the image\n").unwrap();
        for p in [home.join(d).join("from-image"), home.join(d)] {
            chown(&p, Some(APP_UID), Some(APP_UID)).unwrap();
        }
    }
    chown(&home, Some(APP_UID), Some(APP_UID)).unwrap();

    let layer = dir.join("layer.tar");
    ok(
        &Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg(".")
            .output()
            .unwrap(),
        "tar the image's layer",
    );
    let layout = dir.join("oci");
    fs::create_dir_all(&layout).unwrap();
    let layer_bytes = fs::read(&layer).unwrap();
    let (layer_digest, layer_size) = blob(&layout, &layer_bytes);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": ["sleep", "86400"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let (config_digest, config_size) = blob(&layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = blob(&layout, manifest.to_string().as_bytes());
    let tag = IMAGE.rsplit(':').next().unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": IMAGE,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        json!({ "imageLayoutVersion": "1.0.0" }).to_string(),
    )
    .unwrap();
    let archive = dir.join("image.tar");
    ok(
        &Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .args(["oci-layout", "index.json", "blobs"])
            .output()
            .unwrap(),
        "tar the OCI archive",
    );
    archive
}
