//! Library-level benchmarks of the volume store, run by `bench/run.sh` (rows 2 and 3 of
//! docs/PERFORMANCE.md); not a cargo test harness.
//!
//! ```text
//! cargo bench --bench store_scale -- --dir DIR [--run-dir RUNDIR] --base BASE --out FILE [--quick]
//! ```
//!
//! Everything lives under DIR (the caller's temp directory, whose trap unmounts what is left if
//! this program is killed); the run roots under RUNDIR when given (bench/run.sh: a tmpfs, as
//! /run is on a host). Needs root: the overlays are real. Every figure is a median of
//! interleaved samples, so that drift on a noisy machine hits every case alike.
//!
//! - first user (mounts the overlay) vs later user (no mount) vs non-last and last release
//!   (unmount);
//! - acquire + release of one more user with 1, 100, 1000 users present and 10,000 container
//!   records in the state root;
//! - preparing a container with `volumes-from` (the full library path: resolve, join, record,
//!   release) with 10 vs 10,000 records present;
//! - the same by Kubernetes container name (through the name index), with 10 vs 20,000 records.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ocivol::config::{AllowedPath, Config, Context, Policy, StatePaths};
use ocivol::container_id::container_key;
use ocivol::mounts::Linux;
use ocivol::pin::{Guard, Pin};
use ocivol::prepare::{Container, Resolver, prepare};
use ocivol::scope::Scope;
use ocivol::store::{ContainerRecord, RecordedMount, Store, VolumeRequest};
use serde_json::json;

struct Args {
    dir: PathBuf,
    /// Where the run roots go (a tmpfs, as /run is): `--run-dir`; default: beside the roots.
    run_dir: Option<PathBuf>,
    base: PathBuf,
    out: PathBuf,
    quick: bool,
}

