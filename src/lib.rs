//! ocivol: Docker-style volumes for every OCI engine, driven by container annotations.
//!
//! The data path, one module per step:
//! [`annotations`] → [`plan`] (with [`config`]'s policy) → [`store`] (with [`mounts`]) →
//! [`spec`], with [`volumes_from`] and [`scope`] adding other containers' volumes and [`copyup`]
//! filling a new volume from the image; [`prepare`] runs the whole path, [`runtime`] is the runc wrapper that calls it.
//! [`real_runtime`] finds the real runtime and asks it about containers; [`container_id`] holds
//! the rules for a container's ID and its key in ocivol's state.
//! [`commands`] are the operator's subcommands; [`process`] tells a live container from a dead
//! one for the store's reconciliation; [`crash`] injects crashes in tests.

pub mod annotations;
pub mod archive;
pub mod commands;
pub mod config;
pub mod container_id;
pub mod copyup;
pub mod crash;
pub mod durable;
pub mod hook;
pub mod mounts;
pub mod pin;
pub mod plan;
pub mod prepare;
pub mod process;
pub mod real_runtime;
pub mod rootfs;
pub mod runtime;
pub mod scope;
pub mod setup;
pub mod spec;
pub mod staging;
pub mod store;
pub mod userns;
mod util;
pub mod volumes_from;

/// dlmalloc, not the libc's allocator, for everything that links ocivol (the binary, its
/// tests and benchmarks). ocivol is built for musl (see .cargo/config.toml), whose allocator
/// gives memory back to the kernel as soon as it is free: a munmap, and a TLB shootdown on every
/// other CPU, many times per container start. With it, a start with ten volumes cost 0.5 ms
/// more than with glibc's allocator; dlmalloc keeps freed memory for the next allocation, as
/// glibc's does (docs/PERFORMANCE.md, "musl").
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;
