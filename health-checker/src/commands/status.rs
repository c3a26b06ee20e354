//! `health-checker status [--json]`: what the system is running, what the
//! boot environment says, whether the system is degraded and why, the last
//! verdict of every probe and the last few events.
//!
//! Status must work on a broken system: every piece is read on its own, and
//! a piece that cannot be read is shown as an error in its place (in JSON,
//! `{"error": "..."}` where the value would be) instead of failing the
//! command. The exit code is 0 when everything was read, else the code of
//! the first piece that could not be (4 for the boot environment, 5 for
//! btrfs, 6 for the state files, 3 for the configuration).
//!
//! [`collect`] gathers everything without printing, for the D-Bus service.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize, Serializer};

use super::system::{LoadedConfig, System};
use crate::actions::Bus;
use crate::engine::BootState;
use crate::exit::{code_for, Code};
use crate::history::Record;
use crate::paths::Root;
use crate::snapshots::{snapper, SnapshotRef, Snapshots};
use crate::state::{current_boot_id, Degraded, EnvFailure, LastProbe, State};
use crate::verdict::Verdict;

/// How many events `status` shows.
pub const RECENT_EVENTS: usize = 5;

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One piece of the status: its value, or why it could not be read.
#[derive(Debug, Clone)]
pub enum Item<T> {
    Ok(T),
    Err(Failure),
}

/// A piece that could not be read.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The error and its causes on one line.
    pub message: String,
    /// The exit code it maps to.
    pub code: Code,
}

impl<T> Item<T> {
    fn from_result(r: anyhow::Result<T>) -> Self {
        match r {
            Ok(v) => Item::Ok(v),
            Err(e) => Item::Err(Failure {
                message: crate::exit::chain(&e),
                code: code_for(&e),
            }),
        }
    }

    fn failed(message: impl Into<String>, code: Code) -> Self {
        Item::Err(Failure {
            message: message.into(),
            code,
        })
    }

    /// The value, if it was read.
    pub fn ok(&self) -> Option<&T> {
        match self {
            Item::Ok(v) => Some(v),
            Item::Err(_) => None,
        }
    }

    /// Why it was not read, if it was not.
    pub fn err(&self) -> Option<&Failure> {
        match self {
            Item::Ok(_) => None,
            Item::Err(f) => Some(f),
        }
    }
}

/// Read back what [`Item`]'s `Serialize` wrote (the D-Bus service sends
/// it): an object whose only key is `error` is a failure, with the runtime
/// exit code since the original code is not sent.
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Item<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        if let Some(map) = value.as_object() {
            if let (1, Some(serde_json::Value::String(message))) = (map.len(), map.get("error")) {
                return Ok(Item::failed(message.clone(), Code::Runtime));
            }
        }
        T::deserialize(value)
            .map(Item::Ok)
            .map_err(serde::de::Error::custom)
    }
}

/// The value as itself; a failure as `{"error": "..."}`.
impl<T: Serialize> Serialize for Item<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Item::Ok(v) => v.serialize(s),
            Item::Err(f) => {
                let mut m = BTreeMap::new();
                m.insert("error", &f.message);
                m.serialize(s)
            }
        }
    }
}

/// A snapshot as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: u64,
    pub path: String,
    /// snapper's number, where the layout is snapper's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

impl From<&SnapshotRef> for Snapshot {
    fn from(s: &SnapshotRef) -> Self {
        Snapshot {
            id: s.id,
            path: s.path.clone(),
            number: snapper::parse_path(&s.path).map(|p| p.number),
        }
    }
}

/// What the boot environment says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvStatus {
    /// The known-good snapshot (`hc_good`); null: none yet.
    pub known_good: Option<Snapshot>,
    /// Whether the known-good is still in the snapshot store under its ID;
    /// null when there is none or the store could not be asked.
    pub known_good_exists: Option<bool>,
    /// The trial (`hc_trial`); null: none.
    pub trial: Option<Snapshot>,
    /// Boot attempts the trial has left (`hc_tries`); null without a trial.
    pub attempts_left: Option<u8>,
    /// GRUB's fall-back mark (`hc_fallback`): the trial it gave up on.
    pub fallback: Option<String>,
    /// Which entry GRUB says it chose for this boot (`hc_booted`).
    pub grub_booted: Option<String>,
    /// Failed-and-rebooted boots of the known-good in a row
    /// (`hc_good_fails`).
    pub good_failures: u32,
    /// What is wrong with either copy of the environment (a copy GRUB
    /// cannot read, stray bytes GRUB skips, a checksum that does not
    /// match), one line each naming the file; the values above are what
    /// GRUB reads. The next check repairs it. Empty when both are sound.
    #[serde(default)]
    pub damage: Vec<String>,
    /// systemd-boot's side (default entry, counting entry, attempts left),
    /// with the systemd-boot backend; absent with GRUB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_boot: Option<crate::bootloader::sdboot::LoaderView>,
}

