//! Helpers for the Wyoming tests: [`HomeAssistant`], the real `wyoming`
//! library (Python, in `target/hermes-venv`) holding connections to the
//! hub's Wyoming listener, building the events Home Assistant sends and
//! reading the hub's answers.

use serde_json::{Value, json};

use crate::python::{JsonPeer, repo_root};

/// How to provide the library when it is missing.
const PROVIDE: &str = "the Wyoming tests need the real `wyoming` package from PyPI in \
    target/hermes-venv; run scripts/hermes-venv.sh (./test.sh does this)";

/// The `wyoming` library answering one JSON command per line
/// (`tests/wyoming/wyoming_peer.py`). Killed on drop.
#[derive(Debug)]
pub struct HomeAssistant {
    peer: JsonPeer,
    port: u16,
}

impl HomeAssistant {
    /// Starts the peer for the hub's Wyoming listener on `port`.
    pub fn start(port: u16) -> HomeAssistant {
        let script = repo_root().join("tests/wyoming/wyoming_peer.py");
        HomeAssistant {
            peer: JsonPeer::start(&script, "wyoming", PROVIDE),
            port,
        }
    }

    /// One command; a failure on the Python side fails the test with its trace.
    pub fn call(&mut self, command: Value) -> Value {
        self.peer.call(command)
    }

    /// Opens connection `conn` to the hub.
    pub fn connect(&mut self, conn: &str) {
        let port = self.port;
        self.call(json!({"op": "connect", "conn": conn, "port": port}));
    }

    /// `describe`, and the hub's answer as `Info.from_event` reads it.
    pub fn describe(&mut self, conn: &str) -> Value {
        self.call(json!({"op": "describe", "conn": conn}))
    }

    /// An `intent` event (`entities`: `[{"name", "value"}]`) and the hub's
    /// answer: `{"type": "handled" | "not-handled", "text"}` or
    /// `{"type": "error", "text", "code"}`.
    pub fn intent(&mut self, conn: &str, name: &str, entities: Value, context: Value) -> Value {
        self.call(
            json!({"op": "intent", "conn": conn, "name": name, "entities": entities,
                         "context": context}),
        )
    }

    /// Any event, built as `Event(type, data)`, and the hub's answer.
    pub fn event(&mut self, conn: &str, kind: &str, data: Value) -> Value {
        self.call(json!({"op": "event", "conn": conn, "type": kind, "data": data}))
    }

    /// Raw bytes on the connection, and the next event the hub sends.
    pub fn raw(&mut self, conn: &str, bytes: &[u8]) -> Value {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.call(json!({"op": "raw", "conn": conn, "hex": hex}))
    }

    /// The hub's Wyoming port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn close(&mut self, conn: &str) {
        self.call(json!({"op": "close", "conn": conn}));
    }
}
