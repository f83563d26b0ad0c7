//! What counting costs a request, and what a scrape costs the hub: one
//! reply counted as the dispatcher counts it (in flight, status, skill,
//! histogram), and the Prometheus text and JSON of a hub with 50 skills.
//!
//! `cargo bench -p hark-benches --bench metrics`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hark_hub::metrics::{Gauges, Metrics};
use hark_skill_sdk::Status;

fn metrics_benches(c: &mut Criterion) {
    let metrics = Metrics::default();
    let names: Vec<String> = (0..50).map(|i| format!("skill_{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        for n in 0..100u64 {
            let status = if n % 10 == 0 {
                Status::Invalid
            } else {
                Status::Ok
            };
            metrics.answered(Some(name), status, Duration::from_micros(50 * n + i as u64));
        }
        metrics.sandboxed(name, 1_000_000, 17 * 65_536);
    }
    let mut group = c.benchmark_group("metrics");
    group.bench_function("one_reply_counted", |b| {
        b.iter(|| {
            let _flight = metrics.flight();
            metrics.answered(
                Some(black_box("skill_07")),
                Status::Ok,
                black_box(Duration::from_micros(300)),
            );
        })
    });
    let gauges = Gauges {
        timers_pending: 3,
        audit_records: 12_345,
        rss_bytes: 11 << 20,
        skills_loaded: 50,
    };
    group.bench_function("prometheus_text_50_skills", |b| {
        b.iter(|| black_box(metrics.prometheus(&gauges)))
    });
    group.bench_function("json_50_skills", |b| {
        b.iter(|| black_box(metrics.json(&gauges).to_string()))
    });
    group.finish();
    eprintln!(
        "prometheus text with 50 skills: {} bytes",
        metrics.prometheus(&gauges).len()
    );
}

criterion_group!(benches, metrics_benches);
criterion_main!(benches);
