//! `hark skills inventory`: the provenance of every skill as JSON, and as a
//! CycloneDX 1.5 SBOM checked against the official schema, vendored in
//! `tests/vendor/cyclonedx/` (its README says where it comes from).

use std::path::{Path, PathBuf};

use hark_tests::skills::{self, install, sha256_hex};
use hark_tests::{TempDir, run_hark, text};
use serde_json::{Value, json};

/// A skills dir with `dice` signed by a trusted key, `roller` (the same
/// module) unsigned, and `broken` whose module does not match its sha256;
/// and a config of the trusted tier over it. Returns the config's path.
fn setup(dir: &Path) -> PathBuf {
    let skills_dir = dir.join("skills");
    let key = skills::test_key(7);
    let module = skills::example_wasm("dice");
    let manifest = skills::example_manifest("dice");
    let signed = install(&skills_dir, "dice", manifest.clone(), &module);
    skills::sign(&signed, &key);
    let mut unsigned = manifest.clone();
    unsigned["name"] = json!("roller");
    install(&skills_dir, "roller", unsigned, &module);
    let mut broken = manifest;
    broken["name"] = json!("broken");
    broken["sha256"] = json!("00".repeat(32));
    install(&skills_dir, "broken", broken, &module);
    let config = dir.join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "tier = \"trusted\"\nstate_dir = \"{}\"\n[skills]\ndir = \"{}\"\n[trust]\nkeys = [\"{}\"]\n\
             [audio]\nbackend = \"null\"\n",
            dir.join("state").display(),
            skills_dir.display(),
            skills::public_key(&key)
        ),
    )
    .unwrap();
    config
}

/// `hark --config <config> skills inventory <args>`, parsed; it must exit 0.
fn inventory(dir: &Path, config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--config", config.to_str().unwrap(), "skills", "inventory"];
    all.extend_from_slice(args);
    let out = run_hark(dir, &all);
    assert!(
        out.status.success(),
        "hark skills inventory {args:?} failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

fn entry<'a>(inventory: &'a Value, name: &str) -> &'a Value {
    inventory["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the inventory: {inventory:#}"))
}

#[test]
fn the_json_inventory_says_where_each_skill_comes_from_and_what_it_may_do() {
    let dir = TempDir::new("inventory-json");
    let config = setup(dir.path());
    let module_sha = sha256_hex(&skills::example_wasm("dice"));
    let signer = skills::public_key(&skills::test_key(7));

    let found = inventory(dir.path(), &config, &[]);
    assert_eq!(
        found,
        inventory(dir.path(), &config, &["--format", "json"]),
        "json is the default"
    );
    assert_eq!(found["hub"]["name"], "hark");
    assert!(found["hub"]["version"].is_string(), "{found:#}");
    assert_eq!(found["tier"], "trusted");
    assert_eq!(found["hermetic"], false);

    let dice = entry(&found, "dice");
    assert_eq!(dice["kind"], "wasm");
    assert_eq!(dice["version"], "1.0.0");
    assert_eq!(dice["sha256"], module_sha, "{dice:#}");
    assert_eq!(dice["signer"], signer);
    assert_eq!(dice["signer_trusted"], true);
    assert_eq!(
        dice["permissions"],
        json!({"asked": ["log"], "granted": ["log"]})
    );
    assert_eq!(dice["abi"], 1);
    assert_eq!(dice["min_hub_version"], Value::Null);
    assert_eq!(dice["hermetic"], false);
    assert_eq!(dice["decision"], "loaded");
    assert_eq!(dice["rule"], "tier.trusted.signed");

    let roller = entry(&found, "roller");
    assert_eq!(roller["sha256"], module_sha);
    assert_eq!(roller["signer"], Value::Null);
    assert_eq!(roller["decision"], "refused");
    assert_eq!(roller["rule"], "tier.trusted.unsigned");
    assert!(
        roller["reason"].as_str().unwrap().contains("unsigned"),
        "{roller:#}"
    );
    assert_eq!(
        roller["permissions"],
        json!({"asked": ["log"], "granted": []}),
        "a refused skill is granted nothing"
    );

    let broken = entry(&found, "broken");
    assert_eq!(broken["decision"], "refused");
    assert_eq!(broken["rule"], "load.invalid");
    assert!(
        broken["reason"].as_str().unwrap().contains("sha256"),
        "{broken:#}"
    );

    let builtins: Vec<&Value> = found["skills"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "builtin")
        .collect();
    assert!(
        builtins.iter().any(|s| s["name"] == "timer.set"),
        "{found:#}"
    );
    for builtin in builtins {
        assert_eq!(builtin["decision"], "loaded", "{builtin:#}");
        assert_eq!(builtin["rule"], "builtin");
        assert_eq!(builtin["sha256"], Value::Null);
        assert_eq!(builtin["abi"], Value::Null);
        assert_eq!(
            builtin["permissions"]["asked"], builtin["permissions"]["granted"],
            "a built-in may use what it declares"
        );
    }
}

