//! `hark skill new|build|keygen|sign|verify`: a skill author's workflow from
//! scaffold to a signed folder the trusted tier accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ct_codecs::{Base64, Decoder, Encoder};
use ed25519_compact::{KeyPair, PublicKey, SecretKey, Seed};
use hark_skill_sdk::Manifest;
use hark_skill_sdk::manifest::check_name;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::policy::Signature;
use crate::signing;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SkillCliError(pub String);

fn err(message: impl Into<String>) -> SkillCliError {
    SkillCliError(message.into())
}

/// The SDK's sources, written into every new skill as `hark-skill-sdk/`
/// so a scaffold builds offline, with no checkout of Hark beside it.
const SDK_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../skill-sdk/src/lib.rs")),
    ("src/abi.rs", include_str!("../../../skill-sdk/src/abi.rs")),
    ("src/de.rs", include_str!("../../../skill-sdk/src/de.rs")),
    (
        "src/guest.rs",
        include_str!("../../../skill-sdk/src/guest.rs"),
    ),
    (
        "src/host.rs",
        include_str!("../../../skill-sdk/src/host.rs"),
    ),
    (
        "src/macros.rs",
        include_str!("../../../skill-sdk/src/macros.rs"),
    ),
    (
        "src/manifest.rs",
        include_str!("../../../skill-sdk/src/manifest.rs"),
    ),
    (
        "src/wire.rs",
        include_str!("../../../skill-sdk/src/wire.rs"),
    ),
];

const SDK_CARGO_TOML: &str = r#"[package]
name = "hark-skill-sdk"
description = "Guest-side SDK for Hark skills (vendored by `hark skill new`)"
version = "VERSION"
edition = "2024"
license = "Apache-2.0"
publish = false

[features]
default = ["guest-runtime"]
guest-runtime = []
std = ["serde/std", "serde_json/std"]

[dependencies]
serde = { version = "1", default-features = false, features = ["derive", "alloc"] }
serde_json = { version = "1", default-features = false, features = ["alloc"] }
"#;

/// `hark skill new <name>`: a crate that builds as is.
pub fn new(name: &str, parent: &Path, sdk: Option<&Path>) -> Result<PathBuf, SkillCliError> {
    check_name(name).map_err(|m| err(format!("\"{name}\" is not a skill name: {m}")))?;
    let crate_name = name.replace('.', "_");
    let dir = parent.join(name);
    if dir.exists() {
        return Err(err(format!("{} already exists", dir.display())));
    }
    let sdk_dep = match sdk {
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .map_err(|e| err(format!("--sdk {}: {e}", path.display())))?;
            path.display().to_string()
        }
        None => {
            let vendored = dir.join("hark-skill-sdk");
            for (file, text) in SDK_FILES {
                write(&vendored.join(file), text)?;
            }
            write(
                &vendored.join("Cargo.toml"),
                &SDK_CARGO_TOML.replace("VERSION", env!("CARGO_PKG_VERSION")),
            )?;
            "hark-skill-sdk".to_string()
        }
    };
    write(
        &dir.join("Cargo.toml"),
        &format!(
            r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
hark-skill-sdk = {{ path = "{sdk_dep}" }}
serde = {{ version = "1", default-features = false, features = ["derive", "alloc"] }}
serde_json = {{ version = "1", default-features = false, features = ["alloc"] }}

# Small modules: the hub parses and compiles every byte at load.
[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A crate of its own, even inside another workspace.
[workspace]
"#
        ),
    )?;
    write(
        &dir.join(".cargo/config.toml"),
        "# Every page of initial memory is allocated per call: keep the stack small.\n\
         [target.wasm32-unknown-unknown]\nrustflags = [\"-C\", \"link-arg=-zstack-size=65536\"]\n",
    )?;
    write(&dir.join(".gitignore"), "/target/\n*.key\n")?;
    write(
        &dir.join("manifest.json"),
        &format!(
            r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "description": "Says hello.",
  "trusted": false,
  "args_schema": {{
    "type": "object",
    "properties": {{"who": {{"type": "string", "minLength": 1, "maxLength": 40}}}},
    "additionalProperties": false
  }},
  "permissions": ["log"],
  "abi": 1,
  "entrypoint": "{crate_name}.wasm",
  "limits": {{"timeout_ms": 500, "memory_mib": 4}}
}}
"#
        ),
    )?;
    write(
        &dir.join("src/lib.rs"),
        &format!(
            r##"//! `{name}`: a Hark skill.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::prelude::*;
use serde::Deserialize;

/// The intent's `args`, checked by the hub against `args_schema` first.
#[derive(Deserialize)]
struct Args {{
    #[serde(default)]
    who: Option<String>,
}}

fn handle(request: Request<Args>) -> Result<SkillReply, SkillError> {{
    let who = request.args.who.unwrap_or_else(|| "world".to_string());
    host::log(Level::Info, &format!("greeting {{who}} for {{}}", request.satellite));
    Ok(SkillReply::speech(format!("Hello, {{who}}!")))
}}

hark_skill!(handle);

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn it_greets_by_name() {{
        let input = br#"{{"id":"r","intent":"{name}","args":{{"who":"Ada"}},"satellite":"kitchen"}}"#;
        let reply = hark_skill_sdk::guest::dispatch(input, handle);
        assert_eq!(reply, br#"{{"speech":"Hello, Ada!"}}"#);
    }}
}}
"##
        ),
    )?;
    write(
        &dir.join("README.md"),
        &format!(
            "# {name}\n\nA Hark skill. Build it with `hark skill build .`, sign it with \
             `hark skill sign . --key <your key>`, and copy the folder into the hub's skills.dir \
             as `{name}/`.\n"
        ),
    )?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), SkillCliError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// What `hark skill build` did.
