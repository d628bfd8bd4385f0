//! config.json read as runc reads it, so that ocivol takes every spec the real runtime takes.
//!
//! runc 1.1 reads the file with Go's `json.NewDecoder(f).Decode(&spec)`, which differs from a
//! strict JSON reader in ways a spec can show:
//!
//! - only the first JSON value is read; bytes after it are ignored;
//! - an object key matches a struct field case-insensitively (`"Destination"`, `"MOUNTS"`; Go
//!   also folds `ſ` to `s` and the Kelvin sign to `k`), an exact match first;
//! - invalid UTF-8 in a string becomes U+FFFD, one per bad byte; so does a `\u` escape of a lone
//!   UTF-16 surrogate;
//! - a key given twice for one struct field (`"mounts"` and `"Mounts"`, or `"process"` twice)
//!   is decoded twice into the same field, merging the second into the first element by element.
//!
//! [`decode`] does the same for the first three and writes case variants as the runtime spec
//! names them (`"MOUNTS"` becomes `"mounts"`): what runc reads does not change, and every later
//! reader (ocivol's hook, volumes-from, the engine) sees one spelling. The fourth it refuses,
//! naming both keys: ocivol would have to reproduce Go's merge to rewrite such a file, and no
//! engine writes one. Keys that are not fields of the runtime spec are kept as they are (a key
//! repeated there keeps its last value; runc ignores them).
//!
//! [`has_ocivol_key`] decides whether ocivol has anything to do with a spec at all, at the cost
//! of a byte search for almost every spec (see there).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::annotations::PREFIX;

/// A JSON value with its object keys in order, repeated keys included.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar(Value),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Scalar(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(n) = seq.next_element()? {
                    out.push(n);
                }
                Ok(Node::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    out.push((k, v));
                }
                Ok(Node::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Node {
    /// As a plain JSON value: a repeated key keeps its last value.
    fn into_value(self) -> Value {
        match self {
            Node::Scalar(v) => v,
            Node::Array(a) => Value::Array(a.into_iter().map(Node::into_value).collect()),
            Node::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, v.into_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }
}

/// The text as Go's decoder sees it: invalid UTF-8 and escaped lone surrogates become U+FFFD.
fn go_text(bytes: &[u8]) -> Cow<'_, str> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => Cow::Owned(replace_bad_utf8(bytes)),
    };
    if !text.contains("\\ud") && !text.contains("\\uD") {
        return text;
    }
    Cow::Owned(replace_lone_surrogates(&text))
}