fn args() -> Args {
    let mut dir = None;
    let mut run_dir = None;
    let mut base = None;
    let mut out = None;
    let mut quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().map(PathBuf::from),
            "--run-dir" => run_dir = it.next().map(PathBuf::from),
            "--base" => base = it.next().map(PathBuf::from),
            "--out" => out = it.next().map(PathBuf::from),
            "--quick" => quick = true,
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    let need =
        |v: Option<PathBuf>, what: &str| v.unwrap_or_else(|| die(&format!("{what} is required")));
    Args {
        dir: need(dir, "--dir"),
        run_dir,
        base: need(base, "--base"),
        out: need(out, "--out"),
        quick,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("store_scale: {msg}");
    eprintln!("usage: store_scale --dir DIR [--run-dir DIR] --base BASE --out FILE [--quick]");
    std::process::exit(2)
}

/// `--run-dir`, once parsed.
static RUN_DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

fn store_at(dir: &Path) -> (StatePaths, Store) {
    let run_root = match RUN_DIR.get().and_then(Option::as_ref) {
        Some(run) => run.join(dir.file_name().expect("a case directory")),
        None => dir.join("run"),
    };
    let paths = StatePaths {
        root: dir.join("root"),
        run_root,
    };
    let store = Store::new(&paths, Box::new(Linux));
    (paths, store)
}

/// Every base is allowed: these rows measure the store, not the policy.
fn guard() -> Guard {
    let policy = Policy {
        allowed_bases: vec![AllowedPath::new("/")],
        ..Policy::default()
    };
    Guard::new(&policy, &[])
}

fn cow(name: &str, base: &Path) -> VolumeRequest {
    VolumeRequest::shared(
        Some(name),
        Some(Pin::own(base).expect("open the base")),
        false,
    )
}

/// Microseconds since `t`.
fn us(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `n` records of containers that once ran, as the runtime wrapper leaves them (written without
/// the store's fsync: this is set-up, not what is measured).
fn write_records(paths: &StatePaths, n: usize) {
    let dir = paths.root.join("containers");
    fs::create_dir_all(&dir).expect("create containers/");
    for i in 0..n {
        let rec = ContainerRecord {
            id: format!("old-{i:05}"),
            runtime_root: None,
            key_root: None,
            bundle: PathBuf::from(format!("/run/containers/old-{i:05}")),
            scope: Scope {
                namespace: "root:default".into(),
                ..Scope::default()
            },
            volumes: vec![format!("vol-{}", i % 50)],
            mounts: vec![RecordedMount {
                destination: PathBuf::from("/data"),
                source: paths.root.join(format!("volumes/vol-{}/data", i % 50)),
                flags: Default::default(),
                volume: Some(format!("vol-{}", i % 50)),
                engine: false,
                subpath: None,
            }],
            volumes_from: Vec::new(),
            boot_id: String::new(),
            init: None,
        };
        let path = dir.join(format!("{}.json", rec.key()));
        fs::write(path, serde_json::to_vec_pretty(&rec).expect("serialize")).expect("write record");
    }
}

/// Row 2: what the first user, a later user, a non-last and the last release cost.
fn first_vs_later(dir: &Path, base: &Path, iters: usize) -> serde_json::Value {
    let (_, store) = store_at(&dir.join("first-later"));
    let req = cow("fl", base);
    let (mut first, mut later, mut rel, mut last) = (vec![], vec![], vec![], vec![]);
    for _ in 0..iters {
        let t = Instant::now();
        store
            .acquire(&req, "a", true, &guard())
            .expect("first acquire");
        first.push(us(t));
        let t = Instant::now();
        store
            .acquire(&req, "b", true, &guard())
            .expect("later acquire");
        later.push(us(t));
        let t = Instant::now();
        store.release("fl", "b").expect("release b");
        rel.push(us(t));
        let t = Instant::now();
        store.release("fl", "a").expect("last release");
        last.push(us(t));
    }
    assert!(
        !store.is_mounted("fl"),
        "the overlay is gone after the last release"
    );
    let later_m = median(&mut later);
    let (first_m, rel_m, last_m) = (median(&mut first), median(&mut rel), median(&mut last));
    json!({
        "iterations": iters,
        "first_acquire_us": round2(first_m),
        "later_acquire_us": round2(later_m),
        "release_not_last_us": round2(rel_m),
        "last_release_us": round2(last_m),
        "first_over_later": round2(first_m / later_m),
        "last_over_not_last": round2(last_m / rel_m),
    })
}

/// Row 3: acquire + release of one more user of a volume with `users` users already, every case
/// in the same state root with `records` container records, sampled in interleaved rounds.
fn scale(
    dir: &Path,
    base: &Path,
    users: &[usize],
    records: usize,
    iters: usize,
) -> serde_json::Value {
    let (paths, store) = store_at(&dir.join("scale"));
    write_records(&paths, records);
    for &n in users {
        let req = cow(&format!("u{n}"), base);
        for i in 0..n {
            store
                .acquire(&req, &format!("holder-{i}"), true, &guard())
                .expect("holder");
        }
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); users.len()];
    for round in 0..iters {
        for (k, &n) in users.iter().enumerate() {
            let name = format!("u{n}");
            let user = format!("probe-{round}");
            let t = Instant::now();
            store
                .acquire(&cow(&name, base), &user, true, &guard())
                .expect("acquire");
            store.release(&name, &user).expect("release");
            samples[k].push(us(t));
        }
    }
    for &n in users {
        let name = format!("u{n}");
        for i in 0..n {
            store
                .release(&name, &format!("holder-{i}"))
                .expect("release holder");
        }
        assert!(store.users(&name).expect("users").is_empty());
        assert!(!store.is_mounted(&name));
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let rows: Vec<_> = users
        .iter()
        .zip(&medians)
        .map(|(n, m)| json!({ "users": n, "median_us": round2(*m), "ratio_to_first": round2(m / medians[0]) }))
        .collect();
    json!({ "records": records, "iterations": iters, "cases": rows })
}

/// Row 3 (continued): `prepare` + release of a container with `volumes-from` of a source holding
/// one copy-on-write volume, with few and with many records in the state root.
fn volumes_from(dir: &Path, base: &Path, counts: &[usize], iters: usize) -> serde_json::Value {
    let mut config = Config::default();
    config.policy.allowed_bases = vec![AllowedPath::new(base)];
    let setups: Vec<(Context, Store, String)> = counts
        .iter()
        .map(|&n| {
            let (paths, store) = store_at(&dir.join(format!("vfrom-{n}")));
            write_records(&paths, n);
            let ctx = Context {
                config: config.clone(),
                paths,
            };
            let ann = BTreeMap::from([(
                "io.ocivol.volumes".to_string(),
                format!("src-vol:/data:base={}", base.display()),
            )]);
            let c = Container {
                id: "src",
                runtime_root: None,
                key_root: None,
                bundle: Path::new("/nonexistent/bundles/src"),
                annotations: &ann,
                rootfs: None,
            };
            let source = prepare(&Resolver::new(&ctx, &store, None), &c)
                .expect("prepare the source")
                .expect("the source has volumes");
            // src-vol of the source's scope: src-vol@HASH.
            let src_vol = source.record.volumes[0].clone();
            assert!(src_vol.starts_with("src-vol@"), "{src_vol}");
            (ctx, store, src_vol)
        })
        .collect();
    let ann = BTreeMap::from([("io.ocivol.volumes-from".to_string(), "src".to_string())]);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..iters {
        for (k, (ctx, store, src_vol)) in setups.iter().enumerate() {
            let id = format!("reader-{round}");
            let c = Container {
                id: &id,
                runtime_root: None,
                key_root: None,
                bundle: Path::new("/nonexistent/bundles/reader"),
                annotations: &ann,
                rootfs: None,
            };
            let t = Instant::now();
            let p = prepare(&Resolver::new(ctx, store, None), &c)
                .expect("prepare")
                .expect("volumes-from gives volumes");
            let key = container_key(&id, None);
            store.release_container(&key).expect("release");
            samples[k].push(us(t));
            assert_eq!(p.record.volumes, [src_vol.as_str()]);
            store.remove_container(&key).expect("remove record");
        }
    }
    for (_, store, src_vol) in &setups {
        store
            .release_container(&container_key("src", None))
            .expect("release the source");
        assert!(!store.is_mounted(src_vol));
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let rows: Vec<_> = counts
        .iter()
        .zip(&medians)
        .map(|(n, m)| json!({ "records": n, "median_us": round2(*m), "ratio_to_first": round2(m / medians[0]) }))
        .collect();
    json!({ "iterations": iters, "cases": rows })
}

/// The keys containerd's CRI writes into a container's spec, for a pod's container `name`.
fn cri(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "io.kubernetes.cri.sandbox-namespace".to_string(),
            "bench".to_string(),
        ),
        (
            "io.kubernetes.cri.sandbox-id".to_string(),
            "sb-bench".to_string(),
        ),
        (
            "io.kubernetes.cri.container-name".to_string(),
            name.to_string(),
        ),
        (
            "io.kubernetes.cri.container-type".to_string(),
            "container".to_string(),
        ),
    ])
}

/// Row 3 (continued): `prepare` + release of a pod's container with `volumes-from` naming another
/// container of its pod by name, with few and with many records (of other pods) in the state root.
fn volumes_from_by_name(
    dir: &Path,
    base: &Path,
    counts: &[usize],
    iters: usize,
) -> serde_json::Value {
    let mut config = Config::default();
    config.policy.allowed_bases = vec![AllowedPath::new(base)];
    let tasks = Path::new("/nonexistent/io.containerd.runtime.v2.task/k8s.io");
    let setups: Vec<(Context, Store, String)> = counts
        .iter()
        .map(|&n| {
            let (paths, store) = store_at(&dir.join(format!("vfname-{n}")));
            write_records(&paths, n);
            let ctx = Context {
                config: config.clone(),
                paths,
            };
            let mut ann = cri("src");
            ann.insert(
                "io.ocivol.volumes".to_string(),
                format!("src-vol:/data:base={}", base.display()),
            );
            let c = Container {
                id: "src-id",
                runtime_root: None,
                key_root: None,
                bundle: &tasks.join("src-id"),
                annotations: &ann,
                rootfs: None,
            };
            let src = prepare(&Resolver::new(&ctx, &store, None), &c)
                .expect("prepare the source")
                .expect("the source has volumes");
            // The volume of the pod's scope: its storage name (`src-vol@SCOPE`).
            let vol = src.record.volumes[0].clone();
            (ctx, store, vol)
        })
        .collect();
    let mut ann = cri("reader");
    ann.insert("io.ocivol.volumes-from".to_string(), "src".to_string());
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    for round in 0..iters {
        for (k, (ctx, store, vol)) in setups.iter().enumerate() {
            let id = format!("reader-{round}");
            let bundle = tasks.join(&id);
            let c = Container {
                id: &id,
                runtime_root: None,
                key_root: None,
                bundle: &bundle,
                annotations: &ann,
                rootfs: None,
            };
            let t = Instant::now();
            let p = prepare(&Resolver::new(ctx, store, None), &c)
                .expect("prepare")
                .expect("volumes-from by name gives volumes");
            let key = container_key(&id, None);
            store.release_container(&key).expect("release");
            samples[k].push(us(t));
            assert_eq!(&p.record.volumes, std::slice::from_ref(vol));
            store.remove_container(&key).expect("remove record");
        }
    }
    for (_, store, vol) in &setups {
        store
            .release_container(&container_key("src-id", None))
            .expect("release the source");
        assert!(!store.is_mounted(vol));
    }
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    let rows: Vec<_> = counts
        .iter()
        .zip(&medians)
        .map(|(n, m)| json!({ "records": n, "median_us": round2(*m), "ratio_to_first": round2(m / medians[0]) }))
        .collect();
    json!({ "iterations": iters, "cases": rows })
}

fn main() {
    let a = args();
    if !nix::unistd::getuid().is_root() {
        eprintln!("store_scale: skipped: requires root (it mounts overlays)");
        std::process::exit(0);
    }
    fs::create_dir_all(&a.dir).expect("create --dir");
    let _ = RUN_DIR.set(a.run_dir.clone());
    let (users, records, iters): (&[usize], usize, usize) = if a.quick {
        (&[1, 10, 50], 100, 5)
    } else {
        (&[1, 100, 1000], 10_000, 200)
    };
    let vf_counts = [10, records];
    // Issue 12: a node keeps a record per container until gc; 20,000 is a busy node's week.
    let by_name_counts = [10, if a.quick { 100 } else { 20_000 }];
    let result = json!({
        "quick": a.quick,
        "first_vs_later": first_vs_later(&a.dir, &a.base, iters),
        "scale": scale(&a.dir, &a.base, users, records, iters),
        "volumes_from": volumes_from(&a.dir, &a.base, &vf_counts, iters / 2 + 1),
        "volumes_from_by_name": volumes_from_by_name(&a.dir, &a.base, &by_name_counts, iters / 2 + 1),
    });
    let text = serde_json::to_string_pretty(&result).expect("serialize");
    fs::write(&a.out, format!("{text}\n")).expect("write --out");
    println!("{text}");
}