#[derive(Debug)]
pub struct Built {
    pub module: PathBuf,
    pub bytes: usize,
    pub sha256: String,
    /// A `manifest.sig` that no longer matched and was removed.
    pub stale_signature_removed: bool,
}

/// `hark skill build <dir>`: cargo for wasm32, the module beside the
/// manifest, its sha256 in the manifest, then every check the hub makes.
pub fn build(dir: &Path, config: &Config) -> Result<Built, SkillCliError> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| err(format!("{}: {e}", manifest_path.display())))?;
    let mut manifest =
        Manifest::from_json(&text).map_err(|e| err(format!("manifest.json: {e}")))?;
    let entry = manifest.entrypoint.clone().ok_or_else(|| {
        err("manifest.json has no \"entrypoint\"; name the module, e.g. \"skill.wasm\"")
    })?;
    let crate_name = package_name(&dir.join("Cargo.toml"))?.replace('-', "_");

    let abs = std::fs::canonicalize(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    // Absolute, as cargo runs elsewhere (below) and we read its output.
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => std::path::absolute(t).map_err(|e| err(format!("CARGO_TARGET_DIR: {e}")))?,
        None => abs.join("target"),
    };
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
        ])
        .arg(abs.join("Cargo.toml"))
        .args(["--config", &remap_paths(&abs)])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Cargo reads `.cargo/config.toml` from where it runs, not from the
        // manifest's directory: run it in the skill's, for its stack size.
        .current_dir(&abs)
        .status()
        .map_err(|e| {
            err(format!(
                "cannot run cargo: {e}; install Rust from https://rustup.rs"
            ))
        })?;
    if !status.success() {
        return Err(err(
            "cargo build failed (see above); if the target is missing: \
             rustup target add wasm32-unknown-unknown",
        ));
    }
    let built = target_dir
        .join("wasm32-unknown-unknown/release")
        .join(format!("{crate_name}.wasm"));
    let module = std::fs::read(&built).map_err(|e| err(format!("{}: {e}", built.display())))?;
    let out = dir.join(&entry);
    std::fs::write(&out, &module).map_err(|e| err(format!("{}: {e}", out.display())))?;

    let sha256 = crate::loader::hex(&Sha256::digest(&module));
    manifest.sha256 = Some(sha256.clone());
    let new_text = serde_json::to_string_pretty(&manifest).expect("manifests serialize") + "\n";
    let mut stale_signature_removed = false;
    if new_text != text {
        std::fs::write(&manifest_path, &new_text)
            .map_err(|e| err(format!("{}: {e}", manifest_path.display())))?;
        let sig = dir.join("manifest.sig");
        if sig.exists() {
            std::fs::remove_file(&sig).map_err(|e| err(format!("{}: {e}", sig.display())))?;
            stale_signature_removed = true;
        }
    }

    // Check it exactly as the hub will, in the tier that admits everything
    // (so the verdict is about the skill, not about this machine's tier).
    let mut check = config.clone();
    check.tier = crate::policy::Tier::Convenient;
    check.state_dir = std::env::temp_dir().join(format!("hark-skill-build-{}", std::process::id()));
    let engine = crate::sandbox::engine();
    let result = crate::loader::load(dir, &check, &engine, 1_000_000);
    let _ = std::fs::remove_dir_all(&check.state_dir);
    result.map_err(|e| err(format!("the hub would refuse this skill: {}", e.problems)))?;
    Ok(Built {
        module: out,
        bytes: module.len(),
        sha256,
        stale_signature_removed,
    })
}

