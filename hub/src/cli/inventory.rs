//! `hark skills inventory [--format json|cyclonedx]` (SPEC §10): the
//! provenance of every skill the hub would see under its config, without
//! starting it: name, version, kind, the module's sha256, the signer, the
//! permissions asked and granted, abi, `min_hub_version`, `hermetic`, and the
//! load decision with its rule. Folders that failed to load are listed too,
//! refused by the rule `load.invalid`.
//!
//! `json` prints the [`Inventory`] as is. `cyclonedx` prints the same facts as
//! a CycloneDX 1.5 JSON SBOM ([`cyclonedx`]): the hub is the BOM's subject
//! (`metadata.component`, `bom-ref` `hark`), each skill one component, the
//! facts CycloneDX has no field for as `hark:` properties.
//!
//! Component types: a WebAssembly skill is `application` — a program with its
//! own entry point, shipped, hashed and signed on its own and run in its own
//! sandbox, not code linked into the hub, so not a `library`; CycloneDX says
//! to classify software as `application` when nothing more specific fits. A
//! built-in skill is `library`: code compiled into the `hark` binary (the
//! `hark-skills-builtin` crate).
//!
//! Scope: the SBOM is of the loaded skills. A skill the hub refuses stays in
//! the BOM, so an auditor sees what sits in `skills.dir` and why it does not
//! run, but with `scope: excluded` (CycloneDX: "not reachable within a call
//! graph at runtime"), and the hub's entry in `dependencies` names only the
//! loaded ones (`scope: required`).

use std::collections::BTreeSet;
use std::time::SystemTime;

use hark_skill_sdk::Permission;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::policy::{self, Action, Signature, SkillKind, Tier};
use crate::registry::{LoadError, Registry, Skill};

/// The hub's own name in both formats.
const HUB: &str = "hark";
/// The `bom-ref` of the hub in the CycloneDX document.
const HUB_REF: &str = "hark";

/// What `--format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    pub hub: HubId,
    pub tier: String,
    /// `trust.hermetic` of the config.
    pub hermetic: bool,
    /// Registered skills by name, then the folders that failed to load.
    pub skills: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HubId {
    pub name: String,
    pub version: String,
}

/// One skill's provenance. `null` where a fact does not apply (a built-in
/// has no sha256, abi or signer) or is unknown (a folder that failed to load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub version: Option<String>,
    /// `builtin` or `wasm`.
    pub kind: &'static str,
    pub description: String,
    /// The manifest's lower-case hex SHA-256 of the module: the signature
    /// covers the manifest, so this pins the module. The loader has checked
    /// that the module on disk has it.
    pub sha256: Option<String>,
    /// `verified`, `unknown_signer`, `unsigned`, `rejected`, `not_applicable`
    /// (built-ins); `null` for a folder that failed to load.
    pub signature: Option<&'static str>,
    /// The key that signed the manifest, `ed25519:<base64>`, as
    /// `hark skills list` shows it.
    pub signer: Option<String>,
    /// Whether `signer` is in `trust.keys`; `null` without a signer.
    pub signer_trusted: Option<bool>,
    pub permissions: Permissions,
    pub abi: Option<u32>,
    pub min_hub_version: Option<String>,
    /// The manifest's `hermetic`.
    pub hermetic: Option<bool>,
    /// `loaded` or `refused`.
    pub decision: &'static str,
    /// The policy rule that decided, as in the audit log.
    pub rule: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permissions {
    /// The manifest's `permissions`, as written.
    pub asked: Vec<String>,
    /// Those the policy gate allows this skill to use under the tier (with
    /// its `[grants]`): none for a refused skill.
    pub granted: Vec<String>,
}

/// Loads the skills as `hark skills list` does and describes them.
pub fn inventory(config: &Config) -> Result<Inventory, String> {
    let engine = crate::sandbox::engine();
    let fuel = config.skills.fuel_per_ms.unwrap_or(1);
    let registry =
        crate::loader::load_registry(config, &engine, fuel).map_err(|e| e.to_string())?;
    Ok(describe(config, &registry))
}

