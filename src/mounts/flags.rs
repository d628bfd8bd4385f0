//! The mount flags a user may ask for on any volume (`ro`, `nosuid`, `nodev`, `noexec`), kept
//! typed from the annotation to the kernel: one table says what each is called in an OCI mount's
//! options (and so in ocivol's records) and which `MOUNT_ATTR_*` bit sets it.

use serde::{Deserialize, Serialize};

use super::api::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// One flag: its OCI mount option, its `MOUNT_ATTR_*` bit, and where [`MountFlags`] keeps it.
struct Flag {
    option: &'static str,
    attr: u64,
    field: fn(&mut MountFlags) -> &mut bool,
}

/// Every flag, in the order the options are written.
const FLAGS: [Flag; 4] = [
    Flag {
        option: "ro",
        attr: MOUNT_ATTR_RDONLY,
        field: |f| &mut f.readonly,
    },
    Flag {
        option: "nosuid",
        attr: MOUNT_ATTR_NOSUID,
        field: |f| &mut f.nosuid,
    },
    Flag {
        option: "nodev",
        attr: MOUNT_ATTR_NODEV,
        field: |f| &mut f.nodev,
    },
    Flag {
        option: "noexec",
        attr: MOUNT_ATTR_NOEXEC,
        field: |f| &mut f.noexec,
    },
];

impl Flag {
    fn is_set(&self, mut flags: MountFlags) -> bool {
        *(self.field)(&mut flags)
    }
}

impl MountFlags {
    /// Every flag set in either.
    pub fn union(self, other: MountFlags) -> MountFlags {
        MountFlags {
            readonly: self.readonly || other.readonly,
            nosuid: self.nosuid || other.nosuid,
            nodev: self.nodev || other.nodev,
            noexec: self.noexec || other.noexec,
        }
    }

    /// Sets the flag an OCI mount option names (`ro`, `nosuid`, `nodev`, `noexec`); `false` for
    /// any other option.
    pub fn set(&mut self, option: &str) -> bool {
        match FLAGS.iter().find(|f| f.option == option) {
            Some(f) => {
                *(f.field)(self) = true;
                true
            }
            None => false,
        }
    }

    /// The flags among an OCI mount's options; the other options (`rbind`, `rprivate`…) are
    /// not flags and are passed over.
    pub fn from_oci_options<S: AsRef<str>>(options: &[S]) -> MountFlags {
        let mut flags = MountFlags::default();
        for o in options {
            flags.set(o.as_ref());
        }
        flags
    }

    /// The options of the flags that are set (`ro`, `nosuid`…; nothing for none).
    pub fn set_options(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAGS.iter().filter(|f| f.is_set(*self)).map(|f| f.option)
    }

    /// The OCI mount options these flags stand for (without the bind options): `ro` or `rw`
    /// first, then the others that are set.
    pub fn oci_options(&self) -> Vec<String> {
        let mut out: Vec<String> = self.set_options().map(str::to_string).collect();
        if !self.readonly {
            out.insert(0, "rw".to_string());
        }
        out
    }

    /// The `MOUNT_ATTR_*` bits that set these flags (`mount_setattr`).
    pub fn mount_attr(&self) -> u64 {
        FLAGS
            .iter()
            .filter(|f| f.is_set(*self))
            .fold(0, |bits, f| bits | f.attr)
    }
}

/// Written as the OCI options ([`MountFlags::oci_options`]): `"options": ["ro", "nosuid"]` in a
/// container record, as every version has written them.
impl Serialize for MountFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.oci_options().serialize(s)
    }
}

/// Read from the OCI options; `rw` is no flag, and an option that is no flag is refused (a
/// record that says more than ocivol knows is not read as saying less).
impl<'de> Deserialize<'de> for MountFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let options = Vec::<String>::deserialize(d)?;
        let mut flags = MountFlags::default();
        for o in &options {
            if o != "rw" && !flags.set(o) {
                return Err(serde::de::Error::custom(format!(
                    "unknown mount option {o:?}; the options are rw, ro, nosuid, nodev, noexec"
                )));
            }
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> MountFlags {
        MountFlags {
            readonly: true,
            nosuid: true,
            nodev: true,
            noexec: true,
        }
    }

    #[test]
    fn each_flag_has_one_option_and_one_attr_bit() {
        for (i, f) in FLAGS.iter().enumerate() {
            let mut one = MountFlags::default();
            assert!(one.set(f.option), "{}", f.option);
            assert_eq!(one.mount_attr(), f.attr, "{}", f.option);
            assert_eq!(one.set_options().collect::<Vec<_>>(), [f.option]);
            // No two flags share a field, an option or a bit.
            for g in &FLAGS[i + 1..] {
                assert!(!g.is_set(one), "{} and {}", f.option, g.option);
                assert_ne!(f.attr, g.attr);
            }
        }
        assert_eq!(
            all().mount_attr(),
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        );
        assert_eq!(MountFlags::default().mount_attr(), 0);
    }

    #[test]
    fn oci_options_read_back_as_the_same_flags() {
        assert_eq!(MountFlags::default().oci_options(), ["rw"]);
        assert_eq!(all().oci_options(), ["ro", "nosuid", "nodev", "noexec"]);
        let some = MountFlags {
            nodev: true,
            ..Default::default()
        };
        assert_eq!(some.oci_options(), ["rw", "nodev"]);
        for f in [MountFlags::default(), all(), some] {
            assert_eq!(MountFlags::from_oci_options(&f.oci_options()), f);
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(serde_json::from_str::<MountFlags>(&json).unwrap(), f);
        }
        // An engine's options: the flags among them, the rest passed over.
        assert_eq!(
            MountFlags::from_oci_options(&["rbind", "rprivate", "nosuid", "ro"]),
            MountFlags {
                readonly: true,
                nosuid: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_record_option_that_is_no_flag_is_refused() {
        let e = serde_json::from_str::<MountFlags>(r#"["rw","nosymfollow"]"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown mount option \"nosymfollow\""),
            "{e}"
        );
    }
}
