//! Filling the [registry](crate::registry): the built-in skills, then one
//! folder per WebAssembly skill in `skills.dir`,
//! `<dir>/<name>/{manifest.json, manifest.sig, <entrypoint>}`. Each skill's
//! facts ([`SkillInfo`]) are established here once and shared by its entry
//! and its sandbox calls; its args schema is compiled here.
//!
//! Every check says what a person can fix: the manifest's own rules, the
//! folder named after the skill, ABI 1, the module's `sha256`, limits that
//! only tighten, the signature, and the module itself (imports covered by
//! permissions, exports, memory, no start function). A skill the tier
//! refuses is still read and listed, but never compiled.
//!
//! Compiling is the costly part (bounded by [`sandbox::check_shape`]), and
//! wasmi keeps a module's compiled code in the engine for the engine's life.
//! So a reload passes the modules it already has ([`Compiled`]): one whose
//! sha256 did not change is kept and only checked again against its manifest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hark_skill_sdk::manifest::check_name;
use hark_skill_sdk::{ABI_VERSION, Manifest, Permission};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::effects::kv::KvStore;
use crate::policy::{self, Action, Signature, SkillInfo, SkillKind};
use crate::registry::{ArgsSchema, LoadError, Registry, Runner, Skill};
use crate::sandbox::{self, CallLimits, WasmSkill};

/// Largest `manifest.json` read.
const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// Compiled modules by the sha256 (hex) of their bytes, for a reload to reuse.
pub type Compiled = HashMap<String, wasmi::Module>;

/// Built-ins plus every skill in `skills.dir`.
pub fn load_registry(
    config: &Config,
    engine: &wasmi::Engine,
    fuel_per_ms: u64,
) -> Result<Registry, LoadError> {
    load_registry_reusing(config, engine, fuel_per_ms, &Compiled::new()).map(|(r, _)| r)
}

/// Like [`load_registry`], reusing the modules in `compiled` (see
/// [`compiled`]) whose sha256 did not change. Also returns the names of the
/// skills whose module was kept.
pub fn load_registry_reusing(
    config: &Config,
    engine: &wasmi::Engine,
    fuel_per_ms: u64,
    compiled: &Compiled,
) -> Result<(Registry, Vec<String>), LoadError> {
    let mut registry = builtins(config)?;
    let scan = scan_reusing(config, engine, fuel_per_ms, compiled);
    for skill in scan.skills {
        registry.insert(skill);
    }
    for error in scan.broken {
        registry.insert_broken(error);
    }
    Ok((registry, scan.kept))
}

/// The built-in skills, admitted under `config.tier`. A built-in whose
/// manifest fails is a bug of this build: the hub does not start.
pub fn builtins(config: &Config) -> Result<Registry, LoadError> {
    let mut registry = Registry::default();
    for runner in hark_skills_builtin::all() {
        let manifest = Manifest::from_json(runner.manifest_json()).map_err(|e| LoadError {
            name: "?".into(),
            problems: format!("manifest: {e}"),
        })?;
        let mut skill = prepare(
            manifest,
            SkillKind::Builtin,
            Signature::NotApplicable,
            config,
        )?;
        skill.runner = Runner::Builtin(runner);
        registry.insert(skill);
    }
    Ok(registry)
}

/// The compiled modules of `registry`'s WebAssembly skills, by sha256: what
/// a reload may reuse.
pub fn compiled(registry: &Registry) -> Compiled {
    registry
        .iter()
        .filter_map(|s| match &s.runner {
            Runner::Wasm(w) => Some((w.info.manifest.sha256.clone()?, w.module.clone())),
            _ => None,
        })
        .collect()
}