fn grub() -> String {
    "grub".into()
}

/// The phases of the running boot, from `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThisBoot {
    /// The kernel's boot ID.
    pub boot_id: String,
    /// The early phase's verdict; null: not (yet) run this boot.
    pub early: Option<Verdict>,
    /// The late phase's verdict; null: not (yet) run this boot.
    pub late: Option<Verdict>,
}

/// The settings status depends on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The boot loader backend in use: `grub` or `systemd-boot`.
    #[serde(default = "grub")]
    pub bootloader: String,
    /// Where the boot environment is read from.
    pub boot_environment: String,
    /// Attempts a trial gets.
    pub tries: u8,
    /// Reboots of a failing known-good before degraded mode.
    pub good_failure_reboots: u32,
    /// No verdict this long after boot fails the boot.
    pub deadline: String,
}

/// The whole status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// One word for programs: `good`, `trial-booted`, `trial-armed`,
    /// `fallback`, `no-known-good`, `manual`, `degraded` or `unknown`.
    pub state: String,
    /// One line for people.
    pub summary: String,
    /// The snapshot mounted at `/`.
    pub booted: Item<Snapshot>,
    /// The btrfs default subvolume (what the next plain boot mounts).
    pub default: Item<Snapshot>,
    pub boot_environment: Item<EnvStatus>,
    /// Set while in degraded mode; null otherwise.
    pub degraded: Item<Option<Degraded>>,
    pub this_boot: Item<ThisBoot>,
    /// The last result of every probe, by name.
    pub probes: Item<BTreeMap<String, LastProbe>>,
    /// The last [`RECENT_EVENTS`] events, oldest first, without their
    /// probe results (`health-checker history` has them).
    pub history: Item<Vec<Record>>,
    pub config: Item<ConfigStatus>,
    /// The last write of the boot environment by a check failed (a full
    /// ESP): when, why, and what it was for. Null when it did not, or when
    /// `state.json` could not be read.
    #[serde(default)]
    pub boot_env_write_failed: Option<EnvFailure>,
}

