//! Tar archives of a volume's content: what `ocivol volume export` writes and `import` reads,
//! and the OCI image layer of a copy-on-write volume's changes (`export --changes`).
//!
//! The format is plain tar as GNU tar and `podman volume export` write it: names relative
//! (`./`, `./dir/`, `./dir/file`), numeric owners, modes, modification times, hard links as
//! link entries, sparse files as GNU sparse entries, extended attributes as PAX
//! `SCHILY.xattr.NAME` records (the ones copy-up carries: `user.*`, `security.capability`,
//! POSIX ACLs; never `trusted.*` nor the overlay's `user.overlay.*`). The `tar` crate reads and
//! writes the headers; the walk and every file operation are ocivol's own, on fds:
//!
//! - [`write`] walks an open directory with a bounded number of fds (as `util/tree.rs` and
//!   `copyup.rs` do), never following a symlink nor entering another mount;
//! - [`extract`] writes into an open directory of ocivol's own: every name is taken apart
//!   into components, `..` and absolute names are refused, each parent directory is opened
//!   beneath the root with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, so a
//!   symlink the archive (or the volume) holds is never followed (`link -> /etc` then
//!   `link/passwd` fails), and every file is created `O_EXCL | O_NOFOLLOW` and given its owner
//!   and mode through its fd.
//!
//! OCI layers ([`Kind::Layer`]): an overlay whiteout (a 0:0 character device in the upper
//! directory) is written as an empty `.wh.NAME`, an opaque directory (`trusted.overlay.opaque`
//! or `user.overlay.opaque` = `y`) as its entry followed by `DIR/.wh..wh..opq`, as the OCI image
//! spec's "Representing Changes" says; [`extract`] applies them the same way when asked to.

pub mod extract;
pub mod write;

pub use extract::{Extracted, extract};
pub use write::write;

/// What an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory's content as it is.
    Full,
    /// An overlay's upper directory as an OCI image layer (whiteouts and opaque directories
    /// written the OCI way), or, when extracting, an OCI layer applied (its whiteouts remove).
    Layer,
}

/// The prefix of an OCI whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of an OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The PAX record prefix of an extended attribute (GNU tar's, libarchive's and Go's).
const PAX_XATTR: &str = "SCHILY.xattr.";
