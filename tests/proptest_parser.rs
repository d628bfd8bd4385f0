//! Property tests of the hostile-input surface (issue 6, acceptance 5): the annotation parser, the
//! policy check of the plan, and the config loader, fed arbitrary text and text built near their
//! grammars. Each property runs a fixed number of cases, so it takes a few seconds in `make test`.
//!
//! What they prove: nothing panics; every rejection is an error value whose message starts with
//! `annotation io.ocivol.volumes: entry ` and is one line; whatever is accepted obeys DESIGN.md's
//! rules (names, destinations, host paths) and round-trips through `VolumeSpec`'s Display; the
//! plan never lets a host path out of the policy's allowlists or into ocivol's state.

use std::path::{Component, Path, PathBuf};

use ocivol::annotations::{self, Source, VolumeSpec, parse_volumes};
use ocivol::config::{AllowedPath, Config, Policy};
use ocivol::pin::Guard;
use ocivol::plan::{self, Planned};
use proptest::prelude::*;

/// Cases per property in `make test`; `PROPTEST_CASES=100000 cargo test --test proptest_parser`
/// searches deeper.
const CASES: u32 = 2000;
const PREFIX: &str = "annotation io.ocivol.volumes: entry ";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(CASES),
        // Shrinking a failure is worth it, but bounded so a failing run stays short.
        max_shrink_iters: 2000,
        // A failure found here becomes a named unit test; no regression file is written into
        // the tree by `make test`.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- generators near the grammar ----

/// Characters that mean something to the parser, the overlay options or the path checks.
const TRICKY: &[&str] = &[
    "a", "b", "Z", "0", "/", ".", "..", ":", ",", ";", "\n", "=", "\\", "\0", " ", "\t", "-", "_",
    "é", "\u{a0}", "\r",
];

fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TRICKY), 0..40).prop_map(|v| v.concat())
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,12}",
        1 => Just("..".to_string()),
        1 => Just("a/b".to_string()),
        1 => Just("-x".to_string()),
        1 => Just("n".repeat(300)),
        1 => Just("a".repeat(128)),
        1 => Just("a".repeat(129)),
        1 => Just("x\0y".to_string()),
        1 => tricky_string(),
    ]
}

/// A path-like string: absolute or not, with `.`, `..`, empty segments and option characters.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        6 => "[a-z]{1,6}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => Just("proc".to_string()),
        1 => Just("sys".to_string()),
        1 => Just("dev".to_string()),
        1 => Just("srv".to_string()),
        1 => Just("b,c".to_string()),
        1 => Just("x=y".to_string()),
        1 => Just("lowerdir=/x,upperdir=/etc".to_string()),
        1 => Just("d:e".to_string()),
        1 => Just("s p".to_string()),
        2 => Just("t ".to_string()),
        1 => Just("u\u{a0}".to_string()),
        1 => Just("\\".to_string()),
        1 => tricky_string(),
    ];
    (
        prop::bool::weighted(0.85),
        prop::collection::vec(segment, 0..5),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(absolute, segs, trailing)| {
            let mut p = segs.join("/");
            if absolute {
                p.insert(0, '/');
            }
            if trailing {
                p.push('/');
            }
            p
        })
}

/// The value of `uid=`, `gid=` or `mode=`: good, out of range, or not a number at all.
fn owner_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u64..5000).prop_map(|n| n.to_string()),
        2 => (0u32..0o10000).prop_map(|m| format!("{m:o}")),
        2 => (0u32..0o10000).prop_map(|m| format!("0{m:o}")),
        1 => Just("4294967294".to_string()),
        1 => Just("4294967295".to_string()),
        1 => Just("17777".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("0x10".to_string()),
        1 => Just("08".to_string()),
        1 => Just(String::new()),
        1 => tricky_string(),
    ]
}

