//! The call budget means the same wall time on every board: the hub turns
//! `skills.timeout_ms` into fuel with the board's fuel per millisecond
//! (measured at start, or `skills.fuel_per_ms`), so the fuel ceiling scales
//! with that figure, and the wall clock stays the backstop when the figure
//! overstates the board.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::skills::{hostile, install, wat};
use hark_tests::{Hub, Satellite, Setup, TempDir};
use serde_json::{Value, json};

/// A short budget keeps the wall-clock case quick.
const TIMEOUT_MS: u64 = 600;

/// This machine's figure, measured as the hub measures it at start.
fn measured_fuel_per_ms() -> u64 {
    let engine = hark_hub::sandbox::engine();
    hark_hub::sandbox::calibrate::measure(&engine, Duration::from_millis(50)).fuel_per_ms
}

/// Runs the endless loop in a hub told `fuel_per_ms`; its reply and how long
/// the satellite waited.
fn spin_with(fuel_per_ms: u64) -> (Value, Duration) {
    let (state, skills_dir) = (TempDir::new("budget"), TempDir::new("budget-skills"));
    install(
        skills_dir.path(),
        "spin",
        json!({}),
        &wat(hostile::INFINITE_LOOP),
    );
    let hub = Hub::start_with(state.path(), &setup(skills_dir.path(), fuel_per_ms));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let sent = Instant::now();
        let reply = sat.request("spin", json!({})).await;
        (reply, sent.elapsed())
    });
    hub.stop().unwrap();
    outcome
}

fn setup(skills: &Path, fuel_per_ms: u64) -> Setup {
    Setup {
        top: "tier = \"convenient\"".into(),
        tables: format!(
            "[skills]\ndir = \"{}\"\ntimeout_ms = {TIMEOUT_MS}\nfuel_per_ms = {fuel_per_ms}\n",
            skills.display()
        ),
        ..Setup::default()
    }
}

fn message(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn a_board_figure_far_below_this_machine_stops_a_loop_by_fuel_long_before_the_clock() {
    let measured = measured_fuel_per_ms();
    // As if this machine were a board twenty times slower: the fuel for the
    // budget lasts ~1/20 of it here.
    let (reply, waited) = spin_with((measured / 20).max(1));
    eprintln!("measured {measured} fuel/ms; stopped after {waited:?}: {reply}");
    assert_eq!(reply["status"], "timeout", "{reply}");
    assert!(
        message(&reply).contains(&format!("used all its fuel ({TIMEOUT_MS} ms")),
        "{reply}"
    );
    assert!(
        waited < Duration::from_millis(TIMEOUT_MS / 2),
        "fuel for 1/20 of the budget took {waited:?}"
    );
}

#[test]
fn a_board_figure_far_above_this_machine_leaves_the_wall_clock_to_stop_a_loop() {
    let measured = measured_fuel_per_ms();
    // As if this machine were twenty times faster: the fuel would last twenty
    // budgets, so the deadline ends the call, on time.
    let (reply, waited) = spin_with(measured * 20);
    eprintln!("measured {measured} fuel/ms; stopped after {waited:?}: {reply}");
    assert_eq!(reply["status"], "timeout", "{reply}");
    assert!(
        message(&reply).contains(&format!("ran past its {TIMEOUT_MS} ms budget")),
        "{reply}"
    );
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS - 50),
        "stopped early, after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(TIMEOUT_MS * 4),
        "the deadline came late: {waited:?}"
    );
}
