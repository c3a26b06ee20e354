//! A private D-Bus message bus for tests: a `dbus-daemon` of our own with a
//! minimal configuration, listening on a socket in a temporary directory.
//! Killed when dropped. The machine's system bus is never touched.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use super::require;

/// A running private bus.
#[derive(Debug)]
pub struct PrivateBus {
    _dir: tempfile::TempDir,
    child: Child,
    /// The bus address (`unix:path=...,guid=...`) to connect to.
    pub address: String,
}

impl PrivateBus {
    /// Start a bus that lets anyone own any name and send anything. Fails
    /// the test loudly when `dbus-daemon` is missing.
    pub fn start() -> Self {
        Self::start_with_policy(
            r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>"#,
        )
    }

    /// Start a bus whose configuration has these policy elements (and
    /// `<include>`s) instead of the permissive default. The socket's
    /// directory is readable by everyone, so that clients running as other
    /// users can connect.
    pub fn start_with_policy(policy: &str) -> Self {
        let daemon = require::program("dbus-daemon", "dbus-daemon (or dbus)");
        let dir = tempfile::Builder::new()
            .prefix("hc-dbus-")
            .tempdir()
            .expect("creating a temporary directory");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("opening the bus directory to other users");
        }
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
{}
</busconfig>
"#,
                socket.display(),
                policy
            ),
        )
        .expect("writing the bus configuration");
        // Its complaints (it cannot raise its descriptor limit in a
        // container, ...) go to a file, shown when it does not start.
        let log = dir.path().join("dbus-daemon.log");
        let log_file = std::fs::File::create(&log).expect("creating the bus log");
        let mut child = Command::new(&daemon)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", daemon.display()));
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        if read.is_err() || line.trim().is_empty() {
            let _ = child.kill();
            let status = child.wait();
            let messages = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("dbus-daemon printed no address ({status:?}): {messages}");
        }
        PrivateBus {
            _dir: dir,
            child,
            address: line.trim().to_string(),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