fn option() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(
            &["ro", "rw", "nosuid", "nodev", "noexec", "volatile", "nocopy"][..]
        )
        .prop_map(str::to_string),
        2 => path().prop_map(|p| format!("base={p}")),
        2 => (prop::sample::select(&["uid", "gid", "mode"][..]), owner_value())
            .prop_map(|(k, v)| format!("{k}={v}")),
        1 => Just(String::new()),
        1 => Just(" ro ".to_string()),
        1 => Just("rw".to_string()),
        1 => Just("bogus".to_string()),
        1 => tricky_string(),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    fn source() -> impl Strategy<Value = String> {
        prop_oneof![name(), path()]
    }
    fn options() -> impl Strategy<Value = String> {
        prop::collection::vec(option(), 1..4).prop_map(|o| o.join(","))
    }
    prop_oneof![
        path(),
        (path(), options()).prop_map(|(d, o)| format!("{d}:{o}")),
        (source(), path()).prop_map(|(s, d)| format!("{s}:{d}")),
        (source(), path(), options()).prop_map(|(s, d, o)| format!("{s}:{d}:{o}")),
        tricky_string(),
    ]
}

fn annotation() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(entry(), 0..6),
        prop::sample::select(&[";", "\n", " ; ", ";;"][..]),
    )
        .prop_map(|(e, sep)| e.join(sep))
}

/// Text for the parser: near the grammar most of the time, anything at all otherwise.
fn any_annotation() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => annotation(),
        2 => any::<String>(),
        1 => tricky_string(),
    ]
}

// ---- what must hold ----

/// A rejection is an error value with the one-line format every way in relies on.
fn check_rejection(input: &str, message: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        message.starts_with(PREFIX),
        "input {input:?}: message {message:?} does not start with {PREFIX:?}"
    );
    prop_assert!(
        !message.contains('\n'),
        "input {input:?}: message is not one line: {message:?}"
    );
    Ok(())
}

fn is_normal_absolute(p: &Path) -> bool {
    let s = p.to_str().unwrap_or("");
    s.starts_with('/')
        && (s == "/" || !s.ends_with('/'))
        && !s.contains("//")
        && !s.contains('\0')
        && p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && !s.split('/').any(|seg| seg == "." || seg == "..")
}

fn overlay_safe(p: &Path) -> bool {
    !p.to_str()
        .unwrap_or(",")
        .contains([',', ':', '\\', '=', '\n', '\0'])
}

/// Whatever the parser accepts obeys DESIGN.md and round-trips through Display.
fn check_accepted(input: &str, specs: &[VolumeSpec]) -> Result<(), TestCaseError> {
    for spec in specs {
        let dest = &spec.destination;
        prop_assert!(is_normal_absolute(dest), "{input:?}: destination {dest:?}");
        prop_assert!(dest != Path::new("/"), "{input:?}: destination /");
        for fs in ["/proc", "/sys", "/dev"] {
            prop_assert!(!dest.starts_with(fs), "{input:?}: destination {dest:?}");
        }
        match &spec.source {
            Source::Named(n) => {
                prop_assert!(
                    !n.is_empty()
                        && n.len() <= 128
                        && n.chars().next().unwrap().is_ascii_alphanumeric()
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                    "{input:?}: name {n:?}"
                );
            }
            Source::HostPath(p) => {
                prop_assert!(
                    is_normal_absolute(p) && overlay_safe(p),
                    "{input:?}: source {p:?}"
                );
            }
            Source::Anonymous => {}
        }
        if let Some(b) = &spec.base {
            prop_assert!(
                is_normal_absolute(b) && overlay_safe(b),
                "{input:?}: base {b:?}"
            );
        }
        prop_assert!(!spec.volatile || spec.base.is_some(), "{input:?}: volatile");
        // uid=, gid=, mode= and nocopy are about a new volume: never on a bind of a host path;
        // IDs that chown(2) takes as IDs, modes that chmod(2) takes.
        if matches!(spec.source, Source::HostPath(_)) {
            prop_assert!(
                spec.owner.is_empty() && !spec.nocopy,
                "{input:?}: bind options"
            );
        }
        for id in [spec.owner.uid, spec.owner.gid].into_iter().flatten() {
            prop_assert!(id <= annotations::MAX_ID, "{input:?}: id {id}");
        }
        prop_assert!(
            spec.owner.mode.is_none_or(|m| m <= 0o7777),
            "{input:?}: mode"
        );
        let text = spec.to_string();
        let again = parse_volumes(&text, 64);
        let expected = VolumeSpec {
            entry: text.clone(),
            ..spec.clone()
        };
        prop_assert_eq!(
            again,
            Ok(vec![expected]),
            "{:?}: the spec {:?} printed as {:?} does not parse back to itself",
            input,
            spec,
            text
        );
    }
    Ok(())
}

