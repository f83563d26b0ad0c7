//! [`JsonPeer`]: a real Python library (in `target/hermes-venv`, made by
//! `scripts/hermes-venv.sh`) driven by a small script that answers one JSON
//! command per line. The Hermes tests use rhasspy-hermes this way, the
//! Wyoming tests the `wyoming` package.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The venv's Python, or a failure that says how to make it.
pub fn venv_python() -> PathBuf {
    let python = repo_root().join("target/hermes-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: the Hermes and Wyoming tests need the real rhasspy-hermes and \
         wyoming from PyPI. Run scripts/hermes-venv.sh (the README's test command, \
         ./test.sh, does this)",
        python.display()
    );
    python
}

/// A peer script's process. It prints `{"ready": ...}` (or
/// `{"missing": ...}` when its library cannot be imported) once, then
/// answers each command line with one line: the answer, or `{"error",
/// "trace"}`. Killed on drop.
#[derive(Debug)]
pub struct JsonPeer {
    /// The library, for messages: "rhasspy-hermes", "wyoming".
    library: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl JsonPeer {
    /// Starts `script` with the venv's Python and waits for its first line;
    /// `provide` says how to get `library` when it is missing.
    pub fn start(script: &Path, library: &'static str, provide: &str) -> JsonPeer {
        let mut child = Command::new(venv_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        let ready: Value = serde_json::from_str(&ready).unwrap_or(Value::Null);
        if let Some(missing) = ready.get("missing") {
            panic!("{provide}: {missing}");
        }
        assert!(
            ready.get("ready").is_some(),
            "{} did not start ({provide}): {ready}",
            script.display()
        );
        JsonPeer {
            library,
            child,
            stdin,
            stdout,
        }
    }

    /// One command; a failure on the Python side fails the test with its trace.
    pub fn call(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{} peer answered {line:?}: {e}", self.library));
        if let Some(error) = answer.get("error") {
            panic!(
                "{} peer failed on {command}: {error}\n{}",
                self.library,
                answer["trace"].as_str().unwrap_or_default()
            );
        }
        answer
    }
}

impl Drop for JsonPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
