//! The skill registry: every skill the hub knows, built-in and sandboxed side
//! by side, in a plain container that the [`loader`](crate::loader) fills.
//! Each entry holds the skill's facts (one [`SkillInfo`], shared with its
//! sandbox calls), its args schema compiled once at load, the policy gate's load-time verdict under the current tier, and how
//! it runs.
//!
//! A skill the tier refuses stays registered (disabled, with the reason), so a
//! request for it is answered `denied` with that reason rather than
//! `unknown_intent`, and the status topic can show why it is off.

use std::collections::BTreeMap;
use std::sync::Arc;

use hark_skills_builtin::BuiltinSkill;
use serde_json::{Value, json};

use crate::policy::{Decision, Signature, SkillInfo, SkillKind};

mod schema;
mod violations;

pub use schema::ArgsSchema;

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

/// One registered skill.
#[derive(Debug)]
pub struct Skill {
    /// What it is; the same `Arc` its sandbox calls hold.
    pub info: Arc<SkillInfo>,
    pub schema: ArgsSchema,
    /// The policy gate's verdict on loading it under the current tier.
    pub admission: Decision,
    pub runner: Runner,
}

impl Skill {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn kind(&self) -> SkillKind {
        self.info.kind
    }

    pub fn enabled(&self) -> bool {
        self.admission.allow
    }

    /// The entry the status topic and `hark skills list` show.
    pub fn describe(&self) -> Value {
        let manifest = &self.info.manifest;
        let mut entry = json!({
            "name": manifest.name,
            "kind": self.kind().as_str(),
            "version": manifest.version,
            "permissions": manifest.permissions,
            "enabled": self.enabled(),
        });
        match &self.info.signature {
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
    /// Adds `skill`, replacing one of the same name.
    pub fn insert(&mut self, skill: Skill) {
        self.skills
            .insert(skill.name().to_string(), Arc::new(skill));
    }

    /// Lists a skill folder that could not be loaded.
    pub fn insert_broken(&mut self, error: LoadError) {
        self.broken.push(error);
    }

    pub fn broken(&self) -> &[LoadError] {
        &self.broken
    }

    /// This registry with a reload applied atomically per skill: a skill
    /// whose new version fails to load keeps serving its old version.
    /// Returns the notes to audit for those.
    pub fn reloaded(&self, mut fresh: Registry) -> (Registry, Vec<String>) {
        let mut kept = Vec::new();
        let mut still_broken = Vec::new();
        for error in std::mem::take(&mut fresh.broken) {
            match self.skills.get(&error.name) {
                Some(old)
                    if old.kind() == SkillKind::Wasm && !fresh.skills.contains_key(&error.name) =>
                {
                    kept.push(format!(
                        "{} keeps its loaded version {}: the new one failed: {}",
                        error.name, old.info.manifest.version, error.problems
                    ));
                    fresh.skills.insert(error.name.clone(), old.clone());
                }
                _ => still_broken.push(error),
            }
        }
        fresh.broken = still_broken;
        (fresh, kept)
    }

    /// Every skill and every broken folder, as the status topic shows them.
    pub fn describe(&self) -> Vec<Value> {
        let mut all: Vec<Value> = self.skills.values().map(|s| s.describe()).collect();
        all.extend(self.broken.iter().map(
            |b| json!({"name": b.name, "kind": "wasm", "enabled": false, "reason": b.problems}),
        ));
        all
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
    use hark_skill_sdk::Manifest;

    /// An entry of `kind` named `name`, version `version`, enabled or not.
    fn skill(name: &str, version: &str, kind: SkillKind, enabled: bool) -> Skill {
        let manifest: Manifest =
            serde_json::from_value(json!({"name": name, "version": version})).unwrap();
        let signature = match kind {
            SkillKind::Builtin => Signature::NotApplicable,
            SkillKind::Wasm => Signature::Unsigned,
        };
        let schema = ArgsSchema::compile(manifest.args_schema.clone()).unwrap();
        Skill {
            info: Arc::new(SkillInfo::new(kind, manifest, signature, Vec::new())),
            schema,
            admission: Decision {
                allow: enabled,
                rule: if enabled { "test.allow" } else { "test.deny" },
                reason: "because".into(),
            },
            runner: Runner::Unavailable,
        }
    }

    fn registry(skills: Vec<Skill>) -> Registry {
        let mut registry = Registry::default();
        for s in skills {
            registry.insert(s);
        }
        registry
    }

    #[test]
    fn close_names_are_suggested() {
        let registry = registry(vec![
            skill("timer.set", "1.0.0", SkillKind::Builtin, true),
            skill("system.cancel", "1.0.0", SkillKind::Builtin, true),
            skill("audio.play", "1.0.0", SkillKind::Builtin, true),
        ]);
        assert_eq!(registry.suggest("timer.sett"), ["timer.set"]);
        assert_eq!(registry.suggest("timerset"), ["timer.set"]);
        assert!(registry.suggest("weather").is_empty());
    }

    #[test]
    fn a_reload_keeps_the_old_version_of_a_skill_whose_new_one_failed() {
        let old = registry(vec![
            skill("lights", "1.0.0", SkillKind::Wasm, true),
            skill("gone", "1.0.0", SkillKind::Wasm, true),
        ]);
        let mut fresh = Registry::default();
        fresh.insert_broken(LoadError {
            name: "lights".into(),
            problems: "sha256: mismatch".into(),
        });
        fresh.insert_broken(LoadError {
            name: "new".into(),
            problems: "abi: missing".into(),
        });
        let (merged, notes) = old.reloaded(fresh);
        let names: Vec<&str> = merged.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["lights"], "a skill removed from disk is gone");
        assert_eq!(
            notes,
            ["lights keeps its loaded version 1.0.0: the new one failed: sha256: mismatch"]
        );
        assert_eq!(merged.broken().len(), 1);
        assert_eq!(merged.broken()[0].name, "new");
    }

    #[test]
    fn the_status_lists_disabled_skills_and_broken_folders_with_why() {
        let mut registry = registry(vec![skill("lights", "1.2.0", SkillKind::Wasm, false)]);
        registry.insert_broken(LoadError {
            name: "bad".into(),
            problems: "abi: missing".into(),
        });
        assert_eq!(
            registry.describe(),
            [
                json!({"name": "lights", "kind": "wasm", "version": "1.2.0", "permissions": [],
                       "enabled": false, "signer": null, "reason": "because"}),
                json!({"name": "bad", "kind": "wasm", "enabled": false, "reason": "abi: missing"}),
            ]
        );
    }
}