fn check_parse(input: &str, max: usize) -> Result<(), TestCaseError> {
    match parse_volumes(input, max) {
        Err(e) => check_rejection(input, &e.to_string()),
        Ok(specs) => {
            prop_assert!(specs.len() <= max);
            check_accepted(input, &specs)
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parser_never_panics_rejects_with_one_line_and_accepted_specs_round_trip(
        input in any_annotation(),
        max in 1usize..8,
    ) {
        check_parse(&input, max)?;
    }

    #[test]
    fn single_entries_near_the_grammar_are_checked_or_refused(input in entry()) {
        check_parse(&input, 64)?;
    }
}

// ---- the policy, through the plan, on a real filesystem full of traps ----

/// A tree in a temp dir with the traps a tenant can set: links out of an allowed directory
/// (absolute and relative), into ocivol's state, loops, a link to a path with overlay option
/// characters, files where directories are expected, and `/missing`. Every path the properties
/// use is written as if the temp dir were `/`.
struct Traps {
    dir: tempfile::TempDir,
}

impl Traps {
    fn new() -> Traps {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        for d in [
            "srv/data/x",
            "binds/x",
            "etc",
            "var/lib/ocivol/volumes",
            "run/ocivol",
            "srv/a,b",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        for f in ["srv/file", "etc/passwd", "etc/shadow", "run/docker.sock"] {
            std::fs::write(t.join(f), "").unwrap();
        }
        for (link, target) in [
            ("srv/escape", t.join("etc")),
            ("srv/up", PathBuf::from("/")),
            ("srv/state", t.join("var/lib/ocivol")),
            ("binds/to-srv", t.join("srv/data")),
            ("binds/escape", t.join("etc/shadow")),
            ("binds/rel-up", PathBuf::from("../etc")),
            ("binds/rel-in", PathBuf::from("x")),
            ("srv/loop", t.join("srv/loop2")),
            ("srv/loop2", t.join("srv/loop")),
            ("srv/comma", t.join("srv/a,b")),
            ("var/run", t.join("run")),
        ] {
            symlink(target, t.join(link)).unwrap();
        }
        Traps { dir }
    }

    /// `/x` as a path of the tree.
    fn at(&self, p: &str) -> PathBuf {
        self.dir.path().join(p.trim_start_matches('/'))
    }
}

fn policy_dir() -> impl Strategy<Value = String> {
    prop::sample::select(
        &[
            "/srv",
            "/srv/data",
            "/binds",
            "/srv/escape",
            "/var/lib",
            "/missing",
        ][..],
    )
    .prop_map(str::to_string)
}

/// Host paths near the tree's traps.
fn host_path() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(
            &[
                "/", "/etc", "/var/run/docker.sock", "/srv", "/srv/data", "/srv/data/x",
                "/srv/escape", "/srv/escape/passwd", "/srv/up", "/srv/state", "/srv/loop",
                "/srv/comma", "/srv/file", "/binds", "/binds/x", "/binds/to-srv",
                "/binds/escape", "/binds/rel-up", "/binds/rel-in", "/var/lib",
                "/var/lib/ocivol/volumes", "/missing/x",
            ][..],
        )
        .prop_map(str::to_string),
        1 => path(),
    ]
}

/// A host path in an annotation, `@` standing for the tree's root.
fn planned_annotation() -> impl Strategy<Value = String> {
    let one = prop_oneof![
        (name(), path(), host_path()).prop_map(|(n, d, b)| format!("{n}:{d}:base=@{b}")),
        (host_path(), path()).prop_map(|(s, d)| format!("@{s}:{d}")),
        (host_path(), path(), option()).prop_map(|(s, d, o)| format!("@{s}:{d}:{o}")),
        entry(),
    ];
    prop::collection::vec(one, 1..4).prop_map(|e| e.join(";"))
}

const STATE: &[&str] = &["/var/lib/ocivol", "/run/ocivol"];

#[test]
fn the_plan_never_lets_a_host_path_out_of_the_policy() {
    let traps = Traps::new();
    let root = traps.dir.path().display().to_string();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let inputs = (
        planned_annotation(),
        prop::collection::vec(policy_dir(), 0..3),
        prop::collection::vec(policy_dir(), 0..3),
    );
    runner
        .run(&inputs, |(input, bases, binds)| {
            let input = input.replace("@/", &format!("{root}/")).replace('@', &root);
            let entries = |list: &[String]| -> Vec<AllowedPath> {
                list.iter().map(|p| AllowedPath::new(traps.at(p))).collect()
            };
            let policy = Policy {
                allowed_bases: entries(&bases),
                allowed_bind_sources: entries(&binds),
                ..Policy::default()
            };
            let Ok(specs) = parse_volumes(&input, 64) else {
                return Ok(());
            };
            let state: Vec<PathBuf> = STATE.iter().map(|s| traps.at(s)).collect();
            let state: Vec<&Path> = state.iter().map(PathBuf::as_path).collect();
            let guard = Guard::new(&policy, &state);
            match plan::plan(&specs, annotations::VOLUMES, &guard) {
                Err(e) => check_rejection(&input, &e.to_string())?,
                Ok(planned) => {
                    prop_assert_eq!(planned.len(), specs.len());
                    for m in planned {
                        let (what, pin, allowed) = match &m.what {
                            Planned::Bind { source } => {
                                ("bind", source.clone(), &policy.allowed_bind_sources)
                            }
                            Planned::Volume { base: Some(b), .. } => {
                                ("base", b.clone(), &policy.allowed_bases)
                            }
                            Planned::Volume { base: None, .. } => continue,
                        };
                        let path = pin.path().to_path_buf();
                        // What is open is what the path resolves to, with no link left in it.
                        let again = std::fs::canonicalize(&path).unwrap();
                        prop_assert_eq!(&again, &path, "{}: {} is not resolved", input, what);
                        let inside = allowed.iter().any(|a| {
                            std::fs::canonicalize(&a.path).is_ok_and(|a| path.starts_with(a))
                        });
                        prop_assert!(inside, "{input:?}: {what} {path:?} is outside {allowed:?}");
                        for s in &state {
                            prop_assert!(
                                !path.starts_with(s) && !s.starts_with(&path),
                                "{input:?}: {what} {path:?} overlaps the state dir {s:?}"
                            );
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---- the config file ----

const CONFIG_KEYS: &[&str] = &[
    "runtime",
    "root",
    "run_root",
    "policy",
    "shared_volumes",
    "allowed_bases",
    "allowed_bind_sources",
    "auto_create",
    "max_volumes_per_container",
    "volumes_from_scope",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(CONFIG_KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!("runc")),
        Just(json!("namespace")),
        Just(json!("any")),
        Just(json!("bin/runc")),
        Just(json!("")),
        Just(json!(["/srv"])),
        Just(json!(["rel"])),
        path().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((json_key(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// config.toml text with these top-level keys and `[policy]` keys (a JSON null is left out:
/// TOML has none; objects are inline tables).
fn toml_text(
    top: serde_json::Map<String, serde_json::Value>,
    policy: serde_json::Map<String, serde_json::Value>,
) -> String {
    use serde_json::Value;
    fn value(v: &Value) -> Option<toml_edit::Value> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => (*b).into(),
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.into(),
                None => n.as_f64().unwrap_or(0.0).into(),
            },
            Value::String(s) => s.as_str().into(),
            Value::Array(a) => toml_edit::Value::Array(a.iter().filter_map(value).collect()),
            Value::Object(o) => {
                let mut t = toml_edit::InlineTable::new();
                for (k, v) in o {
                    if let Some(v) = value(v) {
                        t.insert(k, v);
                    }
                }
                toml_edit::Value::InlineTable(t)
            }
        })
    }
    let mut doc = toml_edit::DocumentMut::new();
    for (k, v) in &top {
        if let Some(v) = value(v) {
            doc[k.as_str()] = toml_edit::Item::Value(v);
        }
    }
    let mut t = toml_edit::Table::new();
    for (k, v) in &policy {
        if let Some(v) = value(v) {
            t[k.as_str()] = toml_edit::Item::Value(v);
        }
    }
    doc["policy"] = toml_edit::Item::Table(t);
    doc.to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn config_text_parses_to_a_valid_config_or_an_error(
        top in prop::collection::vec((json_key(), json_value()), 0..4),
        policy in prop::collection::vec((json_key(), json_value()), 0..4),
        raw in any::<String>(),
        use_raw in prop::bool::weighted(0.1),
    ) {
        let text = if use_raw {
            raw
        } else {
            let mut top: serde_json::Map<String, serde_json::Value> = top.into_iter().collect();
            top.remove("policy");
            toml_text(top, policy.into_iter().collect())
        };
        match Config::parse(&text).map_err(|e| e.to_string()) {
            Ok(c) => {
                prop_assert!(!c.runtime.is_empty());
                prop_assert!(c.runtime.starts_with('/') || !c.runtime.contains('/'));
                prop_assert!(c.policy.max_volumes_per_container >= 1);
                prop_assert!(c.policy.allowed_bases.iter().all(|p| p.path.is_absolute()));
                prop_assert!(c.policy.allowed_bind_sources.iter().all(|p| p.path.is_absolute()));
            }
            Err(e) => {
                prop_assert!(!e.trim().is_empty(), "{text:?}: empty error");
                prop_assert!(!e.contains('\n'), "{text:?}: {e:?}");
            }
        }
    }

    #[test]
    fn an_unknown_config_key_is_an_error_naming_it(
        key in "[a-zA-Z_.-]{1,16}",
        in_policy in any::<bool>(),
    ) {
        prop_assume!(!CONFIG_KEYS.contains(&key.as_str()));
        let one = || [(key.clone(), serde_json::json!(1))].into_iter().collect();
        let text = if in_policy {
            toml_text(Default::default(), one())
        } else {
            toml_text(one(), Default::default())
        };
        let e = Config::parse(&text).expect_err(&text).to_string();
        prop_assert!(e.contains(&key), "{text}: {e}");
    }
}

/// The checks the properties rely on are themselves right about the rules.
#[test]
fn helper_predicates_match_the_rules() {
    assert!(is_normal_absolute(Path::new("/a/b")));
    for bad in ["a", "/a/", "/a//b", "/a/./b", "/a/../b", ""] {
        assert!(!is_normal_absolute(Path::new(bad)), "{bad}");
    }
    assert!(!overlay_safe(Path::new("/a,b")));
    let traps = Traps::new();
    assert_eq!(
        std::fs::canonicalize(traps.at("/srv/escape/passwd")).unwrap(),
        std::fs::canonicalize(traps.at("/etc/passwd")).unwrap()
    );
    assert!(std::fs::canonicalize(traps.at("/srv/loop")).is_err());
    assert_eq!(annotations::VOLUMES, "io.ocivol.volumes");
}