/// Checks a manifest's own rules, compiles its args schema, and asks the
/// gate whether the tier admits the skill: an entry not yet runnable.
fn prepare(
    manifest: Manifest,
    kind: SkillKind,
    signature: Signature,
    config: &Config,
) -> Result<Skill, LoadError> {
    let fail = |problems: String| LoadError {
        name: manifest.name.clone(),
        problems,
    };
    let problems = manifest.problems();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(fail(list.join("; ")));
    }
    let schema = ArgsSchema::compile(manifest.args_schema.clone())
        .map_err(|e| fail(format!("args_schema: {e}")))?;
    let grants = config
        .grants
        .get(&manifest.name)
        .cloned()
        .unwrap_or_default();
    let mut info = SkillInfo::new(kind, manifest, signature, grants);
    info.reserved_publish = reserved_publish(&info, &config.mqtt.prefix);
    info.load_refusal = load_refusal(&info, config);
    let admission = policy::decide(config.tier, &info, &Action::Load);
    Ok(Skill {
        info: Arc::new(info),
        schema,
        admission,
        runner: Runner::Unavailable,
    })
}

/// Why this hub refuses a skill before its tier is asked: it needs a newer
/// hub (`min_hub_version`), or the hub is hermetic (`trust.hermetic`, SPEC
/// §10) and the skill is not: a WebAssembly skill must say `"hermetic":
/// true` and ask for no `net.http`, no `secrets.read`, and `mqtt.publish`
/// only in its own `<prefix>/skill/<name>/#`.
fn load_refusal(info: &SkillInfo, config: &Config) -> Option<(&'static str, String)> {
    let hub = env!("CARGO_PKG_VERSION");
    if let Some(min) = &info.manifest.min_hub_version
        && !hark_skill_sdk::manifest::version_at_least(hub, min)
    {
        return Some((
            "load.min_hub_version",
            format!("it needs hark {min} or newer (min_hub_version); this hub is {hub}"),
        ));
    }
    if !config.trust_hermetic || info.kind != SkillKind::Wasm {
        return None;
    }
    let prefix = &config.mqtt.prefix;
    let reaching: Vec<String> = info
        .permissions
        .iter()
        .filter(|p| match p {
            Permission::NetHttp(_) | Permission::SecretsRead(_) => true,
            Permission::MqttPublish(filter) => {
                !crate::satellites::access::within_own_namespace(filter, prefix, &info.name)
            }
            _ => false,
        })
        .map(|p| p.to_string())
        .collect();
    let mut why = Vec::new();
    if !info.manifest.hermetic {
        why.push("its manifest does not say \"hermetic\": true".to_string());
    }
    if !reaching.is_empty() {
        why.push(format!("it declares {}", reaching.join(", ")));
    }
    (!why.is_empty()).then(|| {
        (
            "trust.hermetic",
            format!(
                "trust.hermetic refuses it: {}. A hermetic skill says so, asks for no net.http \
                 and no secrets.read, and publishes only under {prefix}/skill/{}/#",
                why.join(", and "),
                info.name
            ),
        )
    })
}

/// Why a skill that declares `mqtt.publish` on a filter that can reach a
/// reserved topic (SPEC §7: where the hub listens, or speaks with authority)
/// is refused in every tier, with the topic named: a skill publishing an
/// NluIntent could otherwise speak for any Hermes site. The gate refuses it
/// at load and again at every run.
fn reserved_publish(info: &SkillInfo, prefix: &str) -> Option<String> {
    info.permissions.iter().find_map(|p| {
        let Permission::MqttPublish(filter) = p else {
            return None;
        };
        let reserved = crate::satellites::access::reserved_overlap(filter, prefix, &info.name)?;
        Some(format!(
            "declares {p}, which can reach {reserved}: a topic the hub listens or speaks on \
             with authority; no skill may publish there"
        ))
    })
}

/// What a scan of `skills.dir` found.
#[derive(Debug, Default)]
pub struct Scan {
    pub skills: Vec<Skill>,
    pub broken: Vec<LoadError>,
    /// Skills whose compiled module was reused rather than compiled again.
    pub kept: Vec<String>,
}

