//! What the audit tests share: a scratch directory, a sample record, and a log to break.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{AuditLog, Decision, Kind, Record, VerifyError, verify};

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TestDir(pub(super) PathBuf);

impl TestDir {
    pub(super) fn new(name: &str) -> TestDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hark-audit-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    pub(super) fn log(&self) -> PathBuf {
        self.0.join("audit.jsonl")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub(super) fn request(n: u32) -> Record {
    Record {
        satellite: Some("kitchen".to_owned()),
        request_id: Some(format!("r{n}")),
        intent: Some("timer.set".to_owned()),
        skill: Some("timer".to_owned()),
        decision: Some(Decision::Allow),
        rule: Some("default".to_owned()),
        status: Some("ok".to_owned()),
        args: Some(serde_json::json!({ "minutes": n, "label": "tea \"green\"" })),
        result: Some(serde_json::json!({ "ok": true })),
        elapsed_ms: Some(1.5),
        ..Record::new(Kind::Request)
    }
}

/// A log of `n` requests, synced; returns the path.
pub(super) fn write_log(dir: &TestDir, n: u32) -> PathBuf {
    let path = dir.log();
    let mut log = AuditLog::open(&path).unwrap();
    for i in 1..=n {
        log.append(&request(i)).unwrap();
    }
    log.sync().unwrap();
    path
}

/// The key the signed test logs use.
pub(super) fn key() -> ed25519_compact::SecretKey {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32])).sk
}

/// A log of `n` requests with a checkpoint after each of `at`, synced; returns the path.
pub(super) fn write_signed_log(dir: &TestDir, n: u32, at: &[u32]) -> PathBuf {
    let path = dir.log();
    let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
    for i in 1..=n {
        log.append(&request(i)).unwrap();
        if at.contains(&i) {
            log.sync().unwrap();
            log.prepare_checkpoint().unwrap().run().unwrap();
        }
    }
    log.sync().unwrap();
    path
}

pub(super) fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

pub(super) fn verify_err(path: &Path) -> VerifyError {
    match verify(path) {
        Ok(report) => panic!("expected a broken log, got {report:?}"),
        Err(e) => e,
    }
}