impl Status {
    /// Every failure, in display order, with the piece's name.
    pub fn failures(&self) -> Vec<(&'static str, &Failure)> {
        let pieces: [(&'static str, Option<&Failure>); 8] = [
            ("config", self.config.err()),
            ("booted", self.booted.err()),
            ("default", self.default.err()),
            ("boot environment", self.boot_environment.err()),
            ("degraded", self.degraded.err()),
            ("this boot", self.this_boot.err()),
            ("probes", self.probes.err()),
            ("history", self.history.err()),
        ];
        pieces
            .into_iter()
            .filter_map(|(n, f)| f.map(|f| (n, f)))
            .collect()
    }

    /// 0 when everything was read, else the code of the first failure.
    pub fn code(&self) -> Code {
        self.failures().first().map_or(Code::Ok, |(_, f)| f.code)
    }

    /// Show the configuration as unreadable (the status was collected with
    /// the defaults).
    pub fn with_config_error(mut self, message: &str) -> Self {
        self.config = Item::failed(format!("configuration: {message}"), Code::Config);
        self
    }
}

/// Gather the status of a system. Never fails: what cannot be read is an
/// [`Item::Err`] in its place.
pub fn collect(sys: &System) -> Status {
    let env = Item::from_result(sys.boot_state());
    gather(sys, env)
}

fn gather(sys: &System, env: Item<BootState>) -> Status {
    let booted_ref = Item::from_result(sys.booted());
    let default_ref = Item::from_result(
        sys.snapshots
            .default_subvolume()
            .context("finding the default subvolume"),
    );
    let boot_environment = match &env {
        Item::Ok(s) => Item::Ok(env_status(sys, s)),
        Item::Err(f) => Item::Err(f.clone()),
    };

    // state.json, read without changing it (a file this version cannot
    // interpret is reported here, and left as it is by every command).
    let state = sys
        .state
        .load()
        .with_context(|| format!("reading {}", sys.state.path().display()))
        .and_then(|l| match l.unusable {
            None => Ok(l.value),
            Some(c) => Err(anyhow::anyhow!("{c}")),
        });
    let state: Item<State> = Item::from_result(state);
    let degraded = map(&state, |s| s.degraded.clone());
    let boot_env_write_failed = state.ok().and_then(|s| s.boot_env_failure.clone());
    let probes = map(&state, |s| s.probes.clone());
    let this_boot = match (&state, current_boot_id()) {
        (Item::Err(f), _) => Item::Err(f.clone()),
        (_, Err(e)) => Item::from_result(Err(e)),
        (Item::Ok(s), Ok(id)) => {
            let rec = s.boot.as_ref().filter(|b| b.boot_id == id);
            Item::Ok(ThisBoot {
                early: rec.and_then(|r| r.early),
                late: rec.and_then(|r| r.late),
                boot_id: id,
            })
        }
    };

    let history = Item::from_result(
        sys.history
            .read()
            .with_context(|| format!("reading {}", sys.history.path().display()))
            .and_then(|r| match r.unusable {
                None => Ok(recent(r.events)),
                Some(c) => Err(anyhow::anyhow!("{c}")),
            }),
    );

    let c = &sys.config;
    let config = Item::Ok(ConfigStatus {
        bootloader: sys.env.kind().as_str().to_owned(),
        boot_environment: sys.env.inner().primary().to_string(),
        tries: c.boot.tries,
        good_failure_reboots: c.boot.good_failure_reboots,
        deadline: c.boot.deadline.to_string(),
    });

    let (state_word, summary) = summarise(
        booted_ref.ok(),
        default_ref.ok(),
        env.ok(),
        boot_environment.ok().and_then(|e| e.known_good_exists),
        degraded.ok().and_then(|d| d.as_ref()),
    );
    Status {
        state: state_word.to_owned(),
        summary,
        booted: map(&booted_ref, |b| Snapshot::from(b)),
        default: map(&default_ref, |d| Snapshot::from(d)),
        boot_environment,
        degraded,
        this_boot,
        probes,
        history,
        config,
        boot_env_write_failed,
    }
}

fn map<T, U>(item: &Item<T>, f: impl FnOnce(&T) -> U) -> Item<U> {
    match item {
        Item::Ok(v) => Item::Ok(f(v)),
        Item::Err(e) => Item::Err(e.clone()),
    }
}

fn recent(mut events: Vec<Record>) -> Vec<Record> {
    let start = events.len().saturating_sub(RECENT_EVENTS);
    events
        .split_off(start)
        .into_iter()
        .map(Record::without_probes)
        .collect()
}

fn env_status(sys: &System, s: &BootState) -> EnvStatus {
    let known_good_exists = s
        .good
        .as_ref()
        .and_then(|g| match sys.snapshots.lookup(&g.path) {
            Ok(found) => Some(found.is_some_and(|f| f.id == g.id)),
            Err(e) => {
                tracing::warn!("looking up the known-good snapshot {}: {e:#}", g.path);
                None
            }
        });
    EnvStatus {
        known_good: s.good.as_ref().map(Snapshot::from),
        known_good_exists,
        trial: s.trial.as_ref().map(Snapshot::from),
        attempts_left: s.trial.as_ref().map(|_| s.tries),
        fallback: s.fallback.clone(),
        grub_booted: s.booted.map(|b| b.as_str().to_owned()),
        good_failures: s.good_fails,
        damage: sys.env.problems().unwrap_or_default(),
        systemd_boot: sys.env.sdboot().and_then(|sd| match sd.view() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("reading systemd-boot's entries: {e:#}");
                None
            }
        }),
    }
}