/// Reads every skill folder, compiling every module. A missing `skills.dir`
/// is an empty scan.
#[cfg(test)]
pub fn scan(config: &Config, engine: &wasmi::Engine, fuel_per_ms: u64) -> Scan {
    scan_reusing(config, engine, fuel_per_ms, &Compiled::new())
}

/// Like [`scan`], reusing the modules in `compiled` (compiled by `engine`)
/// whose sha256 a skill's module still has.
pub fn scan_reusing(
    config: &Config,
    engine: &wasmi::Engine,
    fuel_per_ms: u64,
    compiled: &Compiled,
) -> Scan {
    let mut scan = Scan::default();
    let entries = match std::fs::read_dir(&config.skills.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return scan,
        Err(e) => {
            scan.broken.push(LoadError {
                name: config.skills.dir.display().to_string(),
                problems: format!("cannot read skills.dir: {e}"),
            });
            return scan;
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        match load_reusing(&dir, config, engine, fuel_per_ms, compiled) {
            Ok((skill, kept)) => {
                if kept {
                    scan.kept.push(skill.name().to_string());
                }
                scan.skills.push(skill);
            }
            Err(e) => scan.broken.push(e),
        }
    }
    scan
}

/// Loads the skill in `dir`.
pub fn load(
    dir: &Path,
    config: &Config,
    engine: &wasmi::Engine,
    fuel_per_ms: u64,
) -> Result<Skill, LoadError> {
    load_reusing(dir, config, engine, fuel_per_ms, &Compiled::new()).map(|(skill, _)| skill)
}

/// Loads the skill in `dir`, taking its module from `compiled` when its
/// sha256 is there; says whether it did.
fn load_reusing(
    dir: &Path,
    config: &Config,
    engine: &wasmi::Engine,
    fuel_per_ms: u64,
    compiled: &Compiled,
) -> Result<(Skill, bool), LoadError> {
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |problems: String| LoadError {
        name: folder.clone(),
        problems,
    };
    check_name(&folder).map_err(|m| fail(format!("the folder name is not a skill name: {m}")))?;

    let manifest_path = dir.join("manifest.json");
    let manifest_bytes = read_capped(&manifest_path, MAX_MANIFEST_BYTES).map_err(fail)?;
    let manifest_text = std::str::from_utf8(&manifest_bytes)
        .map_err(|_| fail("manifest.json is not UTF-8".into()))?;
    let manifest =
        Manifest::from_json(manifest_text).map_err(|e| fail(format!("manifest.json: {e}")))?;

    let mut problems: Vec<String> = manifest.problems().iter().map(|p| p.to_string()).collect();
    if manifest.name != folder {
        problems.push(format!(
            "name: \"{}\" must match its folder \"{folder}\"",
            manifest.name
        ));
    }
    if hark_skills_builtin::all()
        .iter()
        .any(|b| Manifest::from_json(b.manifest_json()).is_ok_and(|m| m.name == manifest.name))
    {
        problems.push(format!(
            "name: \"{}\" is a built-in skill's name",
            manifest.name
        ));
    }
    match manifest.abi {
        Some(ABI_VERSION) => {}
        Some(other) => problems.push(format!(
            "abi: {other} is not supported; this hub speaks ABI {ABI_VERSION}"
        )),
        None => problems.push(format!(
            "abi: missing; a WebAssembly skill declares \"abi\": {ABI_VERSION}"
        )),
    }
    if manifest.entrypoint.is_none() {
        problems.push("entrypoint: missing; name the module file, e.g. \"skill.wasm\"".into());
    }
    if manifest.sha256.is_none() {
        problems.push("sha256: missing; `hark skill build` writes it".into());
    }
    problems.extend(sandbox::limits_problems(
        &manifest,
        config.skills.timeout,
        config.skills.memory_mib,
        config.net.http_response_kib,
    ));
    if !problems.is_empty() {
        return Err(fail(problems.join("; ")));
    }

    let signature = crate::signing::check(dir, &manifest_bytes, &config.trust_keys);
    let module_name = manifest.entrypoint.clone().unwrap_or_default();
    let module_bytes =
        read_capped(&dir.join(&module_name), sandbox::MAX_MODULE_BYTES as u64).map_err(fail)?;
    let actual = hex(&Sha256::digest(&module_bytes));
    let expected = manifest.sha256.clone().unwrap_or_default();
    if actual != expected {
        let message = match &signature {
            Signature::Verified { .. } | Signature::UnknownSigner { .. } => format!(
                "{module_name} changed after signing: its sha256 is {actual}, the signed manifest says {expected}"
            ),
            _ => format!(
                "sha256: {module_name} hashes to {actual}, the manifest says {expected}; rebuild with `hark skill build`"
            ),
        };
        return Err(fail(message));
    }

    let kv = KvStore::open(&config.state_dir.join("kv"), &manifest.name).map_err(fail)?;
    let mut skill = prepare(manifest, SkillKind::Wasm, signature, config)?;
    let mut kept = false;
    if skill.enabled() {
        let info = skill.info.clone();
        let limits = CallLimits::new(
            &info.manifest,
            config.skills.timeout,
            config.skills.memory_mib,
            fuel_per_ms,
        )
        .http_response(
            info.manifest.limits.and_then(|l| l.http_response_kib),
            config.net.http_response_kib,
        );
        let explain = |p: Vec<String>| {
            fail(format!(
                "{module_name} {}",
                p.join(&format!("; {module_name} "))
            ))
        };
        let module = match compiled.get(&actual) {
            Some(module) => {
                sandbox::check_module(module, &info.permissions, limits.memory_bytes)
                    .map_err(explain)?;
                kept = true;
                module.clone()
            }
            None => sandbox::compile(
                engine,
                &module_bytes,
                &info.permissions,
                limits.memory_bytes,
            )
            .map_err(explain)?,
        };
        skill.runner = Runner::Wasm(Arc::new(WasmSkill {
            info,
            kv: Arc::new(kv),
            module,
            limits,
        }));
    }
    Ok((skill, kept))
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{name} is not a file"));
    }
    if meta.len() > max {
        return Err(format!(
            "{name} is {} bytes; the limit is {max}",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"(module
        (import "hark" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "hark_alloc") (param i32) (result i32) i32.const 0)
        (func (export "hark_handle") (param i32 i32) (result i64) i64.const 0))"#;

    struct Folder(PathBuf);

    impl Folder {
        fn new(name: &str) -> Folder {
            let dir =
                std::env::temp_dir().join(format!("hark-loader-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("skills")).unwrap();
            Folder(dir)
        }

        fn config(&self) -> Config {
            let text = format!(
                "tier = \"convenient\"\nstate_dir = \"{}\"\n[skills]\ndir = \"{}\"\nfuel_per_ms = 1000\n",
                self.0.join("state").display(),
                self.0.join("skills").display()
            );
            Config::from_toml(&text, Path::new("test.toml")).unwrap()
        }

        fn install(&self, name: &str, wat: &str, permissions: &[&str]) {
            let module = wat::parse_str(wat).unwrap();
            let dir = self.0.join("skills").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let manifest = serde_json::json!({
                "name": name, "version": "1.0.0", "abi": 1, "entrypoint": "skill.wasm",
                "sha256": hex(&Sha256::digest(&module)), "permissions": permissions,
                "trusted": permissions.iter().any(|p| p.starts_with("mqtt.publish")),
                "args_schema": {"type": "object"}
            });
            std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
            std::fs::write(dir.join("skill.wasm"), module).unwrap();
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn compiled(scan: &Scan) -> Compiled {
        scan.skills
            .iter()
            .filter_map(|s| match &s.runner {
                Runner::Wasm(w) => Some((s.info.manifest.sha256.clone()?, w.module.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_reload_keeps_the_compiled_module_of_an_unchanged_skill_only() {
        let folder = Folder::new("keep");
        folder.install("same", MODULE, &["kv"]);
        folder.install("edited", MODULE, &["kv"]);
        let (config, engine) = (folder.config(), sandbox::engine());
        let first = scan(&config, &engine, 1000);
        assert_eq!(first.skills.len(), 2, "{:?}", first.broken);
        assert!(first.kept.is_empty());

        // `edited` gets a new module (one more export, so another sha256).
        let edited = MODULE.replace("i64.const 0))", "i64.const 0) (func (export \"extra\")))");
        folder.install("edited", &edited, &["kv"]);
        let second = scan_reusing(&config, &engine, 1000, &compiled(&first));
        assert_eq!(second.skills.len(), 2, "{:?}", second.broken);
        assert_eq!(second.kept, ["same"]);
    }

    #[test]
    fn a_kept_module_is_checked_again_against_its_new_manifest() {
        let folder = Folder::new("recheck");
        folder.install("kv_user", MODULE, &["kv"]);
        let (config, engine) = (folder.config(), sandbox::engine());
        let first = scan(&config, &engine, 1000);
        assert_eq!(first.skills.len(), 1, "{:?}", first.broken);

        // Same module, but the manifest no longer declares the permission.
        folder.install("kv_user", MODULE, &[]);
        let second = scan_reusing(&config, &engine, 1000, &compiled(&first));
        assert!(second.skills.is_empty());
        assert!(
            second.broken[0]
                .problems
                .contains("needs the permission kv"),
            "{:?}",
            second.broken
        );
    }

    #[test]
    fn a_skill_that_could_publish_on_a_reserved_topic_is_refused_naming_it() {
        let folder = Folder::new("reserved");
        let cases = [
            ("hermes_all", "hermes/#", "hermes/intent/#"),
            ("hermes_intent", "hermes/intent/+", "hermes/intent/#"),
            ("everything", "#", "hark/#"),
            ("replies", "hark/reply/+", "hark/#"),
            ("lights", "zigbee2mqtt/+/set", ""),
        ];
        for (name, filter, _) in cases {
            folder.install(name, MODULE, &["kv", &format!("mqtt.publish:{filter}")]);
        }
        // Convenient admits every declared permission: only the reserved rule stands.
        let scan = scan(&folder.config(), &sandbox::engine(), 1000);
        for (name, _, reserved) in cases {
            let skill = scan.skills.iter().find(|s| s.name() == name);
            let skill = skill.unwrap_or_else(|| panic!("{name}: {:?}", scan.broken));
            if reserved.is_empty() {
                assert!(skill.enabled(), "{name}: {}", skill.admission.reason);
                continue;
            }
            assert!(!skill.enabled(), "{name}");
            assert_eq!(skill.admission.rule, "mqtt.reserved_topic");
            assert!(
                skill.admission.reason.contains(reserved),
                "{name}: {}",
                skill.admission.reason
            );
        }
    }

    #[test]
    fn every_manifest_file_loads_and_its_schema_compiles() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let manifest =
                Manifest::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(manifest.problems(), Vec::new(), "{}", path.display());
            ArgsSchema::compile(manifest.args_schema.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                path.file_stem().unwrap().to_str().unwrap(),
                manifest.name,
                "manifests/<skill>.json is named after its skill"
            );
            seen += 1;
        }
        assert!(seen >= 3, "found {seen} manifests in {}", dir.display());
    }

    #[test]
    fn builtins_are_registered_and_enabled_in_paranoid() {
        let registry = builtins(&Config::defaults()).unwrap();
        let names: Vec<&str> = registry.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "audio.play",
                "system.cancel",
                "system.confirm",
                "timer.add",
                "timer.cancel",
                "timer.list",
                "timer.pause",
                "timer.resume",
                "timer.set",
                "timer.status",
                "timer.subtract"
            ]
        );
        assert!(registry.iter().all(|s| s.enabled()));
    }
}
