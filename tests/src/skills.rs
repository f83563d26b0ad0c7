//! Skill fixtures: the SDK's example skills (built to wasm by the test
//! command) and hand-written WebAssembly text for the hostile cases.

use std::path::{Path, PathBuf};

use ed25519_compact::{KeyPair, Seed};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The example skill `name`, built for wasm32. Fails loudly when missing.
pub fn example_wasm(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../skill-sdk/examples/target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "the example skill {name} is not built ({}: {e}); build the fixtures with \
             `cargo build --release --target wasm32-unknown-unknown --manifest-path \
             skill-sdk/examples/Cargo.toml` (the README's test command, ./test.sh, does this)",
            path.display()
        )
    })
}

/// The example skill's manifest as shipped in the SDK.
pub fn example_manifest(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../skill-sdk/examples")
        .join(name)
        .join("manifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Compiles WebAssembly text.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| panic!("fixture does not assemble: {e}\n{text}"))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `<skills>/<name>/` with `manifest` (abi, entrypoint and sha256
/// filled in unless already there) and the module. Returns the folder.
pub fn install(skills: &Path, name: &str, mut manifest: Value, module: &[u8]) -> PathBuf {
    let dir = skills.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let m = manifest.as_object_mut().unwrap();
    m.entry("name").or_insert(json!(name));
    m.entry("version").or_insert(json!("1.0.0"));
    m.entry("abi").or_insert(json!(1));
    m.entry("entrypoint").or_insert(json!("skill.wasm"));
    m.entry("sha256").or_insert(json!(sha256_hex(module)));
    let entry = m["entrypoint"].as_str().unwrap().to_string();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(entry), module).unwrap();
    dir
}

/// A deterministic key pair for tests.
pub fn test_key(n: u8) -> KeyPair {
    KeyPair::from_seed(Seed::new([n; 32]))
}

/// `ed25519:<base64>` of `key`'s public half, for `trust.keys`.
pub fn public_key(key: &KeyPair) -> String {
    hark_hub::signing::format_key(&key.pk)
}

/// Signs the skill folder `dir` as `hark skill sign` does.
pub fn sign(dir: &Path, key: &KeyPair) {
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    let sig = hark_hub::signing::sign(&manifest, &key.sk);
    std::fs::write(dir.join("manifest.sig"), serde_json::to_vec(&sig).unwrap()).unwrap();
}

/// A module whose `hark_handle` runs `body` (leaving an i32 status on the
/// stack) and answers `{"speech": "ok" | "denied" | "not_found" | "too_large"
/// | "invalid" | "unsupported" | "other"}` for it. `data` are extra
/// `(offset, bytes)` segments from offset 1024 up; the heap starts at 64 KiB.
pub fn probe(imports: &str, body: &str, data: &[(u32, &str)]) -> String {
    let answers = [
        (0, "ok"),
        (-1, "not_found"),
        (-2, "denied"),
        (-3, "invalid"),
        (-4, "too_large"),
        (-5, "unsupported"),
        (-6, "limit"),
    ];
    let mut segments = String::new();
    let mut branches = String::new();
    for (i, (code, word)) in answers.iter().enumerate() {
        let text = format!("{{\"speech\":\"{word}\"}}");
        let offset = i * 64;
        segments.push_str(&format!(
            "(data (i32.const {offset}) \"{}\")\n",
            text.replace('"', "\\\"")
        ));
        let packed = ((offset as u64) << 32) | text.len() as u64;
        branches.push_str(&format!(
            "(if (i32.eq (local.get $rc) (i32.const {code})) (then (return (i64.const {packed}))))\n"
        ));
    }
    let other = "{\"speech\":\"other\"}";
    segments.push_str(&format!(
        "(data (i32.const 512) \"{}\")\n",
        other.replace('"', "\\\"")
    ));
    for (offset, text) in data {
        segments.push_str(&format!("(data (i32.const {offset}) \"{text}\")\n"));
    }
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  {segments}
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 65536))
  (func $answer (param $rc i32) (result i64)
    {branches}
    (i64.const {other_packed}))
  (func (export "hark_handle") (param i32 i32) (result i64)
    {body}
    (call $answer))
)"#,
        other_packed = (512u64 << 32) | other.len() as u64
    )
}

/// A well-behaved module that counts calls in its own memory and says the
/// count: fresh instances always say 1.
pub const COUNTER: &str = r#"(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"speech\":\"count 0\"}")
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hark_handle") (param i32 i32) (result i64)
    ;; bump the digit at offset 17 (the '0' in "count 0")
    (i32.store8 (i32.const 17) (i32.add (i32.load8_u (i32.const 17)) (i32.const 1)))
    (i64.const 20)))"#;

/// Hostile and broken modules, each with what should happen to it.
pub mod hostile {
    /// Spins forever in `hark_handle`.
    pub const INFINITE_LOOP: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64)
        (loop $forever (br $forever))
        (i64.const 0)))"#;

    /// Grows memory a page at a time until something gives.
    pub const MEMORY_BOMB: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64)
        (loop $grow (drop (memory.grow (i32.const 16))) (br $grow))
        (i64.const 0)))"#;

    /// Recurses without end.
    pub const RECURSION: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
      (func (export "hark_handle") (param i32 i32) (result i64)
        (drop (call $down (i32.const 0)))
        (i64.const 0)))"#;

    /// Claims a 1 MiB reply (inside its 2 MiB memory).
    pub const HUGE_OUTPUT: &str = r#"(module
      (memory (export "memory") 32)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64)
        (i64.const 1048576)))"#;

    /// Passes a pointer far outside its memory to a host function.
    pub const WILD_POINTER: &str = r#"(module
      (import "hark" "log" (func $log (param i32 i32 i32)))
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64)
        (call $log (i32.const 2) (i32.const 2147483000) (i32.const 4096))
        (i64.const 0)))"#;

    /// Imports kv_get; installed with no permissions.
    pub const UNDECLARED_IMPORT: &str = r#"(module
      (import "hark" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64) (i64.const 0)))"#;

    /// Runs code at instantiation.
    pub const START_FUNCTION: &str = r#"(module
      (memory (export "memory") 1)
      (func $boot)
      (start $boot)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64) (i64.const 0)))"#;

    /// Traps at once.
    pub const TRAP: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "hark_handle") (param i32 i32) (result i64) (unreachable)))"#;
}

/// A module whose `hark_handle` runs `body` over and over and never returns,
/// as a skill written only to burn host calls would. `body` leaves nothing on
/// the stack; it may read and bump the local `$i` (the round, from 0). `data`
/// are `(offset, bytes)` segments from offset 1024 up; offsets 8192..65536 are
/// free scratch space (zeros); the input lands at 64 KiB.
pub fn host_loop(imports: &str, body: &str, data: &[(u32, &str)]) -> String {
    let segments: String = data
        .iter()
        .map(|(offset, text)| format!("(data (i32.const {offset}) \"{text}\")\n"))
        .collect();
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 2)
  {segments}
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 65536))
  (func (export "hark_handle") (param i32 i32) (result i64)
    (local $i i32)
    (loop $again
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again))
    (i64.const 0))
)"#
    )
}
