//! The skill registry: every skill the hub knows, built-in and sandboxed side
//! by side, each with its validated manifest, compiled args schema and the
//! policy gate's load-time verdict under the current tier.
//!
//! A skill the tier refuses stays registered (disabled, with the reason), so a
//! request for it is answered `denied` with that reason rather than
//! `unknown_intent`, and the status topic can show why it is off.

use std::collections::BTreeMap;
use std::sync::Arc;

use hark_skill_sdk::{Manifest, Permission, Violation};
use hark_skills_builtin::BuiltinSkill;
use serde_json::{Value, json};

use crate::config::Config;
use crate::loader::Compiled;
use crate::policy::{self, Action, Decision, Signature, SkillKind, Subject};

mod schema;

pub use schema::ArgsSchema;

/// Turns one jsonschema-valid error into violations a person can act on:
/// "Invalid type." gains what was expected and what came, and one
/// "Additional properties" error becomes one violation per unexpected key,
/// each at its own pointer.
fn explain(e: jsonschema_valid::ValidationError) -> Vec<Violation> {
    let at = format!("/args{}", pointer(&e.instance_path));
    let schema = e.schema.as_ref();
    if e.msg == "Invalid type." {
        let expected = match schema.and_then(|s| s.get("type")) {
            Some(Value::String(t)) => article(t),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(article)
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "another type".to_string(),
        };
        let found = e.instance.as_ref().map_or("something else", json_kind);
        return vec![Violation {
            pointer: at,
            message: format!("must be {expected}, not {found}"),
        }];
    }
    if e.msg.starts_with("Additional properties are not allowed") {
        let allowed: Vec<&str> = schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(instance)) = &e.instance {
            let extras: Vec<Violation> = instance
                .keys()
                .filter(|k| !allowed.contains(&k.as_str()))
                .map(|k| Violation {
                    pointer: format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    message: if allowed.is_empty() {
                        "unexpected argument; this skill takes none".to_string()
                    } else {
                        format!(
                            "unexpected argument; this skill takes {}",
                            allowed.join(", ")
                        )
                    },
                })
                .collect();
            if !extras.is_empty() {
                return extras;
            }
        }
    }
    vec![Violation {
        pointer: at,
        message: e.msg,
    }]
}

fn article(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".to_string(),
        _ => format!("a {t}"),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// jsonschema-valid keeps paths innermost-first; a JSON pointer is outermost-first.
fn pointer(reversed_path: &[String]) -> String {
    reversed_path
        .iter()
        .rev()
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// How a skill runs.
pub enum Runner {
    Builtin(Box<dyn BuiltinSkill>),
    Wasm(Arc<crate::sandbox::WasmSkill>),
    /// Listed but not runnable: the tier refuses it, so it was never compiled.
    Unavailable,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runner::Builtin(_) => f.write_str("Builtin"),
            Runner::Wasm(w) => write!(f, "Wasm({})", w.info.name),
            Runner::Unavailable => f.write_str("Unavailable"),
        }
    }
}

#[derive(Debug)]
pub struct Skill {
    pub manifest: Manifest,
    pub permissions: Vec<Permission>,
    pub schema: ArgsSchema,
    pub kind: SkillKind,
    pub signature: Signature,
    /// High-risk permissions the user granted this skill.
    pub grants: Vec<Permission>,
    /// The policy gate's verdict on loading it under the current tier.
    pub admission: Decision,
    pub runner: Runner,
}

impl Skill {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn enabled(&self) -> bool {
        self.admission.allow
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            kind: self.kind,
            manifest: &self.manifest,
            signature: &self.signature,
            grants: &self.grants,
        }
    }

    /// The entry the status topic and `hark skills list` show.
    pub fn describe(&self) -> Value {
        let mut entry = json!({
            "name": self.manifest.name,
            "kind": self.kind.as_str(),
            "version": self.manifest.version,
            "permissions": self.manifest.permissions,
            "enabled": self.enabled(),
        });
        match &self.signature {
            Signature::Verified { signer } => entry["signer"] = json!(signer),
            Signature::UnknownSigner { signer } => {
                entry["signer"] = json!(signer);
                entry["signer_trusted"] = json!(false);
            }
            Signature::Unsigned => entry["signer"] = Value::Null,
            Signature::Rejected { reason } => entry["signature_error"] = json!(reason),
            Signature::NotApplicable => {}
        }
        if !self.enabled() {
            entry["reason"] = json!(self.admission.reason);
        }
        entry
    }
}

/// Why a skill could not be registered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("skill {name}: {problems}")]
pub struct LoadError {
    pub name: String,
    pub problems: String,
}

#[derive(Debug, Default)]
pub struct Registry {
    skills: BTreeMap<String, Arc<Skill>>,
    /// Skill folders that could not be loaded, with why.
    broken: Vec<LoadError>,
}

impl Registry {
    /// The built-in skills, admitted under `tier`.
    pub fn with_builtins(config: &Config) -> Result<Registry, LoadError> {
        let mut registry = Registry::default();
        for runner in hark_skills_builtin::all() {
            let manifest_json = runner.manifest_json();
            let skill = prepare(
                manifest_json,
                SkillKind::Builtin,
                Signature::NotApplicable,
                Runner::Builtin(runner),
                config,
            )?;
            registry.insert(skill);
        }
        Ok(registry)
    }

    /// Built-ins plus every skill in `skills.dir`.
    pub fn load(
        config: &Config,
        engine: &wasmi::Engine,
        fuel_per_ms: u64,
    ) -> Result<Registry, LoadError> {
        Registry::load_reusing(config, engine, fuel_per_ms, &Compiled::new()).map(|(r, _)| r)
    }

