//! Prometheus' own tools against the metrics the checker writes: `promtool
//! check metrics` and a real `prometheus-node-exporter` serving a textfile
//! directory on a loopback port. Both come from Debian packages that
//! scripts/install-deps installs; a missing one fails the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require;

/// Run `promtool check metrics` on `text`; its complaints, if any (empty:
/// no problems). Panics when promtool cannot run.
pub fn promtool_problems(text: &str) -> String {
    let promtool = require::program("promtool", "prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let out = child.wait_with_output().expect("running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("promtool ({}): {said}", out.status)
    }
}

/// A `prometheus-node-exporter` with only the textfile collector, listening
/// on a free loopback port; killed when dropped.
pub struct NodeExporter {
    child: Child,
    port: u16,
}

impl NodeExporter {
    /// Start it on `dir` and wait (at most 20 s) until it answers.
    pub fn start(dir: &Path) -> NodeExporter {
        let exe = require::program("prometheus-node-exporter", "prometheus-node-exporter");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free loopback port")
            .port();
        let child = Command::new(exe)
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus-node-exporter");
        let mut n = NodeExporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = n.child.try_wait().expect("waiting for node-exporter") {
                panic!("prometheus-node-exporter on port {port} exited: {status}");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return n;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus-node-exporter did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The body of `GET /metrics`.
    pub fn scrape(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAccept: text/plain\r\n\r\n",
            self.port
        )
        .expect("sending the request");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("reading the response");
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        body.to_owned()
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
