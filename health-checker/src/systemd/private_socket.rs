//! A D-Bus connection to systemd's private socket (`/run/systemd/private`)
//! that zbus can read.
//!
//! Before the system bus is up (the early phase, and late in a shutdown),
//! the only way to talk to systemd is its private socket: a direct,
//! peer-to-peer D-Bus connection with no bus daemon. systemd stamps every
//! message it sends there with the sender `org.freedesktop.systemd1`, a
//! well-known name. The D-Bus specification lets a peer-to-peer message
//! carry any sender or none, but zbus (5.x) only accepts a unique name
//! (`:1.42`) in that field; on anything else its connection thread panics
//! (`message/fields.rs`), so every reply from systemd is lost and each call
//! waits for its timeout.
//!
//! The fix is a relay between zbus and the socket: zbus talks to one end of
//! a socket pair, two threads copy bytes between the other end and systemd,
//! and on the way back they drop a sender field that is not a unique name
//! (a direct connection needs none; everything else in the message is
//! passed on byte for byte). The relay also declines file-descriptor
//! passing during the handshake, since it does not carry descriptors; none
//! of our calls send or receive one.
//!
//! The threads end when either side closes: dropping the zbus connection
//! closes its end of the pair, which ends both threads.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;

use super::CALL_TIMEOUT;

/// The largest message the D-Bus specification allows (128 MiB).
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// Header field codes (D-Bus specification, "Message Format").
const FIELD_SENDER: u8 = 7;

/// The longest handshake line we relay; real ones are well under 200 bytes.
const MAX_AUTH_LINE: usize = 16 * 1024;

/// Connect to the peer-to-peer D-Bus socket at `path` (systemd's private
/// socket) through a sender-fixing relay.
pub fn connect(path: &Path) -> anyhow::Result<Connection> {
    let upstream =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    let (ours, relay_end) = UnixStream::pair().context("creating a socket pair for the relay")?;
    start_relay(relay_end, upstream)
        .with_context(|| format!("starting the relay to {}", path.display()))?;
    Builder::async_io_unix_stream(ours)
        .p2p()
        .method_timeout(CALL_TIMEOUT)
        .build()
        .with_context(|| format!("connecting directly to {}", path.display()))
}

/// Copy bytes between `client` (zbus) and `server` (systemd) in two
/// threads, fixing what the server sends.
fn start_relay(client: UnixStream, server: UnixStream) -> io::Result<()> {
    let client_reader = client.try_clone()?;
    let server_writer = server.try_clone()?;
    let client_writer = Arc::new(Mutex::new(client));
    let to_client = Arc::clone(&client_writer);
    std::thread::Builder::new()
        .name("dbus-relay-up".into())
        .spawn(move || {
            if let Err(e) = relay_up(client_reader, &server_writer, &client_writer) {
                tracing::debug!("D-Bus relay (to systemd) ended: {e}");
            }
            let _ = server_writer.shutdown(std::net::Shutdown::Both);
        })?;
    std::thread::Builder::new()
        .name("dbus-relay-down".into())
        .spawn(move || {
            if let Err(e) = relay_down(&server, &to_client) {
                tracing::debug!("D-Bus relay (from systemd) ended: {e}");
            }
            if let Ok(c) = to_client.lock() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        })?;
    Ok(())
}

fn write_locked(to: &Mutex<UnixStream>, bytes: &[u8]) -> io::Result<()> {
    to.lock()
        .map_err(|_| io::Error::other("relay lock poisoned"))?
        .write_all(bytes)
}

/// Read one handshake line (ending in `\r\n`), bounded.
fn read_auth_line(from: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = from
        .take(MAX_AUTH_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "D-Bus handshake line too long or cut off",
        ));
    }
    Ok(Some(line))
}