#[test]
fn an_unknown_format_is_a_usage_error() {
    let dir = TempDir::new("inventory-format");
    let config = setup(dir.path());
    let out = run_hark(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "skills",
            "inventory",
            "--format",
            "spdx",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("json") && stderr.contains("cyclonedx"),
        "{stderr}"
    );
}

/// The vendored schema's folder.
fn vendor() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/cyclonedx")
}

fn read_schema(file: &str) -> Value {
    let path = vendor().join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The CycloneDX 1.5 schema is vendored in tests/vendor/cyclonedx/ \
             (its README.md says where from); restore it with `git checkout -- tests/vendor/cyclonedx`",
            path.display()
        )
    });
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CycloneDX 1.5 schema as one document. It refers to two others by
/// names relative to its `$id` (`http://cyclonedx.org/schema/`):
/// `spdx.schema.json` (license ids) and `jsf-0.82.schema.json` (signatures).
/// jsonschema-valid resolves a `$ref` only by the `$id`s it finds inside the
/// document it is given, so the two go in under `definitions`, where their
/// own `$id`s name them; nothing else changes.
fn cyclonedx_schema() -> Value {
    let mut bom = read_schema("bom-1.5.schema.json");
    assert_eq!(
        bom["$id"], "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "tests/vendor/cyclonedx/bom-1.5.schema.json is not the CycloneDX 1.5 schema"
    );
    let definitions = bom["definitions"].as_object_mut().unwrap();
    for (key, file) in [
        ("vendored:spdx.schema.json", "spdx.schema.json"),
        ("vendored:jsf-0.82.schema.json", "jsf-0.82.schema.json"),
    ] {
        let schema = read_schema(file);
        assert_eq!(
            schema["$id"],
            format!("http://cyclonedx.org/schema/{file}"),
            "tests/vendor/cyclonedx/{file}"
        );
        definitions.insert(key.into(), schema);
    }
    bom
}

/// Every way `document` breaks `schema`, one line each; empty when valid.
fn problems(schema: &jsonschema_valid::Config<'_>, document: &Value) -> Vec<String> {
    match schema.validate(document) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .map(|e| format!("{} at /{}", e.msg, e.instance_path.join("/")))
            .collect(),
    }
}

