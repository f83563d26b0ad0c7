//! What a board needs from the built `hark` binary: it serves `hark send`
//! with its embedded broker and fires timers, `hark calibrate` measures the
//! board, and the config the `.deb` installs is one the hub accepts.
//! scripts/arm.sh runs these for aarch64 under qemu-user, so they hold for
//! the ARM binary as much as for the host's.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use hark_tests::{
    HubProcess, PATIENCE, Satellite, Setup, TempDir, free_port, test_config, wait_online,
};
use serde_json::Value;

use hark_tests::{run_hark as hark, text};

/// The acceptance check of a board build: the binary with its embedded
/// broker answers `hark send kitchen timer.set duration=2s`, then fires the
/// timer's event two seconds later.
#[test]
fn the_binary_answers_hark_send_timer_set_and_fires_the_timer_event() {
    let dir = TempDir::new("deploy-timer");
    let port = free_port();
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        test_config(
            dir.path(),
            &format!("listen = \"127.0.0.1:{port}\""),
            &Setup::default(),
        ),
    )
    .unwrap();
    let hub = HubProcess::spawn(dir.path(), &config);
    let status = wait_online(port, "hark");
    assert_eq!(status["online"], true, "{status}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut kitchen = rt.block_on(Satellite::connect(port, "hark", "kitchen"));
    let sent = Instant::now();
    let out = hark(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "send",
            "kitchen",
            "timer.set",
            "duration=2s",
        ],
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "hark send printed no JSON reply\nstdout: {}\nstderr: {}\nhub log:\n{}",
            text(&out.stdout),
            text(&out.stderr),
            hub.log_text()
        )
    });
    assert!(out.status.success(), "{reply}");
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["speech"], "Timer set for 2 seconds.", "{reply}");
    let timer_id = reply["data"]["timer_id"].clone();

    let finished = rt.block_on(kitchen.event("timer_finished", PATIENCE));
    let waited = sent.elapsed();
    assert_eq!(finished["timer_id"], timer_id, "{finished}");
    assert!(
        waited >= Duration::from_millis(1900),
        "rang early, after {waited:?}"
    );
    let code = hub.terminate();
    assert!(code.success(), "hark exited {code:?} on SIGTERM");
}

#[test]
fn hark_calibrate_prints_this_machines_fuel_per_millisecond() {
    let dir = TempDir::new("deploy-calibrate");
    let out = hark(dir.path(), &["calibrate", "--seconds", "0.2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let figure: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fuel_per_ms = "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `fuel_per_ms = N` line in:\n{stdout}"));
    eprintln!("hark calibrate: {figure} fuel/ms");
    assert!(figure > 0, "{stdout}");
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The `.deb` installs cross/debian/hark.toml as /etc/hark/hark.toml, which
/// the service reads: it must load, and keep the state where the unit lets
/// the hub write (`ReadWritePaths=/var/lib/hark`), whatever user runs it.
#[test]
fn the_packaged_config_loads_and_keeps_state_in_var_lib_hark() {
    let path = repo_file("cross/debian/hark.toml");
    let config = hark_hub::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.state_dir, Path::new("/var/lib/hark"));

    let unit = std::fs::read_to_string(repo_file("cross/debian/hark.service")).unwrap();
    for line in [
        "User=hark",
        "ExecStart=/usr/bin/hark --config /etc/hark/hark.toml run",
        "StateDirectory=hark",
        "ReadWritePaths=/var/lib/hark",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestartPreventExitStatus=2",
        "Type=notify",
        "WatchdogSec=30s",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "hark.service lacks `{line}`"
        );
    }
    assert!(unit.lines().any(|l| l.starts_with("MemoryMax=")));
}