/// Each byte of an invalid UTF-8 sequence becomes U+FFFD, as Go's `utf8.DecodeRune` loop does.
fn replace_bad_utf8(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(t) => {
                out.push_str(t);
                return out;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                out.extend(std::iter::repeat_n('\u{FFFD}', bad));
                bytes = &rest[bad..];
            }
        }
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(s.get(..4)?).ok()?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// In strings, a `\uXXXX` surrogate that is not the first of a valid pair (a high surrogate
/// followed by an escaped low one) becomes `\ufffd`, as in Go's `unquote`.
fn replace_lone_surrogates(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut start, mut in_string) = (0, 0, false);
    while i < b.len() {
        match b[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => {
                let code = (b.get(i + 1) == Some(&b'u'))
                    .then(|| hex4(&b[i + 2..]))
                    .flatten();
                let Some(code) = code else {
                    i += 2;
                    continue;
                };
                let surrogate = (0xD800..0xE000).contains(&code);
                let pair = (0xD800..0xDC00).contains(&code)
                    && b.get(i + 6..i + 8) == Some(b"\\u")
                    && hex4(&b[i + 8..]).is_some_and(|c| (0xDC00..0xE000).contains(&c));
                if pair {
                    i += 12;
                } else if surrogate {
                    out.push_str(&text[start..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    start = i;
                } else {
                    i += 6;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[start.min(text.len())..]);
    out
}

/// The first JSON value of the text; what follows it is ignored, as by Go's `Decoder.Decode`.
fn first_value(bytes: &[u8]) -> Result<Node, String> {
    let text = go_text(bytes);
    let mut de = serde_json::Deserializer::from_str(&text);
    Node::deserialize(&mut de).map_err(|e| e.to_string())
}

/// Go's case-insensitive match of a JSON key to a field name (ASCII letters fold, `ſ` is `s`,
/// the Kelvin sign is `k`, everything else must be equal).
fn go_fold_eq(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

/// The field of a struct a key sets: an exact match first, else the first case-insensitive one.
fn field_of<'a>(fields: &'a [(&'static str, Ty)], key: &str) -> Option<&'a (&'static str, Ty)> {
    fields
        .iter()
        .find(|(name, _)| *name == key)
        .or_else(|| fields.iter().find(|(name, _)| go_fold_eq(key, name)))
}

/// Whether ocivol has anything to do with this config.json: whether, read as runc reads it, its
/// `annotations` have a key starting with `io.ocivol.`.
///
/// Cheap for almost every spec: the bytes are searched for `io.ocivol.`, and for a `\u` escape
/// of one of its characters (`io\u002eocivol.volumes` is the same key to Go); with neither,
/// there is no such key and nothing is parsed. Otherwise the annotations alone are read, with
/// Go's rules (the first value only, `"Annotations"` for `annotations`, repeated annotations
/// objects merged, `null` clearing them); nothing else of the spec is checked.
///
/// A text that is not JSON at all has no key to runc either, which will refuse it with its own
/// message; but if `io.ocivol.` appears in it, it is an error here: the spec may ask for volumes,
/// and a container must not start without them.
pub fn has_ocivol_key(bytes: &[u8]) -> Result<bool, String> {
    let literal = names_ocivol_literally(bytes);
    if !literal && !escapes_a_prefix_char(bytes) {
        return Ok(false);
    }
    let node = match first_value(bytes) {
        Ok(n) => n,
        Err(e) if literal => return Err(e),
        Err(_) => return Ok(false),
    };
    let Node::Object(top) = node else {
        return Ok(false);
    };
    let mut keys: Vec<String> = Vec::new();
    for (key, value) in top {
        if field_of(SPEC, &key).map(|(name, _)| *name) != Some("annotations") {
            continue;
        }
        match value {
            Node::Object(pairs) => keys.extend(
                pairs
                    .into_iter()
                    .filter(|(_, v)| matches!(v, Node::Scalar(Value::String(_))))
                    .map(|(k, _)| k),
            ),
            // Go sets the map to nil.
            Node::Scalar(Value::Null) => keys.clear(),
            // A type runc refuses: it will say so.
            _ => {}
        }
    }
    Ok(keys.iter().any(|k| k.starts_with(PREFIX)))
}

/// Whether [`has_ocivol_key`] could be true at all: `io.ocivol.` or a `\u` escape of one of its
/// characters appears in the bytes. False for almost every spec, and then nothing is parsed.
pub fn may_name_ocivol(bytes: &[u8]) -> bool {
    names_ocivol_literally(bytes) || escapes_a_prefix_char(bytes)
}

fn names_ocivol_literally(bytes: &[u8]) -> bool {
    !find_all(bytes, PREFIX).is_empty()
}

/// Where `needle` occurs in `bytes`. UTF-8 text (what every config.json is) is searched with
/// `str`'s searcher, which needs no CPU feature detection; memchr's first search runs CPUID
/// several times, and on a VM each one exits to the hypervisor (about 7 us each, on every
/// start through the wrapper). Other bytes go to memchr.
fn find_all(bytes: &[u8], needle: &str) -> Vec<usize> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.match_indices(needle).map(|(i, _)| i).collect(),
        Err(_) => memchr::memmem::find_iter(bytes, needle.as_bytes()).collect(),
    }
}

/// Whether a `\uXXXX` escape of a character of `io.ocivol.` appears.
fn escapes_a_prefix_char(bytes: &[u8]) -> bool {
    find_all(bytes, "\\u").into_iter().any(|i| {
        hex4(&bytes[i + 2..])
            .and_then(char::from_u32)
            .is_some_and(|c| PREFIX.contains(c))
    })
}

/// Reads a config.json as runc does (see the module's notes) into a JSON value whose keys that
/// name runtime-spec fields are spelled as the spec spells them. Refuses a field set twice.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let node = first_value(bytes)?;
    normalise(node, Ty::Struct(SPEC), &mut String::new())
}

fn normalise(node: Node, ty: Ty, at: &mut String) -> Result<Value, String> {
    match (node, ty) {
        (Node::Object(pairs), Ty::Struct(fields)) => {
            let mut out = Map::new();
            let mut seen: Vec<(&'static str, String)> = Vec::new();
            for (key, value) in pairs {
                let Some((name, ty)) = field_of(fields, &key) else {
                    out.insert(key, value.into_value());
                    continue;
                };
                if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
                    let place = if at.is_empty() { "/" } else { at.as_str() };
                    return Err(format!(
                        "the keys \"{first}\" and \"{key}\" at {place} both set the runtime \
                         spec's field \"{name}\"; runc merges the two, which ocivol cannot write \
                         back as runc would read it: keep one of them"
                    ));
                }
                seen.push((name, key));
                let len = at.len();
                at.push('/');
                at.push_str(name);
                let v = normalise(value, *ty, at)?;
                at.truncate(len);
                out.insert(name.to_string(), v);
            }
            Ok(Value::Object(out))
        }
        (Node::Object(pairs), Ty::Map(ty)) => {
            let mut out = Map::new();
            for (key, value) in pairs {
                let len = at.len();
                at.push('/');
                at.push_str(&key);
                let v = normalise(value, *ty, at)?;
                at.truncate(len);
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
        (Node::Array(items), Ty::Array(ty)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                out.push(normalise(item, *ty, at)?);
                at.truncate(len);
            }
            Ok(Value::Array(out))
        }
        // A leaf, or a type runc refuses (and will say so).
        (node, _) => Ok(node.into_value()),
    }
}

/// A field's type, as far as decoding cares: a struct (its fields), an array or a map of
/// something, or anything else (a string, number, bool, or a list of those).
#[derive(Debug, Clone, Copy)]
enum Ty {
    Any,
    Struct(&'static [(&'static str, Ty)]),
    Array(&'static Ty),
    Map(&'static Ty),
}

use Ty::Any;

/// The runtime spec's `Spec` as runc 1.1 reads it (runtime-spec 1.0.2 and what runc vendors
/// beyond it): every struct's JSON field names.
const SPEC: &[(&str, Ty)] = &[
    ("ociVersion", Any),
    ("process", Ty::Struct(PROCESS)),
    ("root", Ty::Struct(&[("path", Any), ("readonly", Any)])),
    ("hostname", Any),
    ("mounts", Ty::Array(&Ty::Struct(MOUNT))),
    ("hooks", Ty::Struct(HOOKS)),
    ("annotations", Ty::Map(&Any)),
    ("linux", Ty::Struct(LINUX)),
    ("solaris", Ty::Struct(SOLARIS)),
    ("windows", Ty::Struct(WINDOWS)),
    ("vm", Ty::Struct(VM)),
];

const PROCESS: &[(&str, Ty)] = &[
    ("terminal", Any),
    (
        "consoleSize",
        Ty::Struct(&[("height", Any), ("width", Any)]),
    ),
    (
        "user",
        Ty::Struct(&[
            ("uid", Any),
            ("gid", Any),
            ("umask", Any),
            ("additionalGids", Any),
            ("username", Any),
        ]),
    ),
    ("args", Any),
    ("commandLine", Any),
    ("env", Any),
    ("cwd", Any),
    (
        "capabilities",
        Ty::Struct(&[
            ("bounding", Any),
            ("effective", Any),
            ("inheritable", Any),
            ("permitted", Any),
            ("ambient", Any),
        ]),
    ),
    (
        "rlimits",
        Ty::Array(&Ty::Struct(&[("type", Any), ("hard", Any), ("soft", Any)])),
    ),
    ("noNewPrivileges", Any),
    ("apparmorProfile", Any),
    ("oomScoreAdj", Any),
    ("selinuxLabel", Any),
];

const MOUNT: &[(&str, Ty)] = &[
    ("destination", Any),
    ("type", Any),
    ("source", Any),
    ("options", Any),
];

const HOOK: Ty = Ty::Array(&Ty::Struct(&[
    ("path", Any),
    ("args", Any),
    ("env", Any),
    ("timeout", Any),
]));

const HOOKS: &[(&str, Ty)] = &[
    ("prestart", HOOK),
    ("createRuntime", HOOK),
    ("createContainer", HOOK),
    ("startContainer", HOOK),
    ("poststart", HOOK),
    ("poststop", HOOK),
];

const ID_MAPPING: Ty = Ty::Array(&Ty::Struct(&[
    ("containerID", Any),
    ("hostID", Any),
    ("size", Any),
]));

const LINUX: &[(&str, Ty)] = &[
    ("uidMappings", ID_MAPPING),
    ("gidMappings", ID_MAPPING),
    ("sysctl", Ty::Map(&Any)),
    ("resources", Ty::Struct(RESOURCES)),
    ("cgroupsPath", Any),
    (
        "namespaces",
        Ty::Array(&Ty::Struct(&[("type", Any), ("path", Any)])),
    ),
    (
        "devices",
        Ty::Array(&Ty::Struct(&[
            ("path", Any),
            ("type", Any),
            ("major", Any),
            ("minor", Any),
            ("fileMode", Any),
            ("uid", Any),
            ("gid", Any),
        ])),
    ),
    ("seccomp", Ty::Struct(SECCOMP)),
    ("rootfsPropagation", Any),
    ("maskedPaths", Any),
    ("readonlyPaths", Any),
    ("mountLabel", Any),
    (
        "intelRdt",
        Ty::Struct(&[
            ("closID", Any),
            ("l3CacheSchema", Any),
            ("memBwSchema", Any),
        ]),
    ),
    (
        "personality",
        Ty::Struct(&[("domain", Any), ("flags", Any)]),
    ),
];

const WEIGHT_DEVICE: Ty = Ty::Array(&Ty::Struct(&[
    ("major", Any),
    ("minor", Any),
    ("weight", Any),
    ("leafWeight", Any),
]));

const THROTTLE_DEVICE: Ty = Ty::Array(&Ty::Struct(&[
    ("major", Any),
    ("minor", Any),
    ("rate", Any),
]));

const RESOURCES: &[(&str, Ty)] = &[
    (
        "devices",
        Ty::Array(&Ty::Struct(&[
            ("allow", Any),
            ("type", Any),
            ("major", Any),
            ("minor", Any),
            ("access", Any),
        ])),
    ),
    (
        "memory",
        Ty::Struct(&[
            ("limit", Any),
            ("reservation", Any),
            ("swap", Any),
            ("kernel", Any),
            ("kernelTCP", Any),
            ("swappiness", Any),
            ("disableOOMKiller", Any),
            ("useHierarchy", Any),
        ]),
    ),
    (
        "cpu",
        Ty::Struct(&[
            ("shares", Any),
            ("quota", Any),
            ("period", Any),
            ("realtimeRuntime", Any),
            ("realtimePeriod", Any),
            ("cpus", Any),
            ("mems", Any),
        ]),
    ),
    ("pids", Ty::Struct(&[("limit", Any)])),
    (
        "blockIO",
        Ty::Struct(&[
            ("weight", Any),
            ("leafWeight", Any),
            ("weightDevice", WEIGHT_DEVICE),
            ("throttleReadBpsDevice", THROTTLE_DEVICE),
            ("throttleWriteBpsDevice", THROTTLE_DEVICE),
            ("throttleReadIOPSDevice", THROTTLE_DEVICE),
            ("throttleWriteIOPSDevice", THROTTLE_DEVICE),
        ]),
    ),
    (
        "hugepageLimits",
        Ty::Array(&Ty::Struct(&[("pageSize", Any), ("limit", Any)])),
    ),
    (
        "network",
        Ty::Struct(&[
            ("classID", Any),
            (
                "priorities",
                Ty::Array(&Ty::Struct(&[("name", Any), ("priority", Any)])),
            ),
        ]),
    ),
    (
        "rdma",
        Ty::Map(&Ty::Struct(&[("hcaHandles", Any), ("hcaObjects", Any)])),
    ),
    ("unified", Ty::Map(&Any)),
];

const SECCOMP: &[(&str, Ty)] = &[
    ("defaultAction", Any),
    ("defaultErrnoRet", Any),
    ("architectures", Any),
    ("flags", Any),
    ("listenerPath", Any),
    ("listenerMetadata", Any),
    (
        "syscalls",
        Ty::Array(&Ty::Struct(&[
            ("names", Any),
            ("action", Any),
            ("errnoRet", Any),
            (
                "args",
                Ty::Array(&Ty::Struct(&[
                    ("index", Any),
                    ("value", Any),
                    ("valueTwo", Any),
                    ("op", Any),
                ])),
            ),
        ])),
    ),
];

const SOLARIS: &[(&str, Ty)] = &[
    ("milestone", Any),
    ("limitpriv", Any),
    ("maxShmMemory", Any),
    (
        "anet",
        Ty::Array(&Ty::Struct(&[
            ("linkname", Any),
            ("lowerLink", Any),
            ("allowedAddress", Any),
            ("configureAllowedAddress", Any),
            ("defrouter", Any),
            ("linkProtection", Any),
            ("macAddress", Any),
        ])),
    ),
    ("cappedCPU", Ty::Struct(&[("ncpus", Any)])),
    (
        "cappedMemory",
        Ty::Struct(&[("physical", Any), ("swap", Any)]),
    ),
];

const WINDOWS: &[(&str, Ty)] = &[
    ("layerFolders", Any),
    (
        "devices",
        Ty::Array(&Ty::Struct(&[("id", Any), ("idType", Any)])),
    ),
    (
        "resources",
        Ty::Struct(&[
            ("memory", Ty::Struct(&[("limit", Any)])),
            (
                "cpu",
                Ty::Struct(&[("count", Any), ("shares", Any), ("maximum", Any)]),
            ),
            (
                "storage",
                Ty::Struct(&[("iops", Any), ("bps", Any), ("sandboxSize", Any)]),
            ),
        ]),
    ),
    ("credentialSpec", Any),
    ("servicing", Any),
    ("ignoreFlushesDuringBoot", Any),
    ("hyperv", Ty::Struct(&[("utilityVMPath", Any)])),
    (
        "network",
        Ty::Struct(&[
            ("endpointList", Any),
            ("allowUnqualifiedDNSQuery", Any),
            ("DNSSearchList", Any),
            ("networkSharedContainerName", Any),
            ("networkNamespace", Any),
        ]),
    ),
];

const VM: &[(&str, Ty)] = &[
    (
        "hypervisor",
        Ty::Struct(&[("path", Any), ("parameters", Any)]),
    ),
    (
        "kernel",
        Ty::Struct(&[("path", Any), ("parameters", Any), ("initrd", Any)]),
    ),
    ("image", Ty::Struct(&[("path", Any), ("format", Any)])),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_search_finds_the_same_in_text_and_in_bytes_that_are_not_utf8() {
        let text = br#"{"annotations": {"io.ocivol.v": "a", "b": "\u0069o.ocivol.x"}}"#;
        // The same with an invalid byte in a value (Go reads it as U+FFFD).
        let mut bad = text.to_vec();
        bad[33] = 0xff;
        assert_eq!(&text[32..35], b"\"a\"");
        assert!(std::str::from_utf8(&bad).is_err());
        for bytes in [&text[..], &bad] {
            assert_eq!(find_all(bytes, PREFIX), [18]);
            assert_eq!(find_all(bytes, "\\u"), [43]);
        }
        assert!(find_all(b"", PREFIX).is_empty());
        for bytes in [&text[..], &bad] {
            assert_eq!(has_ocivol_key(bytes), Ok(true));
            assert!(escapes_a_prefix_char(bytes));
        }
    }

    #[test]
    fn bytes_after_the_first_value_are_ignored() {
        let v = decode(b" {\"ociVersion\": \"1.0.2\"}\n{\"more\": 1} garbage").unwrap();
        assert_eq!(v, json!({"ociVersion": "1.0.2"}));
        assert!(decode(b"{\"a\": ").is_err());
    }

    #[test]
    fn case_variants_map_to_fields() {
        let v = decode(
            br#"{"MOUNTS": [{"Destination": "/d", "TYPE": "bind"}],
                 "Annotations": {"Keep.Case": "x"},
                 "linux": {"UIDMAPPINGS": [{"ContainerId": 0, "HOSTid": 1000, "Size": 1}],
                           "Sysctl": {"Net.X": "1"}},
                 "Vendor.Key": {"Destination": "kept"}}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "mounts": [{"destination": "/d", "type": "bind"}],
                "annotations": {"Keep.Case": "x"},
                "linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                          "sysctl": {"Net.X": "1"}},
                "Vendor.Key": {"Destination": "kept"}
            })
        );
        // Go folds ſ (U+017F) to s and the Kelvin sign to k.
        let v = decode("{\"annotation\u{017F}\": {\"a\": \"b\"}, \"HOO\u{212A}S\": {}}".as_bytes())
            .unwrap();
        assert_eq!(v, json!({"annotations": {"a": "b"}, "hooks": {}}));
    }

    #[test]
    fn a_field_set_twice_is_refused_naming_both_keys() {
        for (text, keys) in [
            (
                &br#"{"mounts": [], "Mounts": []}"#[..],
                ["mounts", "Mounts"],
            ),
            (br#"{"process": {}, "process": {}}"#, ["process", "process"]),
            (
                br#"{"linux": {"namespaces": [{"type": "pid", "Type": "user"}]}}"#,
                ["type", "Type"],
            ),
        ] {
            let e = decode(text).unwrap_err();
            assert!(
                e.contains(&format!("\"{}\" and \"{}\"", keys[0], keys[1])),
                "{e}"
            );
        }
        // In a map, or outside the spec's fields, a repeated key is not a field set twice.
        assert_eq!(
            decode(br#"{"annotations": {"a": "1", "a": "2", "A": "3"}, "x": 1, "x": 2}"#).unwrap(),
            json!({"annotations": {"a": "2", "A": "3"}, "x": 2})
        );
    }

    /// What Go reads only because it skips unknown fields is refused with serde's message.
    #[test]
    fn json_serde_cannot_hold_is_refused() {
        let e = decode(br#"{"vendor.x": 1e400}"#).unwrap_err();
        assert!(e.contains("number out of range"), "{e}");
        let deep = format!("{{\"x\": {}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn bad_utf8_and_lone_surrogates_become_replacement_characters() {
        let v = decode(b"{\"hostname\": \"a\xffb\xe2\x82c\"}").unwrap();
        assert_eq!(v["hostname"], "a\u{FFFD}b\u{FFFD}\u{FFFD}c");
        let v = decode(br#"{"hostname": "\ud800x\udc00\ud83d\ude00\ud800\ud800"}"#).unwrap();
        assert_eq!(v["hostname"], "\u{FFFD}x\u{FFFD}\u{1F600}\u{FFFD}\u{FFFD}");
        // An escaped backslash before "u" is not an escape.
        let v = decode(br#"{"hostname": "\\ud800"}"#).unwrap();
        assert_eq!(v["hostname"], "\\ud800");
    }

    #[test]
    fn ocivol_keys_are_found_as_runc_reads_annotations() {
        let yes: &[&[u8]] = &[
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}}"#,
            br#"{"Annotations": {"io\u002eocivol.volumes": "v:/v"}} trailing"#,
            br#"{"annotations": {"\u0069o.ocivol.volumes-from": "a"}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}, "ANNOTATIONS": {"x": "y"}}"#,
        ];
        for text in yes {
            assert_eq!(
                has_ocivol_key(text),
                Ok(true),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let no: &[&[u8]] = &[
            br#"{"annotations": {"other": "io.ocivol.volumes"}}"#,
            br#"{"process": {"env": ["io.ocivol.volumes=v:/v"]}}"#,
            br#"{"annotations": {"io.ocivol.volumes": "v:/v"}, "annotations": null}"#,
            br#"{"annotations": {"io.ocivol.volumes": 3}}"#,
            br#"[{"annotations": {"io.ocivol.volumes": "v"}}]"#,
            br#"{"annotations": {"\u0026": "x"}}"#,
            b"not json at all \\u0069",
            b"",
        ];
        for text in no {
            assert_eq!(
                has_ocivol_key(text),
                Ok(false),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // Broken JSON that names ocivol: an error rather than a container without its volumes.
        assert!(has_ocivol_key(br#"{"annotations": {"io.ocivol.volumes": "v"#).is_err());
    }
}