#[test]
fn the_cyclonedx_sbom_is_valid_cyclonedx_1_5_with_a_hashed_component_per_skill() {
    let dir = TempDir::new("inventory-cdx");
    let config = setup(dir.path());
    let module_sha = sha256_hex(&skills::example_wasm("dice"));
    let found = inventory(dir.path(), &config, &[]);
    let bom = inventory(dir.path(), &config, &["--format", "cyclonedx"]);

    let schema_doc = cyclonedx_schema();
    let schema = jsonschema_valid::Config::from_schema(
        &schema_doc,
        Some(jsonschema_valid::schemas::Draft::Draft7),
    )
    .expect("the vendored schema compiles");
    if let Err(errors) = schema.validate_schema() {
        let errors: Vec<String> = errors.map(|e| e.msg).collect();
        panic!("the vendored schema is not a draft-07 schema: {errors:?}");
    }

    let found_problems = problems(&schema, &bom);
    assert!(
        found_problems.is_empty(),
        "hark skills inventory --format cyclonedx is not valid CycloneDX 1.5: {found_problems:#?}\n{bom:#}"
    );
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    let again = inventory(dir.path(), &config, &["--format", "cyclonedx"]);
    assert_ne!(
        bom["serialNumber"], again["serialNumber"],
        "each BOM has its own serial number"
    );

    // One component per skill of the JSON inventory, in the same order.
    let components = bom["components"].as_array().unwrap();
    let names: Vec<&Value> = components.iter().map(|c| &c["name"]).collect();
    let skill_names: Vec<&Value> = found["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(names, skill_names);
    let component = |name: &str| {
        components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}: {bom:#}"))
    };
    let property = |c: &Value, name: &str| -> Vec<String> {
        c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == name)
            .map(|p| p["value"].as_str().unwrap().to_owned())
            .collect()
    };

    let dice = component("dice");
    assert_eq!(dice["bom-ref"], "skill:dice");
    assert_eq!(dice["type"], "application");
    assert_eq!(dice["version"], "1.0.0");
    assert_eq!(dice["scope"], "required");
    assert_eq!(
        dice["hashes"],
        json!([{"alg": "SHA-256", "content": module_sha}])
    );
    assert_eq!(
        property(dice, "hark:signer"),
        [skills::public_key(&skills::test_key(7))]
    );
    assert_eq!(property(dice, "hark:permission:asked"), ["log"]);
    assert_eq!(property(dice, "hark:permission:granted"), ["log"]);
    assert_eq!(property(dice, "hark:decision"), ["loaded"]);
    assert_eq!(property(dice, "hark:rule"), ["tier.trusted.signed"]);

    let roller = component("roller");
    assert_eq!(
        roller["hashes"],
        json!([{"alg": "SHA-256", "content": module_sha}])
    );
    assert_eq!(roller["scope"], "excluded");
    assert_eq!(property(roller, "hark:rule"), ["tier.trusted.unsigned"]);
    assert_eq!(property(component("broken"), "hark:rule"), ["load.invalid"]);
    let timer = component("timer.set");
    assert_eq!(timer["type"], "library");
    assert_eq!(property(timer, "hark:kind"), ["builtin"]);

    // The hub depends on the skills it loaded, and on those only.
    let hub = &bom["dependencies"][0];
    assert_eq!(hub["ref"], "hark");
    assert_eq!(bom["metadata"]["component"]["bom-ref"], "hark");
    let depends: Vec<&str> = hub["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(depends.contains(&"skill:dice"), "{hub}");
    assert!(depends.contains(&"skill:timer.set"), "{hub}");
    assert!(!depends.contains(&"skill:roller"), "{hub}");
    assert!(!depends.contains(&"skill:broken"), "{hub}");

    // The validator is not vacuous: it refuses what CycloneDX 1.5 refuses,
    // and follows the refs into the vendored SPDX schema.
    let broken = |change: fn(&mut Value)| {
        let mut copy = bom.clone();
        change(&mut copy);
        problems(&schema, &copy)
    };
    type Change = fn(&mut Value);
    let refused: [(&str, Change); 8] = [
        ("no specVersion", |d| {
            d.as_object_mut().unwrap().remove("specVersion");
        }),
        ("a bad bomFormat", |d| d["bomFormat"] = json!("SPDX")),
        ("a serial number that is no UUID", |d| {
            d["serialNumber"] = json!("urn:uuid:dice")
        }),
        ("a hash that is not hex", |d| {
            d["components"][0]["hashes"] = json!([{"alg": "SHA-256", "content": "nope"}])
        }),
        ("an unknown component type", |d| {
            d["components"][0]["type"] = json!("skill")
        }),
        ("a property value that is not a string", |d| {
            d["components"][0]["properties"][0]["value"] = json!(1)
        }),
        ("a timestamp that is not a date-time", |d| {
            d["metadata"]["timestamp"] = json!("yesterday")
        }),
        ("a license id SPDX does not know", |d| {
            d["metadata"]["component"]["licenses"] = json!([{"license": {"id": "Not-A-License"}}])
        }),
    ];
    for (what, change) in refused {
        assert!(
            !broken(change).is_empty(),
            "the validator accepted a BOM with {what}"
        );
    }
    let spdx =
        broken(|d| d["metadata"]["component"]["licenses"] = json!([{"license": {"id": "MIT"}}]));
    assert!(
        spdx.is_empty(),
        "an SPDX license id must validate through the vendored spdx.schema.json: {spdx:?}"
    );
}
