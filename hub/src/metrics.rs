//! What the hub has done, counted cheaply where it happens (SPEC §10): per
//! skill, calls by status, a latency histogram, fuel, peak memory and
//! host-call denials; per hub, requests in flight and by status, broker
//! reconnects. Counters are relaxed atomics and the histogram has fixed
//! buckets, so the request path pays a map lookup under a read lock and a
//! few atomic adds. Gauges that belong to other parts (timers pending,
//! audit records, resident memory) are read when the figures are.
//!
//! Two views of the same figures: Prometheus text ([`Metrics::prometheus`],
//! served by [`serve`] on `metrics.listen`) and JSON ([`Metrics::json`],
//! retained on `<prefix>/hub/metrics`). The text format is a few lines of
//! `name{labels} value`; writing it here costs less than a crate and its
//! dependencies would.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hark_skill_sdk::Status;
use serde_json::{Value, json};

/// Every reply status, in the order counters keep them.
pub const STATUSES: [Status; 8] = [
    Status::Ok,
    Status::Invalid,
    Status::UnknownIntent,
    Status::Denied,
    Status::Timeout,
    Status::Error,
    Status::Busy,
    Status::Confirm,
];

fn status_index(status: Status) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .expect("every status is listed")
}

/// Upper bounds of the latency histogram's buckets, in seconds: from the
/// built-ins' tens of microseconds to the 1.5 s budget and past it.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`, the total).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// One skill's figures.
#[derive(Debug, Default)]
pub struct SkillMetrics {
    calls: [AtomicU64; STATUSES.len()],
    pub latency: Histogram,
    fuel: AtomicU64,
    /// Largest linear memory a call of it ended with, in 64 KiB pages.
    peak_pages: AtomicU64,
    denials: AtomicU64,
}

impl SkillMetrics {
    pub fn calls(&self, status: Status) -> u64 {
        self.calls[status_index(status)].load(Ordering::Relaxed)
    }

    pub fn fuel(&self) -> u64 {
        self.fuel.load(Ordering::Relaxed)
    }

    pub fn peak_pages(&self) -> u64 {
        self.peak_pages.load(Ordering::Relaxed)
    }

    pub fn denials(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }
}

/// Figures owned elsewhere, read when the metrics are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub timers_pending: u64,
    pub audit_records: u64,
    pub rss_bytes: u64,
    pub skills_loaded: u64,
}

/// The hub's figures.
#[derive(Debug, Default)]
pub struct Metrics {
    skills: RwLock<BTreeMap<String, Arc<SkillMetrics>>>,
    requests: [AtomicU64; STATUSES.len()],
    in_flight: AtomicI64,
    connects: AtomicU64,
    reconnects: AtomicU64,
}

impl Metrics {
    /// `skill`'s figures, made at its first use; kept across reloads.
    pub fn skill(&self, skill: &str) -> Arc<SkillMetrics> {
        if let Some(found) = self
            .skills
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(skill)
        {
            return found.clone();
        }
        let mut skills = self.skills.write().unwrap_or_else(|e| e.into_inner());
        skills.entry(skill.to_string()).or_default().clone()
    }