/// The inventory of `registry` under `config`.
pub fn describe(config: &Config, registry: &Registry) -> Inventory {
    let mut skills: Vec<Entry> = registry.iter().map(|s| entry(config.tier, s)).collect();
    skills.extend(registry.broken().iter().map(broken));
    Inventory {
        hub: HubId {
            name: HUB.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        tier: config.tier.to_string(),
        hermetic: config.trust_hermetic,
        skills,
    }
}

fn entry(tier: Tier, skill: &Skill) -> Entry {
    let info = &skill.info;
    let manifest = &info.manifest;
    let granted = manifest
        .permissions
        .iter()
        .filter(|text| {
            Permission::parse(text)
                .is_ok_and(|p| policy::decide(tier, info, &Action::Use(&p)).allow)
        })
        .cloned()
        .collect();
    let (signature, signer, signer_trusted) = match &info.signature {
        Signature::Verified { signer } => ("verified", Some(signer.clone()), Some(true)),
        Signature::UnknownSigner { signer } => {
            ("unknown_signer", Some(signer.clone()), Some(false))
        }
        Signature::Unsigned => ("unsigned", None, None),
        Signature::Rejected { .. } => ("rejected", None, None),
        Signature::NotApplicable => ("not_applicable", None, None),
    };
    Entry {
        name: manifest.name.clone(),
        version: Some(manifest.version.clone()),
        kind: info.kind.as_str(),
        description: manifest.description.clone(),
        sha256: manifest.sha256.clone(),
        signature: Some(signature),
        signer,
        signer_trusted,
        permissions: Permissions {
            asked: manifest.permissions.clone(),
            granted,
        },
        abi: manifest.abi,
        min_hub_version: manifest.min_hub_version.clone(),
        hermetic: Some(manifest.hermetic),
        decision: decision(skill.admission.allow),
        rule: skill.admission.rule,
        reason: skill.admission.reason.clone(),
    }
}

fn broken(error: &LoadError) -> Entry {
    Entry {
        name: error.name.clone(),
        version: None,
        kind: SkillKind::Wasm.as_str(),
        description: String::new(),
        sha256: None,
        signature: None,
        signer: None,
        signer_trusted: None,
        permissions: Permissions::default(),
        abi: None,
        min_hub_version: None,
        hermetic: None,
        decision: decision(false),
        rule: "load.invalid",
        reason: error.problems.clone(),
    }
}

fn decision(allow: bool) -> &'static str {
    if allow { "loaded" } else { "refused" }
}

/// `inventory` as a CycloneDX 1.5 JSON SBOM with a fresh serial number,
/// stamped now.
pub fn cyclonedx_now(inventory: &Inventory) -> Result<Value, String> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(cyclonedx(inventory, serial, SystemTime::now()))
}

/// `inventory` as a CycloneDX 1.5 JSON SBOM: serial number `urn:uuid:` of
/// `random` made a version 4 UUID, `metadata.timestamp` `now`.
pub fn cyclonedx(inventory: &Inventory, random: [u8; 16], now: SystemTime) -> Value {
    let hub = &inventory.hub;
    let mut refs = BTreeSet::new();
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut loaded = Vec::new();
    for skill in &inventory.skills {
        let bom_ref = unique_ref(&mut refs, &skill.name);
        if skill.decision == "loaded" {
            loaded.push(bom_ref.clone());
        }
        dependencies.push(json!({"ref": bom_ref, "dependsOn": []}));
        components.push(component(skill, bom_ref));
    }
    dependencies.insert(0, json!({"ref": HUB_REF, "dependsOn": loaded}));
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_v4(random)),
        "version": 1,
        "metadata": {
            "timestamp": crate::audit::format_timestamp(now),
            "tools": {
                "components": [{"type": "application", "name": hub.name, "version": hub.version}],
            },
            "component": {
                "type": "application",
                "bom-ref": HUB_REF,
                "name": hub.name,
                "version": hub.version,
                "description": env!("CARGO_PKG_DESCRIPTION"),
                "licenses": licenses(env!("CARGO_PKG_LICENSE")),
            },
            "properties": [
                {"name": "hark:tier", "value": inventory.tier},
                {"name": "hark:trust.hermetic", "value": inventory.hermetic.to_string()},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    })
}

/// `skill:<name>`, or with `:2`, `:3`... when taken: a folder that failed
/// to load may carry a built-in's name.
fn unique_ref(taken: &mut BTreeSet<String>, name: &str) -> String {
    let base = format!("skill:{name}");
    let mut candidate = base.clone();
    let mut n = 1;
    while !taken.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{base}:{n}");
    }
    candidate
}

