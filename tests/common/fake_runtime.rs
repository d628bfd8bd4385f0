//! The one fake runtime, for tests that need no root: the wrapper's argv and exit handling, what
//! the runtime inherits, and refusals that must never reach a runtime. End-to-end behaviour is
//! proven with real runc ([`super::Env`]).
//!
//! A temp directory of its own holds `fake-runc`, a shell script that appends its command line
//! to `argv.log` and then does what the test says; `config.toml`, ocivol's config naming it; and
//! ocivol's state roots under `state/`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

pub struct FakeRuntime {
    pub dir: tempfile::TempDir,
}

impl FakeRuntime {
    /// The fake runtime in a fresh `PREFIX…` temp directory: it logs its command line, then
    /// runs the shell lines `then` (`exit 1`, a `case` on its arguments…), then exits 0. The
    /// config names it and allows nothing (see [`FakeRuntime::write_config`]).
    pub fn new(prefix: &str, then: &str) -> FakeRuntime {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let f = FakeRuntime { dir };
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n{then}\nexit 0\n",
            f.path("argv.log").display()
        );
        fs::write(f.script(), script).unwrap();
        fs::set_permissions(f.script(), fs::Permissions::from_mode(0o755)).unwrap();
        f.write_config(json!({}));
        f
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The fake runtime's script.
    pub fn script(&self) -> PathBuf {
        self.path("fake-runc")
    }

    /// Writes ocivol's config: `config`, with `runtime` the fake one unless it names another.
    pub fn write_config(&self, mut config: Value) {
        if config.get("runtime").is_none() {
            config["runtime"] = json!(self.script());
        }
        fs::write(self.path("config.toml"), super::toml_config(&config)).unwrap();
    }

    /// The command lines the fake runtime was run with, one a run.
    pub fn argv_log(&self) -> Vec<String> {
        fs::read_to_string(self.path("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether the fake runtime ran at all.
    pub fn ran(&self) -> bool {
        self.path("argv.log").exists()
    }

    /// `ocivol --config config.toml --root state/root --run-root state/run`, stdin closed.
    pub fn ocivol(&self) -> Command {
        super::ocivol_at(
            &self.path("config.toml"),
            &self.path("state/root"),
            &self.path("state/run"),
        )
    }

    /// `ocivol … runtime ARGS`: the wrapper, in front of the fake runtime.
    pub fn runtime(&self, args: &[&str]) -> Command {
        let mut c = self.ocivol();
        c.arg("runtime").args(args);
        c
    }
}