    /// A request runs until the guard is dropped.
    pub fn flight(&self) -> Flight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Flight(&self.in_flight)
    }

    /// A request was answered `status` after `elapsed`; `skill` when one
    /// was found for it. Every reply passes here once.
    pub fn answered(&self, skill: Option<&str>, status: Status, elapsed: Duration) {
        let i = status_index(status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        if let Some(skill) = skill {
            let m = self.skill(skill);
            m.calls[i].fetch_add(1, Ordering::Relaxed);
            m.latency.observe(elapsed);
        }
    }

    /// A WebAssembly call of `skill` ended, having used `fuel` and ending
    /// with `memory_bytes` of linear memory.
    pub fn sandboxed(&self, skill: &str, fuel: u64, memory_bytes: usize) {
        let m = self.skill(skill);
        m.fuel.fetch_add(fuel, Ordering::Relaxed);
        m.peak_pages
            .fetch_max(memory_bytes as u64 / 65_536, Ordering::Relaxed);
    }

    /// The policy gate refused one of `skill`'s host calls or effects.
    pub fn denied(&self, skill: &str) {
        self.skill(skill).denials.fetch_add(1, Ordering::Relaxed);
    }

    /// The hub's broker connection was made (again, after the first).
    pub fn connected(&self) {
        if self.connects.fetch_add(1, Ordering::Relaxed) > 0 {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn requests(&self, status: Status) -> u64 {
        self.requests[status_index(status)].load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Vec<(String, Arc<SkillMetrics>)> {
        let skills = self.skills.read().unwrap_or_else(|e| e.into_inner());
        skills.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let skills = self.snapshot();
        header(
            &mut out,
            "hark_skill_calls_total",
            "counter",
            "Calls of a skill by reply status.",
        );
        for (name, m) in &skills {
            for status in STATUSES {
                let n = m.calls(status);
                if n > 0 {
                    let labels = format!("skill=\"{}\",status=\"{}\"", escape(name), status);
                    let _ = writeln!(out, "hark_skill_calls_total{{{labels}}} {n}");
                }
            }
        }
        header(
            &mut out,
            "hark_skill_call_duration_seconds",
            "histogram",
            "Time from a request's arrival to its reply, per skill.",
        );
        for (name, m) in &skills {
            let skill = escape(name);
            let counts = m.latency.cumulative();
            for (bound, n) in BUCKETS.iter().zip(&counts) {
                let _ = writeln!(
                    out,
                    "hark_skill_call_duration_seconds_bucket{{skill=\"{skill}\",le=\"{bound}\"}} {n}"
                );
            }
            let total = counts.last().copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "hark_skill_call_duration_seconds_bucket{{skill=\"{skill}\",le=\"+Inf\"}} {total}\n\
                 hark_skill_call_duration_seconds_sum{{skill=\"{skill}\"}} {}\n\
                 hark_skill_call_duration_seconds_count{{skill=\"{skill}\"}} {total}",
                m.latency.sum_seconds()
            );
        }
        type Read = fn(&SkillMetrics) -> u64;
        let per_skill: [(&str, &str, &str, Read); 3] = [
            (
                "hark_skill_fuel_used_total",
                "counter",
                "Interpreter fuel used by a WebAssembly skill's calls.",
                SkillMetrics::fuel,
            ),
            (
                "hark_skill_memory_peak_pages",
                "gauge",
                "Largest linear memory a WebAssembly skill's call ended with, in 64 KiB pages.",
                SkillMetrics::peak_pages,
            ),
            (
                "hark_skill_denials_total",
                "counter",
                "Host calls or effects of a skill the policy gate refused.",
                SkillMetrics::denials,
            ),
        ];
        for (metric, kind, help, read) in per_skill {
            header(&mut out, metric, kind, help);
            for (name, m) in &skills {
                let _ = writeln!(out, "{metric}{{skill=\"{}\"}} {}", escape(name), read(m));
            }
        }
        header(
            &mut out,
            "hark_requests_total",
            "counter",
            "Requests answered, by status.",
        );
        for status in STATUSES {
            let _ = writeln!(
                out,
                "hark_requests_total{{status=\"{status}\"}} {}",
                self.requests(status)
            );
        }
        let hub: [(&str, &str, &str, String); 6] = [
            (
                "hark_requests_in_flight",
                "gauge",
                "Requests running now.",
                self.in_flight().to_string(),
            ),
            (
                "hark_broker_reconnects_total",
                "counter",
                "Times the hub's broker connection was made again.",
                self.reconnects.load(Ordering::Relaxed).to_string(),
            ),
            (
                "hark_audit_records",
                "gauge",
                "Records in the audit log (its last seq).",
                gauges.audit_records.to_string(),
            ),
            (
                "hark_timers_pending",
                "gauge",
                "Timers not yet rung.",
                gauges.timers_pending.to_string(),
            ),
            (
                "hark_skills_loaded",
                "gauge",
                "Skills that serve intents now.",
                gauges.skills_loaded.to_string(),
            ),
            (
                "hark_resident_memory_bytes",
                "gauge",
                "The hub's resident memory.",
                gauges.rss_bytes.to_string(),
            ),
        ];
        for (metric, kind, help, value) in hub {
            header(&mut out, metric, kind, help);
            let _ = writeln!(out, "{metric} {value}");
        }
        out
    }

    /// The same figures as JSON, for `<prefix>/hub/metrics` and `hark status`.
    pub fn json(&self, gauges: &Gauges) -> Value {
        let by_status = |read: &dyn Fn(Status) -> u64| -> Value {
            STATUSES
                .iter()
                .filter(|s| read(**s) > 0)
                .map(|s| (s.as_str().to_string(), json!(read(*s))))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let skills: serde_json::Map<String, Value> = self
            .snapshot()
            .into_iter()
            .map(|(name, m)| {
                let counts = m.latency.cumulative();
                let buckets: serde_json::Map<String, Value> = BUCKETS
                    .iter()
                    .map(|b| b.to_string())
                    .chain(std::iter::once("+Inf".to_string()))
                    .zip(counts.iter().map(|n| json!(n)))
                    .collect();
                let entry = json!({
                    "calls": by_status(&|s| m.calls(s)),
                    "duration_seconds": {
                        "count": counts.last().copied().unwrap_or(0),
                        "sum": m.latency.sum_seconds(),
                        "buckets": buckets,
                    },
                    "fuel_used": m.fuel(),
                    "memory_peak_pages": m.peak_pages(),
                    "denials": m.denials(),
                });
                (name, entry)
            })
            .collect();
        json!({
            "requests": by_status(&|s| self.requests(s)),
            "requests_in_flight": self.in_flight(),
            "busy": self.requests(Status::Busy),
            "broker_reconnects": self.reconnects.load(Ordering::Relaxed),
            "audit_records": gauges.audit_records,
            "timers_pending": gauges.timers_pending,
            "skills_loaded": gauges.skills_loaded,
            "rss_bytes": gauges.rss_bytes,
            "skills": skills,
        })
    }
}

/// A request in flight: counted while it lives.
#[derive(Debug)]
pub struct Flight<'a>(&'a AtomicI64);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn header(out: &mut String, metric: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's resident memory, from `/proc/self/statm` (0 elsewhere).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Longest request head the metrics endpoint reads.
const MAX_REQUEST_HEAD: usize = 4096;
/// Scrapes served at once; more wait for the accept loop.
const MAX_SCRAPES: usize = 4;

/// Serves `GET /metrics` (Prometheus text from `render`) on `listener`
/// until the task is dropped: one request per connection, a head of at most
/// 4 KiB read within 5 s, 4 connections at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (sock, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = sock.set_nodelay(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), scrape(sock, render)).await;
        });
    }
}