/// Client to server: the handshake line by line (declining
/// `NEGOTIATE_UNIX_FD` ourselves), then every byte as it comes.
fn relay_up(
    client: UnixStream,
    mut server: &UnixStream,
    client_writer: &Mutex<UnixStream>,
) -> io::Result<()> {
    let mut from = BufReader::new(client);
    // The first byte of the handshake is a NUL (credentials), sent alone.
    let mut nul = [0u8; 1];
    from.read_exact(&mut nul)?;
    server.write_all(&nul)?;
    loop {
        let Some(line) = read_auth_line(&mut from)? else {
            return Ok(());
        };
        if line.trim_ascii_end() == b"NEGOTIATE_UNIX_FD" {
            write_locked(
                client_writer,
                b"ERROR \"file descriptors are not relayed\"\r\n",
            )?;
            continue;
        }
        server.write_all(&line)?;
        if line.trim_ascii_end() == b"BEGIN" {
            break;
        }
    }
    // Whatever the reader already buffered, then the rest unchanged.
    let buffered = from.buffer().to_vec();
    server.write_all(&buffered)?;
    let mut rest = from.into_inner();
    io::copy(&mut rest, &mut server)?;
    Ok(())
}

/// Server to client: handshake lines as they are, then message by message
/// with a non-unique sender dropped.
fn relay_down(server: &UnixStream, client: &Mutex<UnixStream>) -> io::Result<()> {
    let mut from = BufReader::new(server);
    // Handshake replies are text lines (`OK ...`, `AGREE_UNIX_FD`, `ERROR
    // ...`, `REJECTED ...`); a message starts with its byte-order mark.
    loop {
        let next = match from.fill_buf()? {
            [] => return Ok(()),
            [first, ..] => *first,
        };
        if next == b'l' || next == b'B' {
            break;
        }
        let Some(line) = read_auth_line(&mut from)? else {
            return Ok(());
        };
        write_locked(client, &line)?;
    }
    loop {
        let mut fixed = [0u8; 16];
        match from.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let total = message_len(&fixed)?;
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&fixed);
        msg.resize(total, 0);
        from.read_exact(&mut msg[16..])?;
        let out = match without_foreign_sender(&msg) {
            Ok(Some(fixed)) => fixed,
            Ok(None) => msg,
            Err(e) => {
                // Not a message we understand: pass it on as it is.
                tracing::debug!("D-Bus relay: {e}; message passed on unchanged");
                msg
            }
        };
        write_locked(client, &out)?;
    }
}

