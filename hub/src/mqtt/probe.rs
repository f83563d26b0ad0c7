//! Is an MQTT broker already listening there? One MQTT 3.1.1 CONNECT and
//! its CONNACK over a plain socket, with a short timeout: what `hark init`
//! asks before choosing between an existing broker and the embedded one,
//! and what a failed bind of the embedded broker asks to say why.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What answers on an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing listens there.
    Nothing,
    /// An MQTT broker; `open` when it took a client without credentials.
    Broker { open: bool },
    /// Something that is not an MQTT broker (or did not answer in time).
    Other,
}

const DISCONNECT: [u8; 2] = [0xe0, 0];

/// CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id
/// `hark-probe`, with `credentials` (user name, password) if given.
fn connect_packet(credentials: Option<(&str, &str)>) -> Vec<u8> {
    let field = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend((bytes.len() as u16).to_be_bytes());
        out.extend(bytes);
    };
    let mut body = Vec::new();
    field(&mut body, b"MQTT");
    body.push(4);
    body.push(if credentials.is_some() { 0xc2 } else { 0x02 });
    body.extend(60u16.to_be_bytes());
    field(&mut body, b"hark-probe");
    if let Some((user, password)) = credentials {
        field(&mut body, user.as_bytes());
        field(&mut body, password.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// Asks `addr` whether it is an MQTT broker, waiting at most `patience`
/// for each step.
pub fn probe(addr: SocketAddr, patience: Duration) -> Found {
    probe_as(addr, patience, None)
}

/// [`probe`], logging in with `credentials` (user name, password): a broker
/// that refuses them is `Broker { open: false }`.
pub fn probe_as(addr: SocketAddr, patience: Duration, credentials: Option<(&str, &str)>) -> Found {
    let Ok(mut socket) = TcpStream::connect_timeout(&addr, patience) else {
        return Found::Nothing;
    };
    let _ = socket.set_read_timeout(Some(patience));
    let _ = socket.set_write_timeout(Some(patience));
    let _ = socket.set_nodelay(true);
    if socket.write_all(&connect_packet(credentials)).is_err() {
        return Found::Other;
    }
    let mut connack = [0u8; 4];
    if socket.read_exact(&mut connack).is_err() || connack[..2] != [0x20, 2] {
        return Found::Other;
    }
    let _ = socket.write_all(&DISCONNECT);
    // Return code 0: accepted; 4 and 5: bad credentials / not authorized.
    match connack[3] {
        0 => Found::Broker { open: true },
        4 | 5 => Found::Broker { open: false },
        _ => Found::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_closed_port_is_nothing_and_a_silent_listener_is_not_a_broker() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let patience = Duration::from_millis(200);
        assert_eq!(
            probe(addr, patience),
            Found::Other,
            "accepts, never answers"
        );
        drop(listener);
        assert_eq!(probe(addr, patience), Found::Nothing);
    }

    #[test]
    fn a_connack_is_a_broker_and_its_refusal_says_it_wants_credentials() {
        for (code, found) in [
            (0u8, Found::Broker { open: true }),
            (5, Found::Broker { open: false }),
            (1, Found::Other),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let broker = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let expected = connect_packet(None);
                let mut connect = vec![0u8; expected.len()];
                s.read_exact(&mut connect).unwrap();
                assert_eq!(connect, expected);
                s.write_all(&[0x20, 2, 0, code]).unwrap();
            });
            assert_eq!(probe(addr, Duration::from_secs(5)), found, "code {code}");
            broker.join().unwrap();
        }
    }
}