fn component(skill: &Entry, bom_ref: String) -> Value {
    let mut c = json!({
        "type": if skill.kind == SkillKind::Wasm.as_str() { "application" } else { "library" },
        "bom-ref": bom_ref,
        "name": skill.name,
    });
    if let Some(version) = &skill.version {
        c["version"] = json!(version);
    }
    if !skill.description.is_empty() {
        c["description"] = json!(skill.description);
    }
    c["scope"] = json!(if skill.decision == "loaded" {
        "required"
    } else {
        "excluded"
    });
    if let Some(sha) = skill.sha256.as_deref().filter(|s| is_sha256(s)) {
        c["hashes"] = json!([{"alg": "SHA-256", "content": sha}]);
    }
    let mut properties = Vec::new();
    let mut property = |name: &str, value: String| {
        properties.push(json!({"name": format!("hark:{name}"), "value": value}));
    };
    property("kind", skill.kind.into());
    if let Some(signature) = skill.signature {
        property("signature", signature.into());
    }
    if let Some(signer) = &skill.signer {
        property("signer", signer.clone());
    }
    if let Some(trusted) = skill.signer_trusted {
        property("signer_trusted", trusted.to_string());
    }
    for p in &skill.permissions.asked {
        property("permission:asked", p.clone());
    }
    for p in &skill.permissions.granted {
        property("permission:granted", p.clone());
    }
    if let Some(abi) = skill.abi {
        property("abi", abi.to_string());
    }
    if let Some(min) = &skill.min_hub_version {
        property("min_hub_version", min.clone());
    }
    if let Some(hermetic) = skill.hermetic {
        property("hermetic", hermetic.to_string());
    }
    property("decision", skill.decision.into());
    property("rule", skill.rule.into());
    property("reason", skill.reason.clone());
    c["properties"] = Value::Array(properties);
    c
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A license of Cargo's `license` field: an SPDX id, or an expression.
fn licenses(license: &str) -> Value {
    if license.contains(|c: char| c.is_whitespace() || c == '(' || c == '/') {
        json!([{"expression": license}])
    } else {
        json!([{"license": {"id": license}}])
    }
}

/// RFC 4122 version 4 (random) UUID text of `bytes`.
fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use hark_skill_sdk::Manifest;

    use super::*;
    use crate::policy::SkillInfo;
    use crate::registry::{ArgsSchema, Runner};

    fn config(tier: Tier) -> Config {
        let mut config = Config::defaults();
        config.tier = tier;
        config
    }

    /// A skill registered as the loader would: admitted by the gate under `tier`.
    fn skill(tier: Tier, kind: SkillKind, manifest: Value, signature: Signature) -> Skill {
        let manifest: Manifest = serde_json::from_value(manifest).unwrap();
        let schema = ArgsSchema::compile(manifest.args_schema.clone()).unwrap();
        let info = SkillInfo::new(kind, manifest, signature, Vec::new());
        let admission = policy::decide(tier, &info, &Action::Load);
        Skill {
            info: Arc::new(info),
            schema,
            admission,
            runner: Runner::Unavailable,
        }
    }

    fn wasm_manifest(name: &str, permissions: &[&str]) -> Value {
        json!({
            "name": name, "version": "1.2.3", "description": "rolls dice", "trusted": true,
            "permissions": permissions, "abi": 1, "entrypoint": "skill.wasm",
            "sha256": "ab".repeat(32), "hermetic": true, "min_hub_version": "0.1.0",
        })
    }

    fn registry(tier: Tier) -> Registry {
        let mut registry = Registry::default();
        let signer = Signature::Verified {
            signer: "ed25519:AAAA".into(),
        };
        registry.insert(skill(
            tier,
            SkillKind::Wasm,
            wasm_manifest("dice", &["log", "kv", "net.http:example.org"]),
            signer,
        ));
        registry.insert(skill(
            tier,
            SkillKind::Wasm,
            wasm_manifest("loose", &["kv"]),
            Signature::Unsigned,
        ));
        registry.insert(skill(
            tier,
            SkillKind::Builtin,
            json!({"name": "timer.set", "version": "1.0.0", "permissions": ["timer"]}),
            Signature::NotApplicable,
        ));
        registry.insert_broken(LoadError {
            name: "timer.set".into(),
            problems: "name: \"timer.set\" is a built-in skill's name".into(),
        });
        registry
    }

    fn find<'a>(inventory: &'a Inventory, name: &str, kind: &str) -> &'a Entry {
        inventory
            .skills
            .iter()
            .find(|e| e.name == name && e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} {name} in {inventory:?}"))
    }

    #[test]
    fn the_inventory_says_what_the_gate_grants_under_each_tier() {
        let trusted = describe(&config(Tier::Trusted), &registry(Tier::Trusted));
        assert_eq!(trusted.tier, "trusted");
        let dice = find(&trusted, "dice", "wasm");
        // net.http is high-risk and not granted in [grants]: refused at load.
        assert_eq!(
            (dice.decision, dice.rule),
            ("refused", "grant.missing"),
            "{dice:?}"
        );
        assert_eq!(
            dice.permissions.asked,
            ["log", "kv", "net.http:example.org"]
        );
        assert!(dice.permissions.granted.is_empty());
        assert_eq!(dice.signer.as_deref(), Some("ed25519:AAAA"));
        assert_eq!(dice.signer_trusted, Some(true));
        assert_eq!(dice.sha256, Some("ab".repeat(32)));
        assert_eq!(
            (dice.abi, dice.hermetic, dice.min_hub_version.as_deref()),
            (Some(1), Some(true), Some("0.1.0"))
        );
        let loose = find(&trusted, "loose", "wasm");
        assert_eq!(
            (loose.decision, loose.rule, loose.signature),
            ("refused", "tier.trusted.unsigned", Some("unsigned"))
        );
        let builtin = find(&trusted, "timer.set", "builtin");
        assert_eq!((builtin.decision, builtin.rule), ("loaded", "builtin"));
        assert_eq!(builtin.permissions.granted, ["timer"]);
        assert_eq!((builtin.sha256.as_ref(), builtin.abi), (None, None));
        let folder = find(&trusted, "timer.set", "wasm");
        assert_eq!((folder.decision, folder.rule), ("refused", "load.invalid"));
        assert!(folder.reason.contains("built-in"), "{folder:?}");

        let convenient = describe(&config(Tier::Convenient), &registry(Tier::Convenient));
        let dice = find(&convenient, "dice", "wasm");
        assert_eq!(
            (dice.decision, dice.rule),
            ("loaded", "tier.convenient.signed")
        );
        assert_eq!(
            dice.permissions.granted,
            ["log", "kv", "net.http:example.org"]
        );
        let loose = find(&convenient, "loose", "wasm");
        assert_eq!(loose.decision, "loaded");
        assert_eq!(loose.permissions.granted, ["kv"]);

        let paranoid = describe(&config(Tier::Paranoid), &registry(Tier::Paranoid));
        let dice = find(&paranoid, "dice", "wasm");
        assert_eq!(dice.rule, "tier.paranoid.builtins_only");
        assert!(dice.permissions.granted.is_empty());
    }

    #[test]
    fn the_sbom_has_a_component_per_skill_and_the_hub_depends_on_the_loaded_ones() {
        let inventory = describe(&config(Tier::Convenient), &registry(Tier::Convenient));
        let at = UNIX_EPOCH + Duration::from_millis(1_795_338_453_123);
        let bom = cyclonedx(&inventory, [0xff; 16], at);
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.5");
        assert_eq!(
            bom["serialNumber"],
            "urn:uuid:ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        assert_eq!(bom["metadata"]["timestamp"], "2026-11-22T09:07:33.123Z");
        assert_eq!(bom["metadata"]["component"]["bom-ref"], "hark");
        let refs: Vec<&str> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["bom-ref"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            [
                "skill:dice",
                "skill:loose",
                "skill:timer.set",
                "skill:timer.set:2"
            ]
        );
        let dice = &bom["components"][0];
        assert_eq!(dice["type"], "application");
        assert_eq!(dice["scope"], "required");
        assert_eq!(
            dice["hashes"],
            json!([{"alg": "SHA-256", "content": "ab".repeat(32)}])
        );
        let properties = dice["properties"].as_array().unwrap();
        assert!(properties.iter().all(|p| p["value"].is_string()));
        assert!(properties.contains(&json!({"name": "hark:signer", "value": "ed25519:AAAA"})));
        assert!(properties.contains(&json!({"name": "hark:permission:granted", "value": "kv"})));
        assert_eq!(bom["components"][2]["type"], "library");
        assert!(bom["components"][2].get("hashes").is_none());
        assert_eq!(bom["components"][3]["scope"], "excluded");
        assert_eq!(
            bom["dependencies"][0],
            json!({"ref": "hark", "dependsOn": ["skill:dice", "skill:loose", "skill:timer.set"]})
        );
        assert_eq!(bom["dependencies"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn serial_numbers_are_version_4_uuids() {
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        let a = cyclonedx_now(&describe(&config(Tier::Paranoid), &Registry::default())).unwrap();
        let b = cyclonedx_now(&describe(&config(Tier::Paranoid), &Registry::default())).unwrap();
        assert_ne!(a["serialNumber"], b["serialNumber"]);
        let text = a["serialNumber"].as_str().unwrap();
        assert_eq!(text.len(), "urn:uuid:".len() + 36);
        assert_eq!(&text[9 + 14..9 + 15], "4");
    }

    #[test]
    fn a_license_expression_is_not_an_id() {
        assert_eq!(
            licenses("Apache-2.0"),
            json!([{"license": {"id": "Apache-2.0"}}])
        );
        assert_eq!(
            licenses("MIT OR Apache-2.0"),
            json!([{"expression": "MIT OR Apache-2.0"}])
        );
    }
}
