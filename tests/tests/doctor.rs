//! `hark doctor` as a person runs it after installing: it passes on a setup
//! that works, and on each of the usual breakages fails naming the check.

use std::path::{Path, PathBuf};

use hark_tests::skills::{example_manifest, example_wasm, install};
use hark_tests::{Mosquitto, TempDir, free_port, is_root, run_hark, text};

/// A config with its own state dir (made 0700, as the hub makes it), the
/// given broker line and top-level keys, and no sound card.
fn config(dir: &Path, state: &Path, broker: &str, top: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(state).unwrap();
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("hark.toml");
    std::fs::write(
        &path,
        format!(
            "{top}state_dir = \"{}\"\n[mqtt]\n{broker}\n[audio]\nbackend = \"null\"\n",
            state.display()
        ),
    )
    .unwrap();
    path
}

/// `hark doctor`'s exit code and report.
fn doctor(dir: &Path, config: &Path) -> (Option<i32>, String) {
    let out = run_hark(dir, &["--config", config.to_str().unwrap(), "doctor"]);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn a_working_setup_passes_and_an_unreachable_broker_fails_by_name() {
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("doctor-good");
    let state = dir.path().join("state");
    let good = config(
        dir.path(),
        &state,
        &format!("url = \"{}\"", mosquitto.url()),
        "",
    );
    let (code, report) = doctor(dir.path(), &good);
    assert_eq!(code, Some(0), "{report}");
    for name in [
        "config",
        "state dir",
        "broker",
        "speaker",
        "skills",
        "clock",
        "disk",
    ] {
        assert!(
            report.lines().any(|l| l[6..].starts_with(name)),
            "no {name} check: {report}"
        );
    }
    assert!(!report.contains("FAIL"), "{report}");

    let nowhere = config(
        dir.path(),
        &state,
        &format!("url = \"mqtt://127.0.0.1:{}\"", free_port()),
        "",
    );
    let (code, report) = doctor(dir.path(), &nowhere);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.lines().any(|l| l.starts_with("FAIL  broker")),
        "{report}"
    );
    assert!(report.contains("hark doctor: failed: broker"), "{report}");
}

#[test]
fn a_state_dir_the_hub_cannot_own_fails_by_name() {
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("doctor-owner");
    let state = dir.path().join("state");
    let path = config(
        dir.path(),
        &state,
        &format!("url = \"{}\"", mosquitto.url()),
        "",
    );
    // Someone else's folder: nobody's, as root can make it; else root's own.
    let foreign = if is_root() {
        let status = std::process::Command::new("chown")
            .args(["65534:65534", state.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        path
    } else {
        config(
            dir.path(),
            Path::new("/usr"),
            &format!("url = \"{}\"", mosquitto.url()),
            "",
        )
    };
    let (code, report) = doctor(dir.path(), &foreign);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.lines().any(|l| l.starts_with("FAIL  state dir")),
        "{report}"
    );
    assert!(report.contains("chown"), "says what to do: {report}");
}

#[test]
fn an_unsigned_skill_in_the_trusted_tier_fails_naming_the_skill() {
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("doctor-unsigned");
    let state = dir.path().join("state");
    install(
        &state.join("skills"),
        "dice",
        example_manifest("dice"),
        &example_wasm("dice"),
    );
    let path = config(
        dir.path(),
        &state,
        &format!("url = \"{}\"", mosquitto.url()),
        "tier = \"trusted\"\n",
    );
    let (code, report) = doctor(dir.path(), &path);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL  skill") && l.contains("dice")),
        "{report}"
    );
}

/// `openssl` in `dir`, failing the test with what it said.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl; ./test.sh does this)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn the_tls_listener_check_reads_the_files_as_the_broker_will_and_watches_the_end_date() {
    let dir = TempDir::new("doctor-tls");
    let state = dir.path().join("state");
    let (plain, tls) = (free_port(), free_port());
    let with = |cert: &Path, key: &Path| {
        config(
            dir.path(),
            &state,
            &format!(
                "listen = \"127.0.0.1:{plain}\"\ntls_listen = \"127.0.0.1:{tls}\"\n\
                 tls_cert = \"{}\"\ntls_key = \"{}\"",
                cert.display(),
                key.display()
            ),
            "",
        )
    };
    let tls_line = |report: &str| {
        report
            .lines()
            .find(|l| l[6..].starts_with("tls"))
            .unwrap_or_else(|| panic!("no tls check: {report}"))
            .to_string()
    };

    // A certificate for a year, its key private: ok, with its end date.
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-days",
            "400",
            "-subj",
            "/CN=localhost",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "year.key",
            "-out",
            "year.pem",
        ],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("year.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let year = with(&dir.path().join("year.pem"), &dir.path().join("year.key"));
    let (_, report) = doctor(dir.path(), &year);
    let line = tls_line(&report);
    assert!(line.starts_with("ok    tls"), "{line}");
    // openssl's own reading: "notAfter=Jan  7 14:31:05 2028 GMT".
    let out = std::process::Command::new("openssl")
        .args(["x509", "-enddate", "-noout", "-in", "year.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = text(&out.stdout);
    let year = said.split_whitespace().rev().nth(1).unwrap();
    assert!(
        line.contains(&format!("until {year}-")),
        "names the end date openssl reads ({said}): {line}"
    );

    // The test CA's server certificate: two days left, key readable by all.
    let certs = hark_tests::Certs::make(dir.path(), "short");
    let (_, report) = doctor(dir.path(), &with(&certs.cert, &certs.key));
    let line = tls_line(&report);
    assert!(line.starts_with("warn  tls"), "{line}");
    assert!(
        line.contains("renew it") && (line.contains("tomorrow") || line.contains("in 2 days")),
        "{line}"
    );
    assert!(line.contains("readable by everyone: chmod o-r"), "{line}");

    // The key of another certificate, and a file that is no certificate:
    // FAIL, naming the key to fix, as the hub would refuse to start.
    let (code, report) = doctor(dir.path(), &with(&certs.cert, &dir.path().join("year.key")));
    assert_eq!(code, Some(1), "{report}");
    let line = tls_line(&report);
    assert!(
        line.starts_with("FAIL  tls") && line.contains("mqtt.tls_key"),
        "{line}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let (code, report) = doctor(dir.path(), &with(&junk, &certs.key));
    assert_eq!(code, Some(1), "{report}");
    let line = tls_line(&report);
    assert!(
        line.starts_with("FAIL  tls") && line.contains("mqtt.tls_cert"),
        "{line}"
    );
}
