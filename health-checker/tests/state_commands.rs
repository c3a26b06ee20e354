//! The state subcommands (`status`, `history`, `arm`, `mark-good`,
//! `mark-bad`, `rollback`, `deadline`) through the real binary, on a real
//! loop-mounted btrfs with snapper's layout: a snapshot booted at a test
//! root (its own mount of the subvolume), the boot environment file under
//! that root, and the configuration `[boot] no_reboot = true`. Needs root,
//! btrfs-progs and loop devices; fails (does not skip) without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::btrfs::{BtrfsImage, Layout};
use serde_json::Value;

const ENV_PATH: &str = "/boot/efi/EFI/health-checker/grubenv";

fn snap(n: u64) -> String {
    format!("@/.snapshots/{n}/snapshot")
}

/// A booted test system.
struct Sys {
    img: BtrfsImage,
    layout: Layout,
    root: PathBuf,
}

impl Sys {
    /// Snapshots 1, 2 and 3 (writable); `booted` mounted at the test root,
    /// `default` the default subvolume, `extra_config` appended to the
    /// configuration.
    fn new(booted: u64, default: u64, extra_config: &str) -> Sys {
        let mut img = BtrfsImage::new();
        let layout = img.snapper_layout(&[
            (1, Some("first root filesystem"), false),
            (2, Some("update"), false),
            (3, Some("another update"), false),
        ]);
        img.set_default_cli(layout.id(default));
        let root = img.boot(&snap(booted), false, Some(true));
        let sys = Sys { img, layout, root };
        sys.write(
            "/etc/health-checker/config.toml",
            &format!(
                "[boot]\nno_reboot = true\n{extra_config}\n\
                 [bootenv]\nlocation = \"file\"\npath = \"{ENV_PATH}\"\n\n\
                 [probes]\ninsecure_ok = true\n\n\
                 [degraded]\nwall = false\n"
            ),
        );
        sys
    }

    fn id(&self, n: u64) -> u64 {
        self.layout.id(n)
    }

    fn path(&self, abs: &str) -> PathBuf {
        common::tree::path(&self.root, abs)
    }

    fn write(&self, abs: &str, text: &str) {
        common::tree::write(&self.root, abs, text)
    }

    fn store(&self) -> grub_env::Store {
        grub_env::Store::for_file(self.path(ENV_PATH))
    }