/// A cargo `--config` that keeps this machine's paths out of the module:
/// panic locations name source files, and without remapping a published
/// skill would carry its author's home directory, and two builds of the same
/// source in two places would differ in their `sha256`. Cargo joins this
/// array to the crate's own `rustflags` (the stack size).
fn remap_paths(dir: &Path) -> String {
    // `dir` is absolute.
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")));
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    let skill = Some(dir.to_path_buf());
    // When several prefixes match, rustc applies the last: the catch-all first.
    let pairs = [
        (home, "~"),
        (cargo_home, "/cargo"),
        (sysroot, "/rustc"),
        (skill, "."),
    ];
    let flags: Vec<String> = pairs
        .into_iter()
        .filter_map(|(from, to)| {
            let from = from?.into_os_string().into_string().ok()?;
            let flag = format!("--remap-path-prefix={from}={to}");
            Some(format!(
                "\"{}\"",
                flag.replace('\\', "\\\\").replace('"', "\\\"")
            ))
        })
        .collect();
    format!(
        "target.wasm32-unknown-unknown.rustflags=[{}]",
        flags.join(", ")
    )
}

fn package_name(cargo_toml: &Path) -> Result<String, SkillCliError> {
    let text = std::fs::read_to_string(cargo_toml).map_err(|e| {
        err(format!(
            "{}: {e}; is this a skill crate?",
            cargo_toml.display()
        ))
    })?;
    let value: toml::Table =
        toml::from_str(&text).map_err(|e| err(format!("{}: {e}", cargo_toml.display())))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(String::from)
        .ok_or_else(|| err(format!("{} has no [package] name", cargo_toml.display())))
}

const SECRET_PREFIX: &str = "ed25519-secret:";

/// `hark skill keygen`: a key pair; the secret file is written 0600.
pub fn keygen(out: &Path) -> Result<String, SkillCliError> {
    if out.exists() {
        return Err(err(format!(
            "{} already exists; keys are never overwritten",
            out.display()
        )));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| err(format!("no randomness from the OS: {e}")))?;
    let pair = KeyPair::from_seed(Seed::new(seed));
    let text = format!(
        "{SECRET_PREFIX}{}\n",
        Base64::encode_to_string(pair.sk.as_ref()).expect("64 bytes encode")
    );
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| err(format!("{}: {e}", out.display())))?
    };
    file.write_all(text.as_bytes())
        .map_err(|e| err(format!("{}: {e}", out.display())))?;
    let public = signing::format_key(&pair.pk);
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(&pub_path, format!("{public}\n"))
        .map_err(|e| err(format!("{}: {e}", PathBuf::from(&pub_path).display())))?;
    Ok(public)
}

fn read_secret(path: &Path) -> Result<SecretKey, SkillCliError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: {} can be read by other users; chmod 600 it",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        err(format!(
            "{} is not a key from `hark skill keygen`",
            path.display()
        ))
    })?;
    let bytes = Base64::decode_to_vec(b64, None)
        .map_err(|_| err(format!("{}: the key is not base64", path.display())))?;
    SecretKey::from_slice(&bytes)
        .map_err(|_| err(format!("{}: not an ed25519 secret key", path.display())))
}

/// `hark skill sign <dir> --key <file>`: writes `manifest.sig`. Refuses to
/// sign a folder whose module does not match its manifest.
pub fn sign(dir: &Path, key: &Path) -> Result<String, SkillCliError> {
    let secret = read_secret(key)?;
    let manifest = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| err(format!("{}: {e}", dir.join("manifest.json").display())))?;
    check_module_hash(dir, &manifest)?;
    let sig = signing::sign(&manifest, &secret);
    let path = dir.join("manifest.sig");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&sig).expect("signatures serialize"),
    )
    .map_err(|e| err(format!("{}: {e}", path.display())))?;
    Ok(sig.signer)
}

