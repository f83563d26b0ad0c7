//! Hermetic mode (`trust.hermetic`) and `min_hub_version` (SPEC §10): skills
//! that could reach outside the hub, or need a newer one, are refused at
//! load with the reason in the status topic, `hark skills list` and the
//! audit log; a hermetic skill loads and publishes in its own namespace.

use std::path::Path;

use hark_tests::skills::{COUNTER, install, probe, wat};
use hark_tests::{
    Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, hub_status, run_hark, runtime,
    skill_entry, text,
};
use serde_json::json;

/// Publishes "on" to `hark/skill/own/state`.
fn publisher() -> Vec<u8> {
    let import =
        r#"(import "hark" "mqtt_publish" (func $pub (param i32 i32 i32 i32) (result i32)))"#;
    let body = "(call $pub (i32.const 1024) (i32.const 20) (i32.const 2048) (i32.const 2))";
    wat(&probe(
        import,
        body,
        &[(1024, "hark/skill/own/state"), (2048, "on")],
    ))
}

fn install_all(skills: &Path) {
    let own = json!({"hermetic": true, "min_hub_version": "0.1.0", "trusted": true,
                     "permissions": ["mqtt.publish:hark/skill/own/#"]});
    install(skills, "own", own, &publisher());
    let shout = json!({"hermetic": true, "trusted": true,
                       "permissions": ["mqtt.publish:home/lights/#"]});
    install(skills, "shout", shout, &wat(COUNTER));
    let fetch = json!({"trusted": true, "permissions": ["net.http:api.example.org"]});
    install(skills, "fetch", fetch, &wat(COUNTER));
    install(skills, "plain", json!({}), &wat(COUNTER));
    let future = json!({"hermetic": true, "min_hub_version": "99.0.0"});
    install(skills, "future", future, &wat(COUNTER));
}

#[test]
fn a_hermetic_hub_loads_only_skills_that_reach_nothing_outside_it() {
    let (state, skills_dir) = (TempDir::new("hermetic"), TempDir::new("hermetic-skills"));
    install_all(skills_dir.path());
    let tables = format!(
        "[skills]\ndir = \"{}\"\n[trust]\nhermetic = true\n",
        skills_dir.path().display()
    );
    let setup = Setup {
        top: "tier = \"convenient\"".into(),
        tables: tables.clone(),
        ..Setup::default()
    };
    let hub = Hub::start_with(state.path(), &setup);
    let status = runtime().block_on(async {
        let mut watcher = Satellite::connect_as(hub.port, &hub.prefix, "watcher").await;
        watcher.subscribe("hark/skill/own/#").await;
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("own", json!({})).await;
        assert_eq!(reply["speech"], "ok", "{reply}");
        watcher
            .wait_for(PATIENCE, |topic, _| topic == "hark/skill/own/state")
            .await
            .expect("the hermetic skill's message in its own namespace");
        let refused = sat.request("fetch", json!({})).await;
        assert_ne!(refused["status"], "ok", "{refused}");
        hub_status(&hub).await
    });

    assert_eq!(skill_entry(&status, "own")["enabled"], true, "{status}");
    for (skill, needle) in [
        ("shout", "mqtt.publish:home/lights/#"),
        ("fetch", "net.http:api.example.org"),
        ("fetch", "does not say \"hermetic\": true"),
        ("plain", "does not say \"hermetic\": true"),
        ("future", "needs hark 99.0.0 or newer"),
    ] {
        let entry = skill_entry(&status, skill);
        assert_eq!(entry["enabled"], false, "{entry}");
        let reason = entry["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "{skill}: {reason}");
    }
    let records = audit_records(&hub.audit_path());
    for (skill, rule) in [
        ("shout", "trust.hermetic"),
        ("fetch", "trust.hermetic"),
        ("plain", "trust.hermetic"),
        ("future", "load.min_hub_version"),
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["kind"] == "refusal" && r["skill"] == skill && r["rule"] == rule),
            "no refusal of {skill} by {rule}"
        );
    }
    hub.stop().unwrap();

    // The same reasons without a running hub.
    let config = state.path().join("hark.toml");
    let text_config = hark_tests::test_config(state.path(), "", &setup);
    std::fs::write(&config, text_config).unwrap();
    let out = run_hark(
        state.path(),
        &["--config", config.to_str().unwrap(), "skills", "list"],
    );
    let listed = text(&out.stdout);
    assert!(listed.contains("trust.hermetic refuses it"), "{listed}");
    assert!(listed.contains("needs hark 99.0.0 or newer"), "{listed}");
}

#[test]
fn without_hermetic_mode_only_the_version_check_refuses() {
    let (state, skills_dir) = (
        TempDir::new("hermetic-off"),
        TempDir::new("hermetic-off-skills"),
    );
    install_all(skills_dir.path());
    let setup = Setup {
        top: "tier = \"convenient\"".into(),
        tables: format!("[skills]\ndir = \"{}\"\n", skills_dir.path().display()),
        ..Setup::default()
    };
    let hub = Hub::start_with(state.path(), &setup);
    let status = runtime().block_on(hub_status(&hub));
    for skill in ["own", "shout", "fetch", "plain"] {
        assert_eq!(
            skill_entry(&status, skill)["enabled"],
            true,
            "{skill}: {status}"
        );
    }
    assert_eq!(skill_entry(&status, "future")["enabled"], false, "{status}");
    hub.stop().unwrap();
}