/// Byte order of a message, from its first byte.
#[derive(Debug, Clone, Copy)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn of(mark: u8) -> io::Result<Self> {
        match mark {
            b'l' => Ok(Order::Little),
            b'B' => Ok(Order::Big),
            other => Err(invalid(format!("bad byte-order mark {other:#04x}"))),
        }
    }

    fn u32_at(self, buf: &[u8], at: usize) -> io::Result<u32> {
        let bytes: [u8; 4] = buf
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid(format!("message cut off at byte {at}")))?;
        Ok(match self {
            Order::Little => u32::from_le_bytes(bytes),
            Order::Big => u32::from_be_bytes(bytes),
        })
    }

    fn u32_bytes(self, v: u32) -> [u8; 4] {
        match self {
            Order::Little => v.to_le_bytes(),
            Order::Big => v.to_be_bytes(),
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The whole length of a message from its first 16 bytes: the fixed
/// header, the header-field array, padding to 8 and the body.
fn message_len(fixed: &[u8; 16]) -> io::Result<usize> {
    let order = Order::of(fixed[0])?;
    let body = order.u32_at(fixed, 4)? as usize;
    let fields = order.u32_at(fixed, 12)? as usize;
    let total = align8(16 + fields)
        .checked_add(body)
        .filter(|&t| t <= MAX_MESSAGE)
        .ok_or_else(|| invalid(format!("message of {fields}+{body} bytes is too large")))?;
    Ok(total)
}

/// One header field: its code, where its struct starts and where its value
/// ends, and the value when it is a string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    code: u8,
    start: usize,
    end: usize,
    text: Option<String>,
}

/// The header fields of a whole message.
fn header_fields(msg: &[u8]) -> io::Result<Vec<Field>> {
    let order = Order::of(*msg.first().ok_or_else(|| invalid("empty message".into()))?)?;
    let array_end = 16 + order.u32_at(msg, 12)? as usize;
    if array_end > msg.len() {
        return Err(invalid("header fields run past the message".into()));
    }
    let byte = |at: usize| {
        msg.get(at)
            .copied()
            .ok_or_else(|| invalid(format!("header cut off at byte {at}")))
    };
    let mut fields = Vec::new();
    let mut p = 16;
    while p < array_end {
        let start = p;
        let code = byte(p)?;
        let sig_len = byte(p + 1)? as usize;
        let sig = msg
            .get(p + 2..p + 2 + sig_len)
            .ok_or_else(|| invalid("header field signature cut off".into()))?;
        let value = p + 2 + sig_len + 1;
        let (end, text) = match sig {
            b"s" | b"o" => {
                let at = align4(value);
                let len = order.u32_at(msg, at)? as usize;
                let bytes = msg
                    .get(at + 4..at + 4 + len)
                    .ok_or_else(|| invalid("header string cut off".into()))?;
                let text = String::from_utf8_lossy(bytes).into_owned();
                (at + 4 + len + 1, Some(text))
            }
            b"g" => {
                let len = byte(value)? as usize;
                (value + 1 + len + 1, None)
            }
            b"u" | b"i" | b"h" => (align4(value) + 4, None),
            b"y" => (value + 1, None),
            other => {
                return Err(invalid(format!(
                    "header field {code} has signature {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        if end > array_end {
            return Err(invalid(format!("header field {code} runs past the array")));
        }
        fields.push(Field {
            code,
            start,
            end,
            text,
        });
        p = align8(end);
    }
    Ok(fields)
}

/// The message without its sender field when that sender is not a unique
/// name (`None` when nothing needs changing).
fn without_foreign_sender(msg: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let order = Order::of(msg[0])?;
    let fields = header_fields(msg)?;
    let foreign = |f: &Field| {
        f.code == FIELD_SENDER && f.text.as_deref().is_some_and(|s| !s.starts_with(':'))
    };
    if !fields.iter().any(foreign) {
        return Ok(None);
    }
    let body_start = align8(16 + order.u32_at(msg, 12)? as usize);
    let body = msg
        .get(body_start..)
        .ok_or_else(|| invalid("body cut off".into()))?;
    let mut out = Vec::with_capacity(msg.len());
    out.extend_from_slice(&msg[..16]);
    for f in fields.iter().filter(|f| !foreign(f)) {
        out.resize(align8(out.len()), 0);
        out.extend_from_slice(&msg[f.start..f.end]);
    }
    let array_len = u32::try_from(out.len() - 16).expect("shorter than the original");
    out[12..16].copy_from_slice(&order.u32_bytes(array_len));
    out.resize(align8(out.len()), 0);
    out.extend_from_slice(body);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;
    use std::os::unix::net::UnixListener;
    use std::time::Duration;
    use zbus::zvariant::{serialized::Context, to_bytes, Endian, ObjectPath, Signature, Value};

    const SYSTEMD: &str = "org.freedesktop.systemd1";

    fn endian(order: Order) -> Endian {
        match order {
            Order::Little => Endian::Little,
            Order::Big => Endian::Big,
        }
    }

    /// A message as the D-Bus specification lays it out, built with
    /// zvariant: the header `(yyyyuua(yv))`, padding to 8, the body.
    fn message<B: serde::Serialize + zbus::zvariant::Type>(
        order: Order,
        msg_type: u8,
        serial: u32,
        fields: Vec<(u8, Value<'_>)>,
        body: &B,
    ) -> Vec<u8> {
        let ctxt = Context::new_dbus(endian(order), 0);
        let body = to_bytes(ctxt, body).unwrap().to_vec();
        let mark = match order {
            Order::Little => b'l',
            Order::Big => b'B',
        };
        let header = (mark, msg_type, 0u8, 1u8, body.len() as u32, serial, fields);
        let mut out = to_bytes(ctxt, &header).unwrap().to_vec();
        out.resize(align8(out.len()), 0);
        out.extend_from_slice(&body);
        out
    }

    fn reply_fields(reply_to: u32, sender: &str, sig: &str) -> Vec<(u8, Value<'static>)> {
        vec![
            (5, Value::U32(reply_to)),
            (8, Value::Signature(Signature::try_from(sig).unwrap())),
            (FIELD_SENDER, Value::from(sender.to_string())),
        ]
    }

    #[test]
    fn a_well_known_sender_is_dropped_and_the_rest_kept_byte_for_byte() {
        for order in [Order::Little, Order::Big] {
            let body = (ObjectPath::try_from("/org/freedesktop/systemd1/unit/x").unwrap(),);
            let msg = message(order, 2, 9, reply_fields(4, SYSTEMD, "o"), &body);
            assert_eq!(
                message_len(msg[..16].try_into().unwrap()).unwrap(),
                msg.len()
            );

            let fixed = without_foreign_sender(&msg).unwrap().expect("rewritten");
            let expected = message(
                order,
                2,
                9,
                reply_fields(4, SYSTEMD, "o")
                    .into_iter()
                    .filter(|(c, _)| *c != FIELD_SENDER)
                    .collect(),
                &body,
            );
            assert_eq!(fixed, expected, "{order:?}");
            assert_eq!(
                message_len(fixed[..16].try_into().unwrap()).unwrap(),
                fixed.len()
            );
        }
    }

    #[test]
    fn a_sender_in_the_middle_of_the_fields_is_dropped() {
        let fields = vec![
            (1, Value::from(ObjectPath::try_from("/a/b").unwrap())),
            (FIELD_SENDER, Value::from(SYSTEMD)),
            (2, Value::from("org.freedesktop.DBus.Properties")),
            (3, Value::from("PropertiesChanged")),
            (
                8,
                Value::Signature(Signature::try_from("sa{sv}as").unwrap()),
            ),
        ];
        let body = (
            "iface",
            std::collections::HashMap::<String, Value<'_>>::new(),
            vec!["x".to_string()],
        );
        let msg = message(Order::Little, 4, 7, fields.clone(), &body);
        let kept: Vec<_> = fields
            .into_iter()
            .filter(|(c, _)| *c != FIELD_SENDER)
            .collect();
        let expected = message(Order::Little, 4, 7, kept, &body);
        assert_eq!(without_foreign_sender(&msg).unwrap().unwrap(), expected);
    }

    #[test]
    fn a_unique_sender_or_none_leaves_the_message_alone() {
        let msg = message(Order::Little, 2, 3, reply_fields(1, ":1.42", "s"), &("x",));
        assert_eq!(without_foreign_sender(&msg).unwrap(), None);
        let no_sender = vec![(5, Value::U32(1))];
        let msg = message(Order::Little, 2, 3, no_sender, &());
        assert_eq!(without_foreign_sender(&msg).unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(message_len(b"x\x01\x00\x01\0\0\0\0\x01\0\0\0\0\0\0\0").is_err());
        let mut msg = message(Order::Little, 2, 3, reply_fields(1, SYSTEMD, "s"), &("x",));
        // A field array longer than the message.
        msg[12] = 0xff;
        msg[13] = 0xff;
        assert!(without_foreign_sender(&msg).is_err());
        let huge = [
            b'l', 2, 0, 1, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0x7f,
        ];
        assert!(message_len(&huge).is_err());
        for cut in 17..40 {
            let msg = message(Order::Little, 2, 3, reply_fields(1, SYSTEMD, "s"), &("x",));
            let _ = without_foreign_sender(&msg[..cut]);
        }
    }

    /// A stand-in for systemd's private socket: the server side of the
    /// handshake, then for each method call a reply stamped, as systemd
    /// does, with the sender `org.freedesktop.systemd1`. Answers `LoadUnit`
    /// with a unit path and `Get` with the property's name as its value.
    fn fake_systemd(listener: UnixListener) {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut from = BufReader::new(stream);
        let mut nul = [0u8];
        from.read_exact(&mut nul).unwrap();
        loop {
            let line = read_auth_line(&mut from).unwrap().unwrap();
            let line = String::from_utf8(line).unwrap();
            match line.trim_end().split(' ').next().unwrap() {
                "AUTH" => out.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n"),
                "NEGOTIATE_UNIX_FD" => out.write_all(b"AGREE_UNIX_FD\r\n"),
                "BEGIN" => break,
                other => panic!("unexpected handshake line {other:?}"),
            }
            .unwrap();
        }
        loop {
            let mut fixed = [0u8; 16];
            if from.read_exact(&mut fixed).is_err() {
                return;
            }
            let mut msg = fixed.to_vec();
            msg.resize(message_len(&fixed).unwrap(), 0);
            from.read_exact(&mut msg[16..]).unwrap();
            let serial = Order::Little.u32_at(&msg, 8).unwrap();
            let member = header_fields(&msg)
                .unwrap()
                .into_iter()
                .find(|f| f.code == 3)
                .and_then(|f| f.text)
                .unwrap();
            let body_start = align8(16 + Order::Little.u32_at(&msg, 12).unwrap() as usize);
            let ctxt = Context::new_dbus(Endian::Little, 0);
            let body = zbus::zvariant::serialized::Data::new(&msg[body_start..], ctxt);
            let reply = match member.as_str() {
                "LoadUnit" => {
                    let ((unit,), _): ((String,), _) = body.deserialize().unwrap();
                    let path = format!(
                        "/org/freedesktop/systemd1/unit/{}",
                        unit.replace('.', "_2e")
                    );
                    let path = ObjectPath::try_from(path).unwrap();
                    message(
                        Order::Little,
                        2,
                        100 + serial,
                        reply_fields(serial, SYSTEMD, "o"),
                        &(path,),
                    )
                }
                "Get" => {
                    let ((_, prop), _): ((String, String), _) = body.deserialize().unwrap();
                    let value = Value::from(prop.to_lowercase());
                    message(
                        Order::Little,
                        2,
                        100 + serial,
                        reply_fields(serial, SYSTEMD, "v"),
                        &(value,),
                    )
                }
                other => panic!("unexpected call {other}"),
            };
            out.write_all(&reply).unwrap();
        }
    }

    #[test]
    fn calls_through_the_relay_get_replies_stamped_with_a_well_known_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || fake_systemd(listener));

        let systemd = crate::systemd::Systemd::from_connection(connect(&path).unwrap());
        let state = systemd.unit_state("app.service").unwrap();
        assert_eq!(state.load_state, "loadstate");
        assert_eq!(state.active_state, "activestate");
        assert_eq!(state.sub_state, "substate");
        drop(systemd);
        server.join().unwrap();
    }

    #[test]
    fn without_the_relay_zbus_loses_the_same_replies() {
        // What the relay is for: the same server, reached by zbus directly,
        // never gets an answer through.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || fake_systemd(listener));

        let conn = Builder::async_io_unix_stream(UnixStream::connect(&path).unwrap())
            .p2p()
            .method_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let systemd = crate::systemd::Systemd::from_connection(conn);
        let err = systemd.unit_state("app.service").unwrap_err();
        assert!(format!("{err:#}").contains("timed out"), "{err:#}");
    }
}
