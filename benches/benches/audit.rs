//! What the Merkle tree and signed checkpoints add to the audit log: the tree's share of one
//! append, one append as the hub does it, and one checkpoint (sign + append + fdatasync).
//!
//! `cargo bench -p hark-benches --bench audit`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hark_hub::audit::merkle::{Frontier, leaf_hash};
use hark_hub::audit::{AuditLog, Kind, Record};

fn record(n: u64) -> Record {
    Record {
        satellite: Some("kitchen".into()),
        request_id: Some(format!("r-{n}")),
        intent: Some("system.cancel".into()),
        skill: Some("system.cancel".into()),
        status: Some("ok".into()),
        args: Some(serde_json::json!({"target": "<redacted>"})),
        elapsed_ms: Some(0.4),
        ..Record::new(Kind::Request)
    }
}

fn audit_benches(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("hark-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = hark_hub::audit::checkpoint::load_or_create_key(&dir.join("hub.key")).unwrap();
    let mut log = AuditLog::open_signed(&dir.join("audit.jsonl"), Some(key)).unwrap();

    let mut group = c.benchmark_group("audit");
    // A typical request line is ~330 bytes.
    let line = vec![b'x'; 330];
    let mut frontier = Frontier::default();
    group.bench_function("tree_leaf_hash_and_push", |b| {
        b.iter(|| frontier.push(leaf_hash(black_box(&line))))
    });
    let mut n = 0;
    group.bench_function("append_with_tree", |b| {
        b.iter(|| {
            n += 1;
            log.append(black_box(&record(n))).unwrap()
        })
    });
    group.bench_function("checkpoint_sign_append_fdatasync", |b| {
        b.iter(|| {
            n += 1;
            log.append(&record(n)).unwrap();
            log.sync().unwrap();
            log.prepare_checkpoint().unwrap().run().unwrap()
        })
    });
    group.finish();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, audit_benches);
criterion_main!(benches);
