//! `make demo`'s script, run by the test suite so that the demo keeps working.

mod common;

use std::process::Command;

#[test]
fn demo_script_passes_and_shows_each_step() {
    if common::require_root("demo_script_passes_and_shows_each_step").is_none() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(common::OCIVOL)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "== 1. A sample base directory ==",
        "== 2. Two running containers share one copy-on-write volume ==",
        "ok: exactly one overlay for the volume",
        "== 3. Deleting both containers releases the volume; the base is untouched ==",
        "ok: base identical to step 1",
        "== 4. A volatile copy-on-write volume forgets its changes ==",
        "ok: D sees only the base files, no junk",
        "== 5. A named plain volume outlives its containers ==",
        "ok: the next container reads /notes/kept.txt back",
        "== 6. Nothing left behind ==",
    ] {
        assert!(stdout.contains(step), "the demo shows {step:?}:\n{stdout}");
    }
    assert_eq!(stdout.lines().last(), Some("demo: all steps passed"));
}
