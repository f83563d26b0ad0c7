//! SIGHUP reads the whole config again (SPEC §10): a tier change takes
//! effect on the running hub (its skills, its gate, and the sandbox's
//! workers if the old tier had none), `[confirm] skills` too; what needs a
//! restart keeps its running value and says so in `hark status`.

use std::time::Instant;

use hark_tests::skills::{self, install};
use hark_tests::{
    Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, run_hark, runtime, skill_entry,
    test_config, text,
};
use serde_json::{Value, json};

/// `hark status --json` with the config file `config` in `state`.
fn status_json(state: &std::path::Path, config: &str) -> Value {
    let config = state.join(config);
    let out = run_hark(
        state,
        &["--config", config.to_str().unwrap(), "status", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_sighup_applies_a_new_tier_and_names_what_needs_a_restart() {
    let (state, skills_dir) = (TempDir::new("reload"), TempDir::new("reload-skills"));
    let key = skills::test_key(21);
    let mut dice = skills::example_manifest("dice");
    dice["entrypoint"] = json!("dice.wasm");
    let dir = install(
        skills_dir.path(),
        "dice",
        dice,
        &skills::example_wasm("dice"),
    );
    skills::sign(&dir, &key);
    let tables = format!(
        "[skills]\ndir = \"{}\"\n[trust]\nkeys = [\"{}\"]\n",
        skills_dir.path().display(),
        skills::public_key(&key)
    );
    let paranoid = Setup {
        top: "tier = \"paranoid\"".into(),
        tables: tables.clone(),
        ..Setup::default()
    };
    let hub = Hub::start_with(state.path(), &paranoid);

    // Paranoid: dice is off, and says why.
    let before = status_json(state.path(), "hark.toml");
    let entry = skill_entry(&before["status"], "dice");
    assert_eq!(entry["enabled"], false, "{entry}");
    assert!(
        entry["reason"].as_str().unwrap().contains("paranoid"),
        "{entry}"
    );
    assert_eq!(before["status"]["restart_needed"], json!([]));

    // The owner edits the file: trusted, dice asks first, a bigger payload.
    let trusted = Setup {
        top: "tier = \"trusted\"".into(),
        tables: format!("{tables}[confirm]\nskills = [\"dice\"]\n"),
        ..Setup::default()
    };
    let broker = format!("listen = \"127.0.0.1:{}\"\nmax_payload = 131072", hub.port);
    std::fs::write(
        state.path().join("hark.toml"),
        test_config(state.path(), &broker, &trusted),
    )
    .unwrap();
    runtime().block_on(async {
        let mut watcher = Satellite::connect_as(hub.port, &hub.prefix, "watch").await;
        watcher
            .subscribe(&format!("{}/hub/status", hub.prefix))
            .await;
        hark_tests::sighup_this_process();
        let since = Instant::now();
        watcher
            .wait_for(PATIENCE, |_, status| {
                status["tier"] == "trusted"
                    && status["skills"].as_array().is_some_and(|s| {
                        s.iter()
                            .any(|e| e["name"] == "dice" && e["enabled"] == true)
                    })
            })
            .await
            .unwrap_or_else(|| panic!("no trusted status within {:?}", since.elapsed()));
        // The sandbox's workers started with the tier: dice runs, after a yes.
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let asked = sat.request("dice", json!({"sides": 6})).await;
        assert_eq!(asked["status"], "confirm", "{asked}");
        let first = asked["id"].as_str().unwrap().to_string();
        sat.send_raw(
            json!({"id": "yes-1", "intent": "system.confirm", "args": {"answer": "yes"}})
                .to_string(),
        )
        .await;
        let rolled = sat.reply_for(Some(&first)).await;
        assert_eq!(rolled["status"], "ok", "{rolled}");
    });

    let after = status_json(state.path(), "hark.toml");
    assert_eq!(after["status"]["tier"], "trusted", "{after}");
    assert_eq!(
        after["status"]["restart_needed"],
        json!(["mqtt"]),
        "{after}"
    );
    let config = state.path().join("hark.toml");
    let out = run_hark(
        state.path(),
        &["--config", config.to_str().unwrap(), "status"],
    );
    let shown = text(&out.stdout);
    assert!(shown.contains("tier trusted"), "{shown}");
    assert!(
        shown.contains("restart") && shown.contains("mqtt"),
        "{shown}"
    );
    let records = audit_records(&hub.audit_path());
    assert!(
        records.iter().any(|r| r["rule"] == "config.reload"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("tier paranoid -> trusted"))),
        "no reload record"
    );

    // A file that no longer reads keeps everything as it was (the CLI
    // keeps a copy that reads).
    std::fs::copy(
        state.path().join("hark.toml"),
        state.path().join("cli.toml"),
    )
    .unwrap();
    std::fs::write(state.path().join("hark.toml"), "tier = \"bold\"\n").unwrap();
    hark_tests::sighup_this_process();
    let since = Instant::now();
    let records = loop {
        assert!(
            since.elapsed() < PATIENCE,
            "no audited reload error within {PATIENCE:?}"
        );
        let records = audit_records(&hub.audit_path());
        if records
            .iter()
            .any(|r| r["kind"] == "error" && r["rule"] == "config.reload")
        {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let error = records
        .iter()
        .rev()
        .find(|r| r["rule"] == "config.reload")
        .unwrap();
    assert!(
        error["message"].as_str().unwrap().contains("tier"),
        "{error}"
    );
    let still = status_json(state.path(), "cli.toml");
    assert_eq!(still["status"]["tier"], "trusted", "{still}");
    hub.stop().unwrap();
}
