//! Cheap, deterministic fuzzing of the parsers that read the network and the
//! disk: thousands of mutated inputs, each must come out as a clear answer,
//! never a panic. (A coverage-guided fuzzer needs a nightly toolchain; these
//! run on every CI build.)

use std::path::Path;

use hark_hub::Config;
use hark_hub::protocols::native;
use hark_skill_sdk::{Manifest, Status};
use hark_tests::TempDir;

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Flips, inserts, deletes and splices bytes of `seed`, with JSON-ish tokens.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"null",
        b"true",
        b"1e999",
        b"-0",
        b"\\u0000",
        b"\xff",
        b"\"id\"",
        b"\"intent\"",
        b"\"args\"",
        b"{}",
        b"\"timer.set\"",
        b"\"duration\"",
    ];
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(6) {
        let at = if out.is_empty() {
            0
        } else {
            rng.below(out.len())
        };
        match rng.below(5) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => {
                out.remove(at);
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 => out.insert(at, rng.next() as u8),
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn mutated_payloads_always_get_exactly_one_clear_reply() {
    let state = TempDir::new("fuzz-dispatch");
    let text = format!(
        "state_dir = \"{}\"\n[audio]\nbackend = \"null\"\n",
        state.path().display()
    );
    let config = Config::from_toml(&text, Path::new("fuzz.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let assembly = rt
        .block_on(async { hark_hub::hub::assemble(&config) })
        .unwrap();
    let d = assembly.dispatcher.clone();
    let seeds: [&[u8]; 4] = [
        br#"{"id":"r-1","intent":"timer.set","args":{"duration":"5m","label":"pasta"}}"#,
        br#"{"id":"r-2","intent":"system.cancel","args":{"target":"timer","label":"tea"}}"#,
        br#"{"id":"r-3","intent":"audio.play","args":{"sound":"chime","volume":0.5}}"#,
        br#"{"id":"r-4","intent":"timer.set","text":"five minutes","confidence":0.9,"args":{}}"#,
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..3000 {
        let payload = mutate(&mut rng, seeds[i % seeds.len()]);
        let reply = rt.block_on(native::answer(&d, "fuzz", &payload));
        *statuses.entry(reply.status.as_str()).or_insert(0) += 1;
        if reply.status != Status::Ok {
            let error = reply.error.expect("every failure carries an error body");
            assert!(!error.code.as_str().is_empty() && !error.message.is_empty());
        }
        assert!(reply.audit.is_some(), "every request is audited");
    }
    // Keep the timer table from filling with the survivors.
    rt.block_on(native::answer(
        &d,
        "fuzz",
        br#"{"id":"x","intent":"system.cancel","args":{"target":"all"}}"#,
    ));
    assert!(
        statuses.contains_key("invalid") && statuses.len() >= 2,
        "{statuses:?}"
    );
    let verify = hark_hub::audit::verify(&state.path().join("audit.jsonl"));
    assert!(
        verify.is_ok(),
        "the audit chain survives 3000 hostile requests: {verify:?}"
    );
}

#[test]
fn mutated_manifests_are_parsed_or_refused_with_a_reason() {
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/timer.set.json"))
            .unwrap();
    let mut rng = Rng(0x0ddb_a11c_0ffe_e000);
    let mut parsed = 0;
    for _ in 0..5000 {
        let text = String::from_utf8_lossy(&mutate(&mut rng, &seed)).into_owned();
        match Manifest::from_json(&text) {
            Ok(m) => {
                parsed += 1;
                for p in m.problems() {
                    assert!(!p.field.is_empty() && !p.message.is_empty());
                }
                let _ = hark_hub::registry::ArgsSchema::compile(m.args_schema.clone());
            }
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
    assert!(parsed > 0, "some mutations stay valid JSON");
}

#[test]
fn mutated_config_files_are_loaded_or_refused_naming_the_problem() {
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hark.example.toml")).unwrap();
    let mut rng = Rng(0xc0ff_1600_dead_beef);
    for _ in 0..3000 {
        let text = String::from_utf8_lossy(&mutate(&mut rng, &seed)).into_owned();
        if let Err(e) = Config::from_toml(&text, Path::new("hark.toml")) {
            let message = e.to_string();
            assert!(
                message.contains("hark.toml") || message.starts_with("config "),
                "{message}"
            );
        }
    }
}

#[test]
fn mutated_checkpoints_and_proofs_are_refused_with_a_reason_unless_they_still_verify() {
    use hark_hub::audit::checkpoint::{Checkpoint, open_note, origin, split_notes};
    let key = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32])).sk;
    let pk = key.public_key();
    let note = Checkpoint {
        origin: origin(&pk),
        size: 1042,
        root: [9; 32],
    }
    .sign(&key);
    let proof = serde_json::json!({
        "seq": 3, "record": "{\"seq\":3}", "tree_size": 1042,
        "proof": ["CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk="], "checkpoint": note,
    })
    .to_string();
    let mut rng = Rng(0xc0ff_ee00_1234_5678);
    let mut still_valid = 0;
    for _ in 0..5000 {
        let text = String::from_utf8_lossy(&mutate(&mut rng, note.as_bytes())).into_owned();
        for (_, n) in split_notes(&text) {
            match open_note(&n, &pk) {
                // A mutation the signature survives changed nothing it covers.
                Ok(cp) => {
                    still_valid += 1;
                    assert_eq!((cp.size, cp.root), (1042, [9; 32]));
                }
                Err(reason) => assert!(!reason.is_empty()),
            }
        }
        let bent = mutate(&mut rng, proof.as_bytes());
        match hark_hub::audit::proof::verify_proof(&bent, &pk) {
            Ok(line) => panic!("a made-up proof held: {line}"),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
    assert!(
        still_valid > 0,
        "mutations of the signature lines alone leave it valid"
    );
}
