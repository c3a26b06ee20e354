//! health-checker: boot health checks and automatic rollback for systems whose
//! root filesystem is a btrfs snapshot.
//!
//! The binary (`main.rs`) is a thin shell over this library. Every touch of
//! the operating system goes through a small seam that takes a root
//! directory, so the same code runs on `/`, on a mounted image (`--root`) and
//! in tests on a temporary directory.

pub mod actions;
pub mod bootenv;
pub mod bootloader;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dbus_service;
pub mod engine;
pub mod exit;
pub mod fsutil;
pub mod generate;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod probes;
pub mod snapshots;
pub mod state;
pub mod systemd;
pub mod toml_error;
pub mod verdict;
