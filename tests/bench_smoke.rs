//! Keeps the benchmarks from rotting: runs `bench/run.sh` in its smoke mode (BENCH_QUICK=1: tiny
//! sizes, a few seconds per benchmark) with this build and checks that it wrote the JSON and the
//! table with every row. Nothing is timed here; the figures of a smoke run mean nothing.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn bench_smoke_mode_writes_every_row() {
    if common::require_root("bench_smoke_mode_writes_every_row").is_none() {
        return;
    }
    let out = tempfile::Builder::new()
        .prefix("ocivol-bench-smoke-")
        .tempdir()
        .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `cargo test` holds the lock of target/ while tests run: the library benchmark is built in a
    // target directory of its own (kept between runs, so only the first run compiles it).
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-smoke-target");
    let run = Command::new("bash")
        .arg(repo.join("bench/run.sh"))
        .env("BENCH_QUICK", "1")
        .env("BENCH_OUT", out.path())
        .env("BENCH_CARGO_TARGET_DIR", &target_dir)
        .env("OCIVOL", common::OCIVOL)
        .output()
        .unwrap();
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "bench/run.sh failed\n{log}");

    let results: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["quick"], true);
    assert!(results["machine"]["cores"].as_u64().unwrap() >= 1);
    let rows = results["rows"].as_array().unwrap();
    for n in 1..=8u64 {
        let of_n: Vec<&Value> = rows.iter().filter(|r| r["row"] == n).collect();
        assert!(!of_n.is_empty(), "row {n} is missing\n{log}");
        for r in of_n {
            let skipped = r["note"].as_str().unwrap_or("").starts_with("skipped");
            if !skipped {
                assert!(r["baseline_value"].is_number(), "row {n}: {r}");
                assert!(r["subject_value"].is_number(), "row {n}: {r}");
                assert!(r["ratio"].is_number(), "row {n}: {r}");
            }
            assert!(
                ["yes", "no", "-"].contains(&r["met"].as_str().unwrap()),
                "{r}"
            );
        }
    }
    // Concurrency: the correctness half of row 4 holds even in a smoke run (its time is not
    // asserted).
    for r in rows.iter().filter(|r| r["row"] == 4) {
        assert!(
            r["note"]
                .as_str()
                .unwrap()
                .starts_with("failures 0, users left 0, overlays left 0"),
            "row 4 left failures, users or an overlay: {r}"
        );
    }

    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(table.starts_with("| # | case |"), "{table}");
    for n in 1..=8 {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {n} | "))),
            "row {n} missing from the table:\n{table}"
        );
    }
    assert!(
        out.path().join("raw/store_scale.json").is_file(),
        "the library benchmark's JSON"
    );
    // The script's trap unmounted everything in its temp directory and removed it.
    let workdir = results["workdir"].as_str().unwrap();
    assert!(common::mounts_under(Path::new(workdir)).is_empty());
    assert!(!Path::new(workdir).exists(), "{workdir} is left");
}