    /// Create the boot environment with G = snapshot `good` and, when
    /// given, the trial (`number`, `tries`).
    fn env(&self, good: Option<u64>, trial: Option<(u64, u8)>) {
        std::fs::create_dir_all(self.path(ENV_PATH).parent().unwrap()).unwrap();
        let mut keys = vec![("saved_entry".to_string(), "gnulinux".to_string())];
        if let Some(g) = good {
            keys.push(("hc_good".into(), snap(g)));
            keys.push(("hc_good_id".into(), self.id(g).to_string()));
        }
        if let Some((t, tries)) = trial {
            keys.push(("hc_trial".into(), snap(t)));
            keys.push(("hc_trial_id".into(), self.id(t).to_string()));
            keys.push(("hc_tries".into(), tries.to_string()));
        }
        self.store()
            .update(|env| {
                for (k, v) in &keys {
                    env.set(k, v).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .expect("writing the test boot environment");
    }

    /// A key of the boot environment.
    fn key(&self, k: &str) -> Option<String> {
        self.store().load().unwrap().env.get(k).map(str::to_owned)
    }

    fn default_id(&self) -> u64 {
        self.img.default_cli(&self.root)
    }

    fn history(&self) -> Vec<Value> {
        let p = self.path("/var/lib/health-checker/history.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice::<Value>(&b)
                .unwrap()
                .as_array()
                .unwrap()
                .clone(),
            Err(_) => Vec::new(),
        }
    }

    fn kinds(&self) -> Vec<String> {
        self.history()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Run the binary with `--root` and these arguments.
    fn hc(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_health-checker"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .output()
            .expect("running health-checker");
        Run::from(out, args)
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output, args: &[&str]) -> Run {
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "$ health-checker {}\n[exit {}]\n{}{}",
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Every `"error"` key anywhere in a JSON value.
fn errors(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "error" {
                    out.push(x.to_string());
                }
                out.extend(errors(x));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| out.extend(errors(x))),
        _ => {}
    }
    out
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_owned()
}

/// What `status` prints for a user who is not root: the JSON the D-Bus
/// service sends, read back and shown as text.
fn text_via_service(json: &Value) -> (String, health_checker::exit::Code) {
    let status: health_checker::commands::status::Status =
        serde_json::from_value(json.clone()).expect("the status JSON reads back");
    (
        health_checker::commands::status_print::text(&status),
        status.code(),
    )
}

#[test]
fn status_of_a_healthy_system_reads_everything() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    let r = s.hc(&["status", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert!(errors(&v).is_empty(), "{v:#}");
    assert_eq!(v["state"], "good");
    assert_eq!(v["booted"]["id"], s.id(1));
    assert_eq!(v["booted"]["path"], snap(1));
    assert_eq!(v["booted"]["number"], 1);
    assert_eq!(v["default"]["id"], s.id(1));
    assert_eq!(v["boot_environment"]["known_good"]["path"], snap(1));
    assert_eq!(v["boot_environment"]["known_good_exists"], true);
    assert_eq!(v["boot_environment"]["trial"], Value::Null);
    assert_eq!(v["degraded"], Value::Null);
    assert_eq!(v["this_boot"]["boot_id"], boot_id());
    assert_eq!(v["history"], serde_json::json!([]));

    let r = s.hc(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .starts_with("health-checker: running the known-good snapshot\n"),
        "{}",
        r.stdout
    );
    for line in [
        format!(
            "      Booted: {} (ID {}, snapper #1)  [known-good]",
            snap(1),
            s.id(1)
        ),
        format!("  Known-good: {} (ID {}, snapper #1)", snap(1), s.id(1)),
        "       Trial: none".to_owned(),
        "    Degraded: no".to_owned(),
    ] {
        assert!(
            r.stdout.lines().any(|l| l == line),
            "{line:?} in\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("error"), "{}", r.stdout);
    assert_eq!(
        text_via_service(&v),
        (r.stdout, health_checker::exit::Code::Ok)
    );
}

#[test]
fn status_on_a_torn_environment_shows_the_error_in_place() {
    let s = Sys::new(2, 2, "");
    s.env(Some(1), Some((2, 2)));
    // Both copies torn mid-write: no valid copy is left.
    let env = s.path(ENV_PATH);
    let torn = b"# GRUB Environment Block\nhc_good=@/.snap";
    std::fs::write(&env, torn).unwrap();
    std::fs::write(env.with_extension("bak"), torn).unwrap();
    assert!(env.with_extension("bak").ends_with("grubenv.bak"));
    // And a corrupt state file.
    s.write("/var/lib/health-checker/state.json", "{\"degraded\": ");

    let r = s.hc(&["status", "--json"]);
    assert_eq!(r.code, 4, "the boot environment error comes first: {r:?}");
    let v = r.json();
    let env_err = v["boot_environment"]["error"]
        .as_str()
        .expect("error in place");
    assert!(env_err.contains("grubenv"), "{env_err}");
    assert!(v["degraded"]["error"]
        .as_str()
        .unwrap()
        .contains("state.json"));
    assert!(v["probes"]["error"].is_string());
    // Everything else is still read.
    assert_eq!(v["booted"]["id"], s.id(2));
    assert_eq!(v["default"]["id"], s.id(2));
    assert_eq!(v["history"], serde_json::json!([]));
    assert_eq!(v["state"], "unknown");

    let (via_service, code) = text_via_service(&v);
    let r = s.hc(&["status"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert_eq!(via_service, r.stdout);
    assert_ne!(code, health_checker::exit::Code::Ok);
    let boot_env = r
        .stdout
        .lines()
        .find(|l| l.starts_with("    Boot env: error: "))
        .unwrap_or_else(|| panic!("no error line in\n{}", r.stdout));
    assert!(boot_env.contains("grubenv"), "{boot_env}");
    assert!(r.stdout.contains(&format!("      Booted: {}", snap(2))));
    assert!(r.stdout.contains("    Degraded: error: "), "{}", r.stdout);
    // status changed nothing: the corrupt state file is still in place.
    assert_eq!(
        std::fs::read_to_string(s.path("/var/lib/health-checker/state.json")).unwrap(),
        "{\"degraded\": "
    );

    // With the environment repaired, the state file is the first error.
    std::fs::remove_file(&env).unwrap();
    std::fs::remove_file(env.with_extension("bak")).unwrap();
    s.env(Some(1), Some((2, 2)));
    let r = s.hc(&["status", "--json"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert_eq!(r.json()["state"], "trial-booted");
}

#[test]
fn arm_by_path_by_number_and_the_default() {
    let s = Sys::new(1, 1, "tries = 3\n");
    s.env(Some(1), None);

    let r = s.hc(&["arm", &snap(2), "--tries", "2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));
    assert_eq!(s.key("hc_trial_id"), Some(s.id(2).to_string()));
    assert_eq!(s.key("hc_tries").as_deref(), Some("2"));
    assert_eq!(s.key("hc_good"), Some(snap(1)), "G untouched");
    assert_eq!(s.key("saved_entry").as_deref(), Some("gnulinux"));
    assert_eq!(s.default_id(), s.id(2), "the trial is the default");

    // By snapper number, with the configured tries; replaces the trial.
    let r = s.hc(&["arm", "3"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("replacing the trial"), "{}", r.stdout);
    assert_eq!(s.key("hc_trial"), Some(snap(3)));
    assert_eq!(s.key("hc_tries").as_deref(), Some("3"));
    assert_eq!(s.default_id(), s.id(3));

    // No argument: the default subvolume, as an update tool set it.
    s.img.set_default_cli(s.id(2));
    let r = s.hc(&["arm", "--tries", "1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));
    assert_eq!(s.key("hc_tries").as_deref(), Some("1"));

    let h = s.history();
    assert_eq!(s.kinds(), ["arm", "arm", "arm"]);
    assert_eq!(h[0]["snapshot"]["id"], s.id(2));
    assert_eq!(h[1]["snapshot"]["path"], snap(3));
    assert_eq!(h[2]["boot_id"], boot_id());
    assert!(h[0]["reason"].as_str().unwrap().contains("by hand"));
}

#[test]
fn arm_refuses_the_known_good_and_unknown_snapshots() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    let before = std::fs::read(s.path(ENV_PATH)).unwrap();

    for (args, needle) in [
        (vec!["arm", "1"], "is the known-good snapshot"),
        (vec!["arm"], "is the known-good snapshot"),
        (vec!["arm", "9"], "no snapshot with snapper number 9"),
        (
            vec!["arm", "@/.snapshots/9/snapshot"],
            "there is no subvolume",
        ),
        (vec!["arm", "2", "--tries", "0"], "1 to 9 attempts"),
        (vec!["arm", "2", "--tries", "12"], "1 to 9 attempts"),
    ] {
        let r = s.hc(&args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    assert_eq!(std::fs::read(s.path(ENV_PATH)).unwrap(), before);
    assert_eq!(s.default_id(), s.id(1));
    assert!(s.history().is_empty());

    // No boot environment at all: a boot-environment error, not a guess.
    std::fs::remove_file(s.path(ENV_PATH)).unwrap();
    std::fs::remove_file(s.path(ENV_PATH).with_extension("bak")).unwrap();
    let r = s.hc(&["arm", "2"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn arm_if_default_changed_arms_only_a_new_default() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    let before = std::fs::read(s.path(ENV_PATH)).unwrap();

    // The default is the known-good: nothing to do, quietly.
    let r = s.hc(&["arm", "--if-default-changed"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.is_empty() && r.stderr.is_empty(), "{r:?}");
    assert_eq!(std::fs::read(s.path(ENV_PATH)).unwrap(), before);
    assert!(s.history().is_empty());

    // An update tool changed the default: armed.
    s.img.set_default_cli(s.id(3));
    let r = s.hc(&["arm", "--if-default-changed"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), Some(snap(3)));
    assert_eq!(s.key("hc_tries").as_deref(), Some("3"));
    assert_eq!(s.kinds(), ["arm"]);
    assert!(s.history()[0]["reason"]
        .as_str()
        .unwrap()
        .contains("armed at shutdown"));

    // Already the trial: nothing again.
    let armed = std::fs::read(s.path(ENV_PATH)).unwrap();
    let r = s.hc(&["arm", "--if-default-changed"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert_eq!(std::fs::read(s.path(ENV_PATH)).unwrap(), armed);
    assert_eq!(s.kinds(), ["arm"]);

    // A snapshot argument makes no sense with it.
    let r = s.hc(&["arm", "2", "--if-default-changed"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn mark_good_promotes_the_booted_trial_and_leaves_degraded_mode() {
    let s = Sys::new(2, 2, "");
    s.env(Some(1), Some((2, 2)));
    s.write(
        "/var/lib/health-checker/state.json",
        &format!(
            "{{\"degraded\": {{\"since\": 1, \"reason\": \"app failed\", \
             \"snapshot\": {{\"id\": {}, \"path\": \"{}\"}}}}}}\n",
            s.id(2),
            snap(2)
        ),
    );
    assert_eq!(s.hc(&["status", "--json"]).json()["state"], "degraded");

    let r = s.hc(&["mark-good"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_good"), Some(snap(2)));
    assert_eq!(s.key("hc_good_id"), Some(s.id(2).to_string()));
    assert_eq!(s.key("hc_trial"), None);
    assert_eq!(s.key("hc_tries"), None);
    assert_eq!(s.default_id(), s.id(2));
    assert_eq!(s.kinds(), ["mark-good"]);
    let v = s.hc(&["status", "--json"]).json();
    assert_eq!(v["degraded"], Value::Null);
    assert_eq!(v["state"], "good");

    // Marking another snapshot good: the default followed the known-good,
    // so it follows the new one.
    let r = s.hc(&["mark-good", "3"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_good"), Some(snap(3)));
    assert_eq!(s.default_id(), s.id(3));
    assert_eq!(s.kinds(), ["mark-good", "mark-good"]);
}

#[test]
fn mark_bad_disarms_the_trial_and_restores_the_default() {
    let s = Sys::new(1, 2, "");
    s.env(Some(1), Some((2, 3)));

    let r = s.hc(&["mark-bad"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), None);
    assert_eq!(s.key("hc_tries"), None);
    assert_eq!(s.key("hc_good"), Some(snap(1)));
    assert_eq!(s.default_id(), s.id(1), "default back to the known-good");
    assert_eq!(s.kinds(), ["mark-bad"]);
    assert_eq!(s.history()[0]["snapshot"]["path"], snap(2));

    // No trial left: the snapshot must be named.
    let r = s.hc(&["mark-bad"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no trial"), "{}", r.stderr);

    // A snapshot that is neither the trial nor the default: recorded only.
    let r = s.hc(&["mark-bad", "3"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.default_id(), s.id(1));
    assert_eq!(s.kinds(), ["mark-bad", "mark-bad"]);
}

#[test]
fn rollback_makes_the_known_good_the_default_and_records_it() {
    let s = Sys::new(2, 2, "");
    s.env(Some(1), Some((2, 2)));

    let r = s.hc(&["rollback"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("not rebooting"), "{}", r.stdout);
    assert_eq!(s.default_id(), s.id(1));
    assert_eq!(s.key("hc_trial"), None);
    assert_eq!(s.key("hc_good"), Some(snap(1)));
    let h = s.history();
    assert_eq!(s.kinds(), ["rollback"]);
    assert_eq!(h[0]["snapshot"]["path"], snap(2));
    assert!(h[0]["reason"].as_str().unwrap().contains(&snap(1)));

    // Without a known-good there is nothing to roll back to.
    let t = Sys::new(2, 2, "");
    t.env(None, Some((2, 2)));
    let r = t.hc(&["rollback", "--no-reboot"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no known-good"), "{}", r.stderr);
    assert_eq!(t.default_id(), t.id(2));
    assert_eq!(t.key("hc_trial"), Some(snap(2)));
}

#[test]
fn deadline_fails_a_boot_without_a_verdict() {
    // The trial is booted; no verdict comes; one second of deadline.
    let s = Sys::new(2, 2, "deadline = \"1s\"\n");
    s.env(Some(1), Some((2, 2)));
    let start = Instant::now();
    let r = s.hc(&["deadline", "--now-boottime", "0", "--poll", "100ms"]);
    let waited = start.elapsed();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(waited >= Duration::from_secs(1), "fired after {waited:?}");
    assert!(waited < Duration::from_secs(20), "fired after {waited:?}");
    assert!(r.stdout.contains("rolling back"), "{}", r.stdout);

    // Judged as a failed late phase: rolled back to the known-good.
    assert_eq!(s.default_id(), s.id(1));
    assert_eq!(s.key("hc_trial"), None);
    let h = s.history();
    assert_eq!(s.kinds(), ["verdict", "rollback"]);
    let probe = &h[0]["probes"][0];
    assert_eq!(probe["name"], "deadline");
    assert_eq!(probe["result"], "timeout");
    assert_eq!(probe["severity"], "required");
    assert!(
        probe["reason"].as_str().unwrap().contains("deadline 1s"),
        "{probe}"
    );
    assert_eq!(h[0]["phase"], "late");
    let v = s.hc(&["status", "--json"]).json();
    assert_eq!(v["probes"]["deadline"]["result"], "timeout");
    assert_eq!(v["this_boot"]["late"], "fail");
}

#[test]
fn deadline_exits_as_soon_as_the_late_phase_has_a_verdict() {
    let s = Sys::new(2, 2, "deadline = \"10min\"\n");
    s.env(Some(1), Some((2, 2)));
    let state = format!(
        "{{\"probes\": {{}}, \"boot\": {{\"boot_id\": \"{}\", \"late\": \"pass\"}}}}\n",
        boot_id()
    );

    // A verdict already there: exit at once.
    s.write("/var/lib/health-checker/state.json", &state);
    let start = Instant::now();
    let r = s.hc(&["deadline", "--now-boottime", "0"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // A verdict that comes while waiting.
    std::fs::remove_file(s.path("/var/lib/health-checker/state.json")).unwrap();
    let root = s.root.clone();
    let child = Command::new(env!("CARGO_BIN_EXE_health-checker"))
        .arg("--root")
        .arg(&root)
        .args(["deadline", "--now-boottime", "0", "--poll", "100ms"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let start = Instant::now();
    s.write("/var/lib/health-checker/state.json", &state);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(5));

    // A verdict of another boot does not count; nothing changed meanwhile.
    s.write(
        "/var/lib/health-checker/state.json",
        "{\"boot\": {\"boot_id\": \"another-boot\", \"late\": \"pass\"}}\n",
    );
    let r = s.hc(&["deadline", "--now-boottime", "599", "--poll", "100ms"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(s.default_id(), s.id(1));
}

#[test]
fn history_lists_events_newest_last() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    let r = s.hc(&["history"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("no events recorded"), "{}", r.stdout);

    assert_eq!(s.hc(&["arm", "2"]).code, 0);
    assert_eq!(s.hc(&["mark-bad", "2"]).code, 0);
    assert_eq!(s.hc(&["arm", "3"]).code, 0);

    let r = s.hc(&["history"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["TIME", "KIND", "SNAPSHOT", "REASON"]
    );
    let cols: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(&cols[1..3], ["arm", snap(3).as_str()], "{}", lines[3]);
    assert!(lines[2].contains("mark-bad"));

    let v: Value = serde_json::from_str(&s.hc(&["history", "--json", "-n", "2"]).stdout).unwrap();
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["mark-bad", "arm"]);

    // A corrupt history is an error naming the file, and stays in place.
    s.write("/var/lib/health-checker/history.json", "[{");
    let r = s.hc(&["history"]);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("history.json"), "{}", r.stderr);
    assert!(Path::new(&s.path("/var/lib/health-checker/history.json")).exists());
}

/// A late phase judged through the library (as `check` and `deadline` do),
/// then a trial armed: what `docs/cli.md` shows as its example.
#[test]
fn a_passing_late_phase_is_judged_and_shown_with_the_armed_trial() {
    use health_checker::actions::Bus;
    use health_checker::commands::check::judge;
    use health_checker::commands::system::{LoadedConfig, System};
    use health_checker::paths::Root;
    use health_checker::probes::ProbeContext;
    use health_checker::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity};

    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    let root = Root::new(&s.root);
    let config = LoadedConfig::load(&root).required().unwrap();
    let sys = System::open(&root, config, Bus::System, true).unwrap();
    let probe = |name: &str, severity, result, reason: Option<&str>| ProbeResult {
        cost: Default::default(),
        name: name.into(),
        severity,
        result,
        duration_ms: 12,
        reason: reason.map(str::to_owned),
        output: String::new(),
    };
    let report = PhaseReport::new(
        Phase::Late,
        vec![
            probe("failed-units", Severity::Required, Outcome::Pass, None),
            probe("units-active", Severity::Required, Outcome::Pass, None),
            probe(
                "network-online",
                Severity::Wanted,
                Outcome::Fail,
                Some("exit status 1"),
            ),
        ],
    );
    let ctx = sys.probe_context(ProbeContext::default());
    let decided = judge(&sys, &report, &ctx, false, None).unwrap();
    assert!(!decided.decision.wants_reboot());
    assert_eq!(s.kinds(), ["verdict"]);

    assert_eq!(s.hc(&["arm", "2"]).code, 0);
    let r = s.hc(&["status", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["state"], "trial-armed");
    assert_eq!(v["this_boot"]["late"], "pass");
    assert_eq!(v["probes"]["network-online"]["result"], "fail");
    assert_eq!(v["probes"]["units-active"]["result"], "pass");
    assert_eq!(v["boot_environment"]["trial"]["path"], snap(2));
    assert_eq!(v["boot_environment"]["attempts_left"], 3);
    let kinds: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["verdict", "arm"]);
    assert!(
        v["history"][0].get("probes").is_none(),
        "status leaves them out"
    );
    let r = s.hc(&["status"]);
    assert_eq!(r.code, 0, "{r:?}");
    let h = s.hc(&["history", "--json"]);
    assert_eq!(h.json()[0]["probes"].as_array().unwrap().len(), 3);
    s.hc(&["history"]);
}

const METRICS_DIR: &str = "/var/lib/prometheus/node-exporter";
const METRICS_FILE: &str = "/var/lib/prometheus/node-exporter/health_checker.prom";

#[test]
fn no_metrics_without_the_textfile_directory() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    assert_eq!(s.hc(&["arm", "2"]).code, 0);
    assert!(
        !s.path(METRICS_DIR).exists(),
        "the textfile directory is not created"
    );
}

/// A failed trial rolled back by the engine, then a trial armed by hand:
/// the metrics follow each, promtool accepts them and node_exporter serves
/// them.
#[test]
fn metrics_follow_verdicts_and_changes_and_node_exporter_serves_them() {
    use common::prometheus::{promtool_problems, NodeExporter};
    use health_checker::actions::Bus;
    use health_checker::commands::check::judge;
    use health_checker::commands::system::{LoadedConfig, System};
    use health_checker::paths::Root;
    use health_checker::probes::ProbeContext;
    use health_checker::verdict::{Outcome, Phase, PhaseReport, ProbeResult, Severity};

    let s = Sys::new(2, 2, "");
    s.env(Some(1), Some((2, 2)));
    std::fs::create_dir_all(s.path(METRICS_DIR)).unwrap();
    let metrics = || {
        std::fs::read_to_string(s.path(METRICS_FILE))
            .unwrap_or_else(|e| panic!("reading {METRICS_FILE}: {e}"))
    };
    let has = |text: &str, line: &str| {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    };

    let root = Root::new(&s.root);
    let config = LoadedConfig::load(&root).required().unwrap();
    let sys = System::open(&root, config, Bus::System, true).unwrap();
    let report = PhaseReport::new(
        Phase::Late,
        vec![ProbeResult {
            cost: Default::default(),
            name: "units-active".into(),
            severity: Severity::Required,
            result: Outcome::Fail,
            duration_ms: 1250,
            reason: Some("nginx.service failed".into()),
            output: String::new(),
        }],
    );
    let ctx = sys.probe_context(ProbeContext::default());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    judge(&sys, &report, &ctx, false, None).unwrap();
    assert_eq!(s.kinds(), ["verdict", "rollback"]);
    let m = metrics();
    has(&m, "health_checker_rollbacks_total 1");
    has(&m, "health_checker_promotions_total 0");
    has(&m, "health_checker_fallbacks_total 0");
    has(&m, "health_checker_last_verdict_pass{phase=\"late\"} 0");
    has(
        &m,
        "health_checker_probe_result{phase=\"late\",probe=\"units-active\",result=\"fail\"} 1",
    );
    has(
        &m,
        "health_checker_probe_duration_seconds{phase=\"late\",probe=\"units-active\"} 1.25",
    );
    has(&m, "health_checker_trial_pending 0");
    has(&m, "health_checker_degraded 0");
    let stamp: u64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("health_checker_last_verdict_timestamp_seconds{phase=\"late\"} ")
        })
        .unwrap_or_else(|| panic!("no verdict time in\n{m}"))
        .parse()
        .unwrap();
    assert!(stamp >= before, "{stamp} < {before}");

    // A change by hand refreshes them too; the count stays.
    assert_eq!(s.hc(&["arm", "3", "--tries", "2"]).code, 0);
    let m = metrics();
    has(&m, "health_checker_trial_pending 1");
    has(&m, "health_checker_trial_attempts_left 2");
    has(&m, "health_checker_rollbacks_total 1");

    assert_eq!(promtool_problems(&m), "");
    let exporter = NodeExporter::start(&s.path(METRICS_DIR));
    let served = exporter.scrape();
    has(&served, "node_textfile_scrape_error 0");
    has(&served, "health_checker_rollbacks_total 1");
    has(&served, "health_checker_trial_attempts_left 2");
    has(
        &served,
        "health_checker_probe_result{phase=\"late\",probe=\"units-active\",result=\"fail\"} 1",
    );
    assert!(
        served.contains("# TYPE health_checker_rollbacks_total counter"),
        "{served}"
    );
}

#[test]
fn a_metrics_file_that_cannot_be_written_is_a_warning_not_a_failure() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    // A directory where the file goes: the rename over it fails.
    std::fs::create_dir_all(s.path(METRICS_FILE).join("x")).unwrap();
    let r = s.hc(&["arm", "2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("warning: writing the metrics") && said.contains(METRICS_FILE),
        "{said}"
    );
}

#[test]
fn metrics_of_an_unreadable_history_are_left_out_not_zero() {
    let s = Sys::new(1, 1, "");
    s.env(Some(1), None);
    std::fs::create_dir_all(s.path(METRICS_DIR)).unwrap();
    s.write("/var/lib/health-checker/history.json", "{ torn");
    // The change is made; recording it fails (and says so).
    let r = s.hc(&["arm", "2"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));
    let m = std::fs::read_to_string(s.path(METRICS_FILE)).unwrap();
    for line in [
        "health_checker_record_readable{record=\"history\"} 0",
        "health_checker_record_readable{record=\"state\"} 1",
        "health_checker_trial_pending 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line:?} in\n{m}");
    }
    assert!(!m.contains("health_checker_rollbacks_total"), "{m}");
}

/// `arm` and `rollback` read, decide and write under the lock a check
/// holds: while another holder has it (a running check), they wait, and
/// then decide from what that holder wrote, not from what they read before.
#[test]
fn arm_and_rollback_decide_after_the_lock_of_a_running_check() {
    let s = Sys::new(2, 2, "tries = 3\n");
    let state = health_checker::state::StateFile::new(&health_checker::paths::Root::new(&s.root));
    // Each: the command, the known-good before, the known-good the holder
    // writes while the command waits.
    let start = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_health-checker"))
            .arg("--root")
            .arg(&s.root)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |mut child: std::process::Child| {
        let t = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(t.elapsed() < Duration::from_secs(40), "still waiting");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    };

    // rollback: G is 1 when it starts; the holder promotes 3 meanwhile.
    s.env(Some(1), None);
    let held = state.lock().unwrap();
    let child = start(&["rollback", "--no-reboot"]);
    std::thread::sleep(Duration::from_millis(1500));
    s.env(Some(3), None);
    drop(held);
    let (status, err) = finish(child);
    assert!(status.success(), "{status}: {err}");
    assert_eq!(
        s.default_id(),
        s.id(3),
        "rolled back to the G the holder wrote"
    );

    // arm 2: G is 1 when it starts; the holder makes 2 the known-good.
    s.env(Some(1), None);
    let held = state.lock().unwrap();
    let child = start(&["arm", "2"]);
    std::thread::sleep(Duration::from_millis(1500));
    s.env(Some(2), None);
    drop(held);
    let (status, err) = finish(child);
    assert!(!status.success(), "armed the known-good: {err}");
    assert!(err.contains("is the known-good snapshot"), "{err}");
    assert_eq!(s.key("hc_trial"), None);
}

/// The management methods of the D-Bus service (`health-checker
/// dbus-service` on a private bus, called as root) change what the commands
/// of the same names change, under the same lock, and answer with what the
/// commands print; a usage error is `InvalidArgs`.
#[test]
fn dbus_management_methods_run_the_commands() {
    let s = Sys::new(1, 1, "tries = 3\n");
    s.env(Some(1), None);
    let bus = common::dbus::PrivateBus::start();
    let mut service = common::process::Killed::new(
        Command::new(env!("CARGO_BIN_EXE_health-checker"))
            .arg("--root")
            .arg(&s.root)
            .args(["dbus-service", "--bus-address", &bus.address])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting health-checker dbus-service"),
    );
    let conn = zbus::blocking::connection::Builder::address(bus.address.as_str())
        .and_then(|b| b.method_timeout(Duration::from_secs(30)).build())
        .expect("connecting to the private bus");
    let deadline = Instant::now() + Duration::from_secs(20);
    let proxy = loop {
        let p = zbus::blocking::Proxy::new(
            &conn,
            health_checker::dbus_service::HC_NAME,
            health_checker::dbus_service::HC_PATH,
            "io.github.healthchecker.HealthChecker1",
        )
        .expect("a proxy");
        if p.call::<_, _, String>("GetLastVerdict", &()).is_ok() {
            break p;
        }
        assert!(service.running(), "health-checker dbus-service exited");
        assert!(
            Instant::now() < deadline,
            "the service did not answer in 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    // Arm by number with 2 attempts: the trial, the default, the history.
    let said: String = proxy.call("Arm", &("2", 2u8)).expect("Arm");
    assert!(
        said.contains(&format!("armed {} (ID {}) as the trial", snap(2), s.id(2))),
        "{said}"
    );
    assert!(said.contains("at most 2 time(s)"), "{said}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));
    assert_eq!(s.key("hc_tries").as_deref(), Some("2"));
    assert_eq!(s.default_id(), s.id(2));
    // Empty snapshot and 0 tries: the default subvolume, configured tries.
    let said: String = proxy.call("Arm", &("", 0u8)).expect("Arm");
    assert!(said.contains("at most 3 time(s)"), "{said}");
    assert_eq!(s.key("hc_tries").as_deref(), Some("3"));

    // The known-good is no trial: a usage error, nothing changed.
    let err = proxy
        .call::<_, _, String>("Arm", &(snap(1).as_str(), 0u8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("InvalidArgs"), "{err}");
    assert!(err.contains("is the known-good snapshot"), "{err}");
    // Out of range attempts: the same.
    let err = proxy
        .call::<_, _, String>("Arm", &("3", 12u8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("InvalidArgs"), "{err}");
    assert_eq!(s.key("hc_trial"), Some(snap(2)));

    // Mark the trial bad: disarmed, the default back to the known-good.
    let said: String = proxy.call("MarkBad", &("",)).expect("MarkBad");
    assert!(said.contains("marked bad, disarmed"), "{said}");
    assert_eq!(s.key("hc_trial"), None);
    assert_eq!(s.default_id(), s.id(1));

    // Mark snapshot 3 good: the new known-good, the default follows.
    let said: String = proxy.call("MarkGood", &("3",)).expect("MarkGood");
    assert!(said.contains("is now the known-good snapshot"), "{said}");
    assert_eq!(s.key("hc_good"), Some(snap(3)));
    assert_eq!(s.default_id(), s.id(3));

    // Roll back (no reboot): snapshot 1 runs, 3 is the known-good.
    let said: String = proxy.call("Rollback", &(true,)).expect("Rollback");
    assert!(said.contains("not rebooting"), "{said}");
    assert_eq!(s.default_id(), s.id(3));

    assert_eq!(
        s.kinds(),
        ["arm", "arm", "mark-bad", "mark-good", "rollback"]
    );
    assert!(service.running(), "still serving");
}
