//! The real seams of one system, opened from its configuration: the boot
//! environment, the snapshot store, the actions, history and state. Every
//! subcommand that reads or changes the boot state starts here.

use std::path::PathBuf;

use anyhow::{bail, Context};
use grub_env::{Location, RealFs, Store};

use crate::actions::{ActionSettings, Bus, SystemActions};
use crate::bootloader::LoaderEnv;
use crate::config::{self, Config};
use crate::engine::{BootEnv, BootState, EngineConfig};
use crate::exit::{Code, CodeExt};
use crate::history::History;
use crate::paths::{Root, STATE_DIR};
use crate::probes::ProbeContext;
use crate::snapshots::{BtrfsSnapshots, SnapshotRef, Snapshots};
use crate::state::StateFile;

/// Byte offset of the btrfs reserved-area environment block that patched
/// GRUBs read as `env_block=512+1` (sector 512).
pub const ENV_BLOCK_OFFSET: u64 = 256 * 1024;
/// Its size: one sector.
pub const ENV_BLOCK_SIZE: usize = 512;

/// The configuration, or why it could not be read. A configuration that
/// cannot be read is a failed probe, never a pass: callers that judge the
/// boot use the defaults for everything else and fail the phase.
#[derive(Debug)]
pub struct LoadedConfig {
    pub config: Config,
    pub error: Option<String>,
}

impl LoadedConfig {
    pub fn load(root: &Root) -> Self {
        match config::load(root) {
            Ok(l) => LoadedConfig {
                config: l.config,
                error: None,
            },
            Err(e) => LoadedConfig {
                config: Config::default(),
                error: Some(e.to_string()),
            },
        }
    }

    /// The configuration, or an error (exit code 3) for commands that must
    /// not guess.
    pub fn required(self) -> anyhow::Result<Config> {
        match self.error {
            None => Ok(self.config),
            Some(e) => Err(crate::exit::with_code(
                Code::Config,
                anyhow::anyhow!("configuration: {e}"),
            )),
        }
    }
}

/// The boot environment store the configuration names, under `root`.
pub fn env_store(root: &Root, config: &Config) -> anyhow::Result<Store> {
    let file = root.join(&config.bootenv.path);
    let use_block = match config.bootenv.location {
        config::Location::File => false,
        config::Location::EnvBlock => true,
        config::Location::Auto => {
            !file.parent().is_some_and(|d| d.is_dir()) && !config.bootenv.device.is_empty()
        }
    };
    if !use_block {
        return Ok(Store::for_file(file));
    }
    let device = if config.bootenv.device.is_empty() {
        root_device(root).code(Code::Config)?
    } else {
        PathBuf::from(&config.bootenv.device)
    };
    let backup = root.join(STATE_DIR).join("grubenv-block.bak");
    Ok(Store::with_locations(
        RealFs,
        Location::Block {
            path: device.clone(),
            offset: ENV_BLOCK_OFFSET,
            size: ENV_BLOCK_SIZE,
        },
        Location::File(backup),
        device,
    ))
}

/// The device of the btrfs file system mounted at `root` (the default of
/// `[bootenv] device`).
pub fn root_device(root: &Root) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(root.dir())
        .with_context(|| format!("resolving {}", root.dir().display()))?;
    let mounts = crate::snapshots::mountinfo::read()?;
    match crate::snapshots::mountinfo::mount_of(&mounts, &dir) {
        Some(m) if m.fs_type == "btrfs" && m.source.starts_with('/') => Ok(m.source.clone().into()),
        Some(m) => bail!(
            "[bootenv] device is empty and the root file system {} is {} on {:?}, \
             not a btrfs device: set [bootenv] device",
            dir.display(),
            m.fs_type,
            m.source
        ),
        None => bail!(
            "[bootenv] device is empty and no mount holds {}: set [bootenv] device",
            dir.display()
        ),
    }
}

/// The engine's settings from the configuration.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        tries: config.boot.tries,
        good_failure_reboots: config.boot.good_failure_reboots,
        act_on_manual_boot: config.boot.act_on_manual_boot,
        unreadable: None,
    }
}

/// The actions' settings from the configuration.
pub fn action_settings(config: &Config, bus: Bus, no_reboot: bool) -> ActionSettings {
    ActionSettings {
        no_reboot: no_reboot || config.boot.no_reboot,
        motd: config.degraded.motd,
        wall: config.degraded.wall,
        alert_dir: config.degraded.alert_dir.clone(),
        alert_timeout: config.degraded.alert_timeout.into(),
        stop_timeout: config.degraded.stop_timeout.into(),
        bus,
        ..ActionSettings::default()
    }
}

/// One system's seams.
#[derive(Debug)]
pub struct System {
    pub root: Root,
    pub config: Config,
    pub env: LoaderEnv,
    pub snapshots: BtrfsSnapshots,
    pub actions: SystemActions,
    pub history: History,
    pub state: StateFile,
    pub bus: Bus,
}

impl System {
    pub fn open(root: &Root, config: Config, bus: Bus, no_reboot: bool) -> anyhow::Result<Self> {
        let env = LoaderEnv::open(root, &config).code(Code::Config)?;
        Ok(System {
            root: root.clone(),
            env,
            snapshots: BtrfsSnapshots::new(root.clone()),
            actions: SystemActions::new(
                root.clone(),
                action_settings(&config, bus.clone(), no_reboot),
            ),
            history: History::new(root),
            state: StateFile::new(root),
            config,
            bus,
        })
    }

    /// The boot state from the environment.
    pub fn boot_state(&self) -> anyhow::Result<BootState> {
        self.env.load().code(Code::BootEnv)
    }

    /// Rewrite the Prometheus metrics from the records; a warning when that
    /// failed (it never changes a verdict).
    pub fn refresh_metrics(&self) -> Option<String> {
        crate::metrics::refresh(
            &self.root,
            &self.config,
            &self.history,
            &self.state,
            &self.env,
        )
    }

    /// The booted snapshot.
    pub fn booted(&self) -> anyhow::Result<SnapshotRef> {
        self.snapshots
            .booted()
            .context("finding the booted snapshot")
            .code(Code::Snapshot)
    }

    /// The probe context for this boot: the booted snapshot and whether it
    /// is judged as a trial (what plugins see in `HC_SNAPSHOT`, `HC_TRIAL`),
    /// by the engine's rule. When the role cannot be read, `HC_TRIAL` is 0
    /// (the engine then fails to judge the boot anyway).
    pub fn probe_context(&self, base: ProbeContext) -> ProbeContext {
        let mut ctx = base;
        ctx.bus = self.bus.clone();
        match crate::engine::booted_role(&self.env, &self.snapshots) {
            Ok((b, role)) => {
                ctx.trial = role.is_trial();
                ctx.snapshot = Some(b.path);
                ctx.snapshot_id = Some(b.id);
            }
            Err(e) => {
                tracing::debug!("the booted snapshot's role is unknown: {e:#}");
                if let Ok(b) = self.snapshots.booted() {
                    ctx.snapshot = Some(b.path);
                    ctx.snapshot_id = Some(b.id);
                }
            }
        }
        ctx
    }
}
