//! Helpers shared by the integration tests. Each test file uses only some
//! of them, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod btrfs;
pub mod cli;
pub mod dbus;
pub mod process;
pub mod prometheus;
pub mod require;
pub mod sdboot;
pub mod tree;
pub mod user;