/// The one-word state and the one-line summary.
fn summarise(
    booted: Option<&SnapshotRef>,
    default: Option<&SnapshotRef>,
    env: Option<&BootState>,
    good_exists: Option<bool>,
    degraded: Option<&Degraded>,
) -> (&'static str, String) {
    if let Some(d) = degraded {
        return (
            "degraded",
            format!(
                "DEGRADED since {}: {}",
                crate::history::rfc3339(d.since),
                d.reason
            ),
        );
    }
    let (Some(env), Some(booted)) = (env, booted) else {
        return (
            "unknown",
            "the boot state could not be read completely (see the errors below)".into(),
        );
    };
    if let Some(f) = &env.fallback {
        return (
            "fallback",
            format!(
                "GRUB gave up on trial {f} (it never reached a verdict); the next check records it"
            ),
        );
    }
    if let Some(t) = &env.trial {
        if t == booted {
            return (
                "trial-booted",
                format!(
                    "running the trial {}, not yet promoted ({} attempt(s) left)",
                    t.path, env.tries
                ),
            );
        }
        return (
            "trial-armed",
            format!(
                "trial {} armed for the next boot ({} attempt(s))",
                t.path, env.tries
            ),
        );
    }
    match &env.good {
        None => (
            "no-known-good",
            "no known-good snapshot yet: the first boot that passes becomes known-good".into(),
        ),
        Some(g) if good_exists == Some(false) => (
            "no-known-good",
            format!(
                "the known-good snapshot {} (ID {}) no longer exists",
                g.path, g.id
            ),
        ),
        Some(g) if g == booted => match default.filter(|d| *d != g) {
            Some(d) => (
                "good",
                format!(
                    "running the known-good snapshot; the default subvolume {} differs (not yet armed)",
                    d.path
                ),
            ),
            None => ("good", "running the known-good snapshot".into()),
        },
        Some(g) => {
            let next = if default == Some(g) {
                format!("; the next boot starts the known-good {}", g.path)
            } else {
                String::new()
            };
            (
                "manual",
                format!(
                    "running {}, which is neither the known-good nor the trial \
                     (chosen by hand, or left without a reboot){next}",
                    booted.path
                ),
            )
        }
    }
}

/// Run `status`.
pub fn run(root: &Root, args: &StatusArgs) -> anyhow::Result<Code> {
    // Users who cannot read the boot environment or the state files ask the
    // D-Bus service (which runs as root) when it is there.
    let not_root = !nix::unistd::geteuid().is_root();
    let mut service = None;
    if root.is_host() && not_root {
        match crate::dbus_service::fetch_status(None, crate::dbus_service::Activation::Allow) {
            Ok(Some(v)) => return print_from_service(v, args.json),
            Ok(None) => service = Some("the health-checker D-Bus service is not there".into()),
            Err(e) => {
                service = Some(format!(
                    "the health-checker D-Bus service failed: {}",
                    crate::exit::chain(&e)
                ))
            }
        }
    }
    let status = read(root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", super::status_print::text(&status));
    }
    if not_root {
        if let Some((piece, failure)) = status.failures().first() {
            // Standard output holds the status (JSON stays JSON); why it is
            // incomplete goes to standard error, and the exit code says so.
            let service = service.map(|s| format!("{s}; ")).unwrap_or_default();
            eprintln!(
                "health-checker: cannot get the whole status: {service}read directly by a user \
                 who is not root, {} part(s) could not be read (first, {piece}: {}); run it as \
                 root, or start health-checker-dbus.service",
                status.failures().len(),
                failure.message
            );
        }
    }
    Ok(status.code())
}

/// Print the status the D-Bus service sent, as `status` prints its own; the
/// exit code is the status's own (non-zero when a part could not be read).
fn print_from_service(v: serde_json::Value, json: bool) -> anyhow::Result<Code> {
    let parsed = serde_json::from_value::<Status>(v.clone());
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    match parsed {
        Ok(status) => {
            if !json {
                print!("{}", super::status_print::text(&status));
                println!("\n(as the health-checker D-Bus service reports it)");
            }
            if let Some((piece, failure)) = status.failures().first() {
                eprintln!(
                    "health-checker: the health-checker D-Bus service could not read the whole \
                     status (first, {piece}: {})",
                    failure.message
                );
            }
            Ok(status.code())
        }
        Err(e) if json => {
            tracing::debug!("the service's status does not read as this version's: {e}");
            Ok(Code::Ok)
        }
        Err(e) => {
            // A service of another version: its own words, as JSON.
            tracing::debug!("the service's status does not read as this version's: {e}");
            let summary = v["summary"].as_str().unwrap_or("(no summary)");
            println!("health-checker: {summary}");
            println!("(from the health-checker D-Bus service, whose status format differs from this program's)");
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(Code::Ok)
        }
    }
}