async fn scrape(
    mut sock: tokio::net::TcpStream,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_REQUEST_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let path = path.split(|b| *b == b'?').next().unwrap_or(&[]);
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is here\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(response.as_bytes()).await?;
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_status_and_bucket() {
        let m = Metrics::default();
        for _ in 0..3 {
            let flight = m.flight();
            assert_eq!(m.in_flight(), 1);
            m.answered(Some("dice"), Status::Ok, Duration::from_micros(300));
            drop(flight);
        }
        m.answered(Some("dice"), Status::Busy, Duration::from_micros(50));
        m.sandboxed("dice", 1_000, 3 * 65_536);
        m.sandboxed("dice", 500, 2 * 65_536);
        m.denied("dice");
        let dice = m.skill("dice");
        assert_eq!((dice.calls(Status::Ok), dice.calls(Status::Busy)), (3, 1));
        assert_eq!(
            (dice.fuel(), dice.peak_pages(), dice.denials()),
            (1_500, 3, 1)
        );
        assert_eq!(m.in_flight(), 0);
        let counts = dice.latency.cumulative();
        // 50 µs in the first bucket (≤ 100 µs), 300 µs in the ≤ 500 µs one.
        assert_eq!(
            (counts[0], counts[1], counts[2], counts[BUCKETS.len()]),
            (1, 1, 4, 4)
        );

        let text = m.prometheus(&Gauges::default());
        for line in [
            "hark_skill_calls_total{skill=\"dice\",status=\"ok\"} 3",
            "hark_skill_call_duration_seconds_bucket{skill=\"dice\",le=\"0.0005\"} 4",
            "hark_skill_call_duration_seconds_count{skill=\"dice\"} 4",
            "hark_skill_fuel_used_total{skill=\"dice\"} 1500",
            "hark_requests_total{status=\"busy\"} 1",
            "# TYPE hark_skill_call_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        let json = m.json(&Gauges::default());
        assert_eq!(json["skills"]["dice"]["calls"]["ok"], 3);
        assert_eq!(json["skills"]["dice"]["duration_seconds"]["count"], 4);
        assert_eq!(json["busy"], 1);
    }

    #[test]
    fn a_label_cannot_break_out_of_its_quotes() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
