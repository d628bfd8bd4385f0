//! ocivol: Docker-style volumes for every OCI engine, driven by container annotations.
//!
//! The data path, one module per step:
//! [`annotations`] → [`plan`] (with [`config`]'s policy) → [`store`] (with [`mounts`]) →
//! [`spec`], with [`volumes_from`] and [`scope`] adding other containers' volumes; [`prepare`] runs the whole path, [`runtime`] is the runc wrapper that calls it.

pub mod annotations;
pub mod config;
pub mod hook;
pub mod mounts;
pub mod plan;
pub mod prepare;
pub mod runtime;
pub mod scope;
pub mod spec;
pub mod store;
mod util;
pub mod volumes_from;
