//! Loading WebAssembly skills from `skills.dir`: one folder per skill,
//! `<dir>/<name>/{manifest.json, manifest.sig, <entrypoint>}`.
//!
//! Every check says what a person can fix: the manifest's own rules, the
//! folder named after the skill, ABI 1, the module's `sha256`, limits that
//! only tighten, the signature, and the module itself (imports covered by
//! permissions, exports, memory, no start function). A skill the tier
//! refuses is still read and listed, but never compiled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hark_skill_sdk::manifest::check_name;
use hark_skill_sdk::{ABI_VERSION, Manifest};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::policy::{Signature, SkillKind};
use crate::registry::{self, LoadError, Runner, Skill};
use crate::sandbox::host::SkillInfo;
use crate::sandbox::kv::KvStore;
use crate::sandbox::{self, CallLimits, WasmSkill};

/// Largest `manifest.json` read.
const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// What a scan of `skills.dir` found.
#[derive(Debug, Default)]
pub struct Scan {
    pub skills: Vec<Skill>,
    pub broken: Vec<LoadError>,
}

/// Reads every skill folder. A missing `skills.dir` is an empty scan.
pub fn scan(config: &Config, engine: &wasmi::Engine, fuel_per_ms: u64) -> Scan {
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
        match load(&dir, config, engine, fuel_per_ms) {
            Ok(skill) => scan.skills.push(skill),
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
    let info_template = (manifest.clone(), signature.clone(), kv);
    let mut skill = registry::prepare(
        manifest_text,
        SkillKind::Wasm,
        signature,
        Runner::Unavailable,
        config,
    )?;
    if skill.enabled() {
        let limits = CallLimits::new(
            &skill.manifest,
            config.skills.timeout,
            config.skills.memory_mib,
            fuel_per_ms,
        );
        let module = sandbox::compile(
            engine,
            &module_bytes,
            &skill.permissions,
            limits.memory_bytes,
        )
        .map_err(|p| {
            fail(format!(
                "{module_name} {}",
                p.join(&format!("; {module_name} "))
            ))
        })?;
        let (manifest, signature, kv) = info_template;
        let info = SkillInfo {
            name: manifest.name.clone(),
            permissions: skill.permissions.clone(),
            grants: skill.grants.clone(),
            manifest,
            signature,
            kv: Arc::new(kv),
        };
        skill.runner = Runner::Wasm(Arc::new(WasmSkill {
            info: Arc::new(info),
            module,
            limits,
        }));
    }
    Ok(skill)
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