fn check_module_hash(dir: &Path, manifest_bytes: &[u8]) -> Result<(), SkillCliError> {
    let manifest = Manifest::from_json(&String::from_utf8_lossy(manifest_bytes))
        .map_err(|e| err(format!("manifest.json: {e}")))?;
    let entry = manifest
        .entrypoint
        .ok_or_else(|| err("manifest.json has no \"entrypoint\""))?;
    let module = std::fs::read(dir.join(&entry)).map_err(|e| err(format!("{entry}: {e}")))?;
    let actual = crate::loader::hex(&Sha256::digest(&module));
    if manifest.sha256.as_deref() != Some(actual.as_str()) {
        return Err(err(format!(
            "{entry} hashes to {actual}, but the manifest says {}; run `hark skill build` first",
            manifest.sha256.as_deref().unwrap_or("nothing")
        )));
    }
    Ok(())
}

/// `hark skill verify <dir> [--key <pub>]`: the signature and the module
/// hash, against `--key` or else the config's `trust.keys`.
pub fn verify(dir: &Path, keys: &[String]) -> Result<String, SkillCliError> {
    let manifest = std::fs::read(dir.join("manifest.json"))
        .map_err(|e| err(format!("{}: {e}", dir.join("manifest.json").display())))?;
    let signature = signing::check(dir, &manifest, keys);
    match signature {
        Signature::Verified { signer } => {
            check_module_hash(dir, &manifest).map_err(|e| {
                err(format!(
                    "the signature by {signer} is good, but the module changed after signing: {e}"
                ))
            })?;
            Ok(format!("ok: signed by {signer}, module matches"))
        }
        Signature::UnknownSigner { signer } => Err(err(format!(
            "signed by {signer}, which is not a trusted key (pass --key, or add it to trust.keys)"
        ))),
        Signature::Unsigned => Err(err("unsigned: no manifest.sig")),
        Signature::Rejected { reason } => Err(err(reason)),
        Signature::NotApplicable => Err(err("not a skill folder")),
    }
}

/// Reads a public key file (`ed25519:...`, as keygen writes `<key>.pub`) or
/// takes the text itself.
pub fn public_key_arg(arg: &str) -> Result<String, SkillCliError> {
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).map_err(|e| err(format!("{arg}: {e}")))?
    } else {
        arg.to_string()
    };
    let key: PublicKey = signing::parse_key(text.trim()).map_err(err)?;
    Ok(signing::format_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_sdk_has_every_source_file() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../skill-sdk/src");
        for entry in std::fs::read_dir(src).unwrap() {
            let name = format!("src/{}", entry.unwrap().file_name().to_string_lossy());
            assert!(
                SDK_FILES.iter().any(|(file, _)| *file == name),
                "{name} is not in SDK_FILES: `hark skill new` would vendor an SDK that does not build"
            );
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hark-skillcli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn keygen_writes_a_private_key_and_never_overwrites_it() {
        use std::os::unix::fs::PermissionsExt;
        let d = temp("keygen");
        let key = d.join("me.key");
        let public = keygen(&key).unwrap();
        assert!(public.starts_with("ed25519:"));
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(d.join("me.key.pub"))
                .unwrap()
                .trim(),
            public
        );
        assert!(keygen(&key).is_err());
        assert!(read_secret(&key).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_scaffold_has_a_manifest_the_hub_accepts_but_for_its_module() {
        let d = temp("new");
        let dir = new("hello.world", &d, None).unwrap();
        let manifest =
            Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest.problems(), Vec::new());
        assert_eq!(manifest.entrypoint.as_deref(), Some("hello_world.wasm"));
        assert!(
            dir.join("hark-skill-sdk/src/guest.rs").exists(),
            "the SDK is vendored"
        );
        assert!(
            new("hello.world", &d, None).is_err(),
            "never over an existing folder"
        );
        assert!(new("Hello", &d, None).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn sign_refuses_a_module_that_does_not_match() {
        let d = temp("sign");
        let key = d.join("k");
        keygen(&key).unwrap();
        std::fs::write(
            d.join("manifest.json"),
            r#"{"name":"x","version":"1.0.0","entrypoint":"x.wasm","sha256":"00"}"#,
        )
        .unwrap();
        std::fs::write(d.join("x.wasm"), b"module").unwrap();
        let e = sign(&d, &key).unwrap_err().to_string();
        assert!(e.contains("hark skill build"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
