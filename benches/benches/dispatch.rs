//! The dispatcher without the network: parse + validate + run a built-in +
//! append the audit record, as one request costs on the hub's loop.
//!
//! `cargo bench -p hark-benches --bench dispatch`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hark_benches::{Bench, scratch};
use hark_hub::events::Protocol;
use hark_hub::protocols::native;

fn dispatcher_benches(c: &mut Criterion) {
    let bench = Bench::assemble(&scratch("dispatch"), "", "");
    let (rt, d) = (&bench.rt, bench.assembly.dispatcher.clone());

    let mut group = c.benchmark_group("dispatch");
    let cancel = br#"{"id":"r-1","intent":"system.cancel","args":{}}"#;
    group.bench_function("builtin_ok_system_cancel", |b| {
        b.iter(|| rt.block_on(native::answer(&d, "kitchen", black_box(cancel))))
    });
    let schema_error = br#"{"id":"r-2","intent":"timer.set","args":{"duration":5,"x":1}}"#;
    group.bench_function("schema_violation", |b| {
        b.iter(|| rt.block_on(native::answer(&d, "kitchen", black_box(schema_error))))
    });
    let not_json = b"set a timer";
    group.bench_function("not_json", |b| {
        b.iter(|| rt.block_on(native::answer(&d, "kitchen", black_box(not_json))))
    });
    // timer.set appends to the timer journal (fsync) before it answers;
    // pair it with a cancel so the table stays small.
    let set = br#"{"id":"r-3","intent":"timer.set","args":{"duration":"5m","label":"pasta"}}"#;
    let clear = br#"{"id":"r-4","intent":"system.cancel","args":{"target":"timers"}}"#;
    group.bench_function("timer_set_then_cancel_with_fsync", |b| {
        b.iter(|| {
            rt.block_on(native::answer(&d, "kitchen", black_box(set)));
            rt.block_on(native::answer(&d, "kitchen", black_box(clear)))
        })
    });
    group.finish();
}

/// One `timer.set` (and its cancel) when the hub already holds 10,000
/// timers: the cost of a change must not grow with the table. Also times
/// opening that table, as a restart does.
fn full_table_benches(c: &mut Criterion) {
    use hark_hub::timers::{Saved, Timer};
    let dir = scratch("timers");
    std::fs::create_dir_all(&dir).unwrap();
    let far = hark_hub::timers::now_ms() + 24 * 3600 * 1000;
    let mut saved = Saved::default();
    for n in 1..=10_000u64 {
        let timer = Timer {
            id: format!("t-{n}"),
            satellite: format!("sat-{}", n % 400),
            protocol: Protocol::NATIVE,
            label: Some(format!("label {n}")),
            total_ms: 3_600_000,
            due_ms: far + n,
            paused_ms: None,
        };
        saved.timers.insert(timer.id.clone(), timer);
    }
    saved.next_id = 10_000;
    std::fs::write(dir.join("timers.json"), serde_json::to_vec(&saved).unwrap()).unwrap();
    let opened = std::time::Instant::now();
    let bench = Bench::assemble(
        &dir,
        "",
        "[timers]\nmax_total = 20000\nmax_satellites = 1000\n",
    );
    eprintln!("opened 10,000 timers in {:?}", opened.elapsed());
    assert_eq!(bench.assembly.timers.len(), 10_000);
    let (rt, d) = (&bench.rt, bench.assembly.dispatcher.clone());
    let mut group = c.benchmark_group("dispatch");
    let set = br#"{"id":"r-3","intent":"timer.set","args":{"duration":"5m","label":"pasta"}}"#;
    let clear = br#"{"id":"r-4","intent":"system.cancel","args":{"target":"timers"}}"#;
    group.bench_function("timer_set_then_cancel_at_10k_timers", |b| {
        b.iter(|| {
            rt.block_on(native::answer(&d, "kitchen", black_box(set)));
            rt.block_on(native::answer(&d, "kitchen", black_box(clear)))
        })
    });
    group.finish();
}

/// The timer vocabulary on a satellite with two timers: `timer.status`
/// reads the table (and waits for nothing), `timer.add` + `timer.subtract`
/// are two changes, each fsynced to the journal before its reply.
fn vocabulary_benches(c: &mut Criterion) {
    let bench = Bench::assemble(&scratch("vocab"), "", "");
    let (rt, d) = (&bench.rt, bench.assembly.dispatcher.clone());
    let sets: [&[u8]; 2] = [
        br#"{"id":"s-1","intent":"timer.set","args":{"duration":"1h","label":"pasta"}}"#,
        br#"{"id":"s-2","intent":"timer.set","args":{"duration":"2h","label":"tea"}}"#,
    ];
    for set in sets {
        let reply = rt.block_on(native::answer(&d, "kitchen", set));
        assert_eq!(reply.status.as_str(), "ok");
    }
    let mut group = c.benchmark_group("dispatch");
    let status = br#"{"id":"r-5","intent":"timer.status","args":{"label":"pasta"}}"#;
    group.bench_function("timer_status", |b| {
        b.iter(|| rt.block_on(native::answer(&d, "kitchen", black_box(status))))
    });
    let add = br#"{"id":"r-6","intent":"timer.add","args":{"duration":"1m","label":"pasta"}}"#;
    let subtract =
        br#"{"id":"r-7","intent":"timer.subtract","args":{"duration":"1m","label":"pasta"}}"#;
    group.bench_function("timer_add_then_subtract_with_fsync", |b| {
        b.iter(|| {
            rt.block_on(native::answer(&d, "kitchen", black_box(add)));
            rt.block_on(native::answer(&d, "kitchen", black_box(subtract)))
        })
    });
    group.finish();
}

/// A sensitive call, both legs: the question (the call waits, audited) and
/// the yes that runs it (`timer.list`, which changes nothing, so only the
/// confirmation's own cost is timed).
fn confirmation_benches(c: &mut Criterion) {
    let bench = Bench::assemble(
        &scratch("confirm"),
        "",
        "[confirm]\nskills = [\"timer.list\"]\n",
    );
    let (rt, d) = (&bench.rt, bench.assembly.dispatcher.clone());
    let ask = br#"{"id":"r-8","intent":"timer.list","args":{}}"#;
    let yes = br#"{"id":"r-9","intent":"system.confirm","args":{"answer":"yes"}}"#;
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("confirmed_call_question_and_yes", |b| {
        b.iter(|| {
            let asked = rt.block_on(native::answer(&d, "kitchen", black_box(ask)));
            debug_assert_eq!(asked.status.as_str(), "confirm");
            rt.block_on(native::answer(&d, "kitchen", black_box(yes)))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    dispatcher_benches,
    full_table_benches,
    vocabulary_benches,
    confirmation_benches
);
criterion_main!(benches);