    /// Like [`Registry::load`], reusing the modules in `compiled` (see
    /// [`Registry::compiled`]) whose sha256 did not change. Also returns the
    /// names of the skills whose module was kept.
    pub fn load_reusing(
        config: &Config,
        engine: &wasmi::Engine,
        fuel_per_ms: u64,
        compiled: &Compiled,
    ) -> Result<(Registry, Vec<String>), LoadError> {
        let mut registry = Registry::with_builtins(config)?;
        let scan = crate::loader::scan_reusing(config, engine, fuel_per_ms, compiled);
        for skill in scan.skills {
            registry.insert(skill);
        }
        registry.broken = scan.broken;
        Ok((registry, scan.kept))
    }

    /// The compiled modules of this registry's WebAssembly skills, by sha256.
    pub fn compiled(&self) -> Compiled {
        self.skills
            .values()
            .filter_map(|s| match &s.runner {
                Runner::Wasm(w) => Some((w.info.manifest.sha256.clone()?, w.module.clone())),
                _ => None,
            })
            .collect()
    }

    /// This registry with a reload applied atomically per skill: a skill
    /// whose new version fails to load keeps serving its old version.
    pub fn reloaded(&self, mut fresh: Registry) -> (Registry, Vec<String>) {
        let mut kept = Vec::new();
        let mut still_broken = Vec::new();
        for error in std::mem::take(&mut fresh.broken) {
            match self.skills.get(&error.name) {
                Some(old)
                    if old.kind == SkillKind::Wasm && !fresh.skills.contains_key(&error.name) =>
                {
                    kept.push(format!(
                        "{} keeps its loaded version {}: the new one failed: {}",
                        error.name, old.manifest.version, error.problems
                    ));
                    fresh.skills.insert(error.name.clone(), old.clone());
                }
                _ => still_broken.push(error),
            }
        }
        fresh.broken = still_broken;
        (fresh, kept)
    }

    pub fn insert(&mut self, skill: Skill) {
        self.skills
            .insert(skill.manifest.name.clone(), Arc::new(skill));
    }

    pub fn broken(&self) -> &[LoadError] {
        &self.broken
    }

    /// Every skill and every broken folder, as the status topic shows them.
    pub fn describe(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.skills.values().map(|s| s.describe()).collect();
        all.extend(self.broken.iter().map(
            |b| json!({"name": b.name, "kind": "wasm", "enabled": false, "reason": b.problems}),
        ));
        all
    }

    /// Whether any skill needs the sandbox's workers.
    pub fn has_runnable_wasm(&self) -> bool {
        self.skills
            .values()
            .any(|s| matches!(s.runner, Runner::Wasm(_)))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Skill>> {
        self.skills.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Skill>> {
        self.skills.values()
    }

    pub fn len(&self) -> usize {
        self.skills.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }

    /// Names close to `name`, for an `unknown_intent` reply.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let mut close: Vec<(usize, &str)> = self
            .skills
            .keys()
            .map(|k| (edit_distance(k, name), k.as_str()))
            .filter(|(d, k)| *d <= 2.max(k.len() / 4))
            .collect();
        close.sort();
        close.into_iter().map(|(_, k)| k).take(3).collect()
    }
}

/// Validates a manifest and asks the gate whether the tier admits the skill.
pub fn prepare(
    manifest_json: &str,
    kind: SkillKind,
    signature: Signature,
    runner: Runner,
    config: &Config,
) -> Result<Skill, LoadError> {
    let manifest = Manifest::from_json(manifest_json).map_err(|e| LoadError {
        name: "?".into(),
        problems: format!("manifest: {e}"),
    })?;
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
    let permissions = manifest.parsed_permissions();
    let grants = config
        .grants
        .get(&manifest.name)
        .cloned()
        .unwrap_or_default();
    let admission = policy::decide(
        config.tier,
        &Subject {
            kind,
            manifest: &manifest,
            signature: &signature,
            grants: &grants,
        },
        &Action::Load,
    );
    Ok(Skill {
        manifest,
        permissions,
        schema,
        kind,
        signature,
        grants,
        admission,
        runner,
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(v: Value) -> ArgsSchema {
        ArgsSchema::compile(v).unwrap()
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
        let registry = Registry::with_builtins(&Config::defaults()).unwrap();
        let names: Vec<&str> = registry.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["audio.play", "system.cancel", "timer.set"]);
        assert!(registry.iter().all(|s| s.enabled()));
    }

    #[test]
    fn every_violation_is_reported_with_its_pointer() {
        let s = schema(serde_json::json!({
            "type": "object",
            "properties": {"duration": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
            "required": ["duration"], "additionalProperties": false
        }));
        assert!(s.validate(&serde_json::json!({"duration": "5m"})).is_ok());
        let mut v = s
            .validate(&serde_json::json!({"duration": 5, "n": 9, "x": 1}))
            .unwrap_err();
        v.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        let found: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.pointer.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("/args/duration", "must be a string, not an integer"),
                ("/args/n", "9 > maximum 3"),
                (
                    "/args/x",
                    "unexpected argument; this skill takes duration, n"
                ),
            ]
        );
    }

    #[test]
    fn a_schema_that_is_not_a_schema_is_refused() {
        let err = ArgsSchema::compile(serde_json::json!({"type": "strnig"})).unwrap_err();
        assert!(err.contains("/type"), "{err}");
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(pointer(&["b/c".into(), "a~".into()]), "/a~0/b~1c");
    }

    #[test]
    fn close_names_are_suggested() {
        let registry = Registry::with_builtins(&Config::defaults()).unwrap();
        assert_eq!(registry.suggest("timer.sett"), ["timer.set"]);
        assert_eq!(registry.suggest("timerset"), ["timer.set"]);
        assert!(registry.suggest("weather").is_empty());
    }
}