/// The status of the system at `root`, from its configuration (or the
/// defaults, when it cannot be read, shown as a failure in its place).
/// Fails only when not even the defaults' seams can be opened.
pub fn read(root: &Root) -> anyhow::Result<Status> {
    let loaded = LoadedConfig::load(root);
    let config_error = loaded.error.clone();
    let status = match System::open(root, loaded.config.clone(), Bus::System, true) {
        Ok(sys) => collect(&sys),
        Err(e) => {
            // The configured environment location is unusable; show that in
            // its place and everything else as read through the defaults'
            // seams (which do not depend on the environment).
            let mut fallback = loaded.config;
            fallback.bootenv = crate::config::BootEnv::default();
            let sys = System::open(root, fallback, Bus::System, true)?;
            let env = Item::from_result(Err(e.context("opening the boot environment")));
            let mut s = gather(&sys, env);
            s.config = Item::failed("the boot environment location is unusable", Code::Config);
            s
        }
    };
    Ok(match &config_error {
        Some(e) => status.with_config_error(e),
        None => status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, n: u64) -> SnapshotRef {
        SnapshotRef {
            id,
            path: format!("@/.snapshots/{n}/snapshot"),
        }
    }

    #[test]
    fn failures_serialize_in_place() {
        let i: Item<u32> = Item::failed("boot environment torn", Code::BootEnv);
        assert_eq!(
            serde_json::to_value(&i).unwrap(),
            serde_json::json!({"error": "boot environment torn"})
        );
        let ok: Item<Option<u32>> = Item::Ok(None);
        assert_eq!(serde_json::to_value(&ok).unwrap(), serde_json::Value::Null);
    }

    #[test]
    fn the_summary_names_the_state() {
        let g = r(258, 1);
        let t = r(259, 2);
        let good = BootState {
            good: Some(g.clone()),
            ..BootState::default()
        };
        assert_eq!(
            summarise(Some(&g), Some(&g), Some(&good), Some(true), None).0,
            "good"
        );
        let armed = BootState {
            trial: Some(t.clone()),
            tries: 2,
            ..good.clone()
        };
        assert_eq!(
            summarise(Some(&g), Some(&t), Some(&armed), Some(true), None).0,
            "trial-armed"
        );
        let (w, text) = summarise(Some(&t), Some(&t), Some(&armed), Some(true), None);
        assert_eq!(w, "trial-booted");
        assert!(text.contains("2 attempt(s) left"), "{text}");
        assert_eq!(
            summarise(Some(&t), Some(&t), Some(&good), Some(false), None).0,
            "no-known-good"
        );
        assert_eq!(
            summarise(Some(&t), Some(&g), Some(&good), Some(true), None).0,
            "manual"
        );
        assert_eq!(summarise(Some(&g), Some(&g), None, None, None).0, "unknown");
        let d = Degraded {
            since: 0,
            reason: "app failed".into(),
            snapshot: g.clone(),
            extra: Default::default(),
        };
        let (w, text) = summarise(None, None, None, None, Some(&d));
        assert_eq!(w, "degraded");
        assert!(text.contains("app failed"), "{text}");
    }

    #[test]
    fn recent_keeps_the_newest_without_probe_results() {
        let events: Vec<Record> = (0..8)
            .map(|i| crate::history::Event {
                format_version: crate::fsutil::FormatVersion::CURRENT,
                time: i,
                boot_id: None,
                event: crate::history::NewEvent {
                    probes: vec![crate::verdict::ProbeResult {
                        name: "p".into(),
                        severity: crate::verdict::Severity::Required,
                        result: crate::verdict::Outcome::Pass,
                        duration_ms: 1,
                        reason: None,
                        output: String::new(),
                    }],
                    ..crate::history::NewEvent::new(
                        crate::history::EventKind::Verdict,
                        None,
                        i.to_string(),
                    )
                },
            })
            .map(Record::new)
            .collect();
        let r = recent(events);
        assert_eq!(r.len(), RECENT_EVENTS);
        assert_eq!(r[0].time(), Some(3));
        assert!(r
            .iter()
            .all(|e| e.event.as_ref().unwrap().event.probes.is_empty()
                && e.json().get("probes").is_none()));
    }
}
