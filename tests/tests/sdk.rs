//! A skill author's path, as the SDK's README tells it, and the example
//! skills at work under the tier each needs; signatures that were tampered
//! with are refused at load, each with its own reason.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::skills::{self, example_manifest, example_wasm, install};
use hark_tests::{Hub, PATIENCE, Satellite, Setup, TempDir, runtime};
use serde_json::{Value, json};

fn hark(dir: &Path, args: &[&str]) -> String {
    let out = hark_tests::run_hark(dir, args);
    let text = hark_tests::text(&out.stdout) + &hark_tests::text(&out.stderr);
    assert!(out.status.success(), "hark {args:?} failed:\n{text}");
    text
}

fn trusted_hub(state: &Path, skills_dir: &Path, key: &str, grants: &str) -> Hub {
    Hub::start_with(
        state,
        &Setup {
            top: "tier = \"trusted\"".into(),
            tables: format!(
                "[skills]\ndir = \"{}\"\n[trust]\nkeys = [\"{key}\"]\n[grants]\n{grants}\n",
                skills_dir.display()
            ),
            ..Setup::default()
        },
    )
}

/// The five-minute tutorial in skill-sdk/README.md, step by step.
#[test]
fn the_tutorial_takes_a_new_skill_from_scaffold_to_a_signed_reply() {
    let work = TempDir::new("tutorial");
    let dir = work.path();
    let started = Instant::now();

    // 1. Scaffold, 2. (the handler as generated), 3. build.
    hark(dir, &["skill", "new", "hello"]);
    let built = hark(dir, &["skill", "build", "hello"]);
    assert!(built.contains("the hub would load it"), "{built}");
    let build_done = started.elapsed();
    // Panic locations name source files: none may name this machine's paths.
    let module = std::fs::read_dir(dir.join("hello"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
        .expect("the build put the module beside the manifest");
    let module = std::fs::read(module).unwrap();
    let home = std::env::var("HOME").unwrap_or_default();
    let canonical = std::fs::canonicalize(dir).unwrap();
    for path in [dir.to_str().unwrap(), canonical.to_str().unwrap(), &home] {
        let path = path.trim_end_matches('/');
        assert!(
            path.len() < 2 || !module.windows(path.len()).any(|w| w == path.as_bytes()),
            "the module names the build machine's path {path}"
        );
    }

    // 4. A key, 5. sign.
    let keygen = hark(dir, &["skill", "keygen", "--out", "me.key"]);
    let public = keygen
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("keygen prints the public key")
        .to_string();
    hark(dir, &["skill", "sign", "hello", "--key", "me.key"]);
    assert!(
        hark(dir, &["skill", "verify", "hello", "--key", "me.key.pub"])
            .starts_with("ok: signed by")
    );

    // 6. Install the three files into skills.dir.
    let skills_dir = dir.join("skills/hello");
    std::fs::create_dir_all(&skills_dir).unwrap();
    for file in ["manifest.json", "manifest.sig", "hello.wasm"] {
        std::fs::copy(dir.join("hello").join(file), skills_dir.join(file)).unwrap();
    }

    // 7. Trust the key, run the hub, 8. send the intent.
    let state = TempDir::new("tutorial-state");
    let hub = trusted_hub(state.path(), &dir.join("skills"), &public, "");
    let config = dir.join("send.toml");
    std::fs::write(
        &config,
        // The hub's own state dir: `hark send` logs in with its admin secret.
        format!(
            "state_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n",
            state.path(),
            hub.port
        ),
    )
    .unwrap();
    let reply = hark(
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "send",
            "kitchen",
            "hello",
            "who=Ada",
        ],
    );
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["speech"], "Hello, Ada!");
    eprintln!(
        "tutorial: scaffold + build {build_done:?}, to first reply {:?}",
        started.elapsed()
    );
    hub.stop().unwrap();
}

/// Installs dice signed by `key` into a fresh skills dir.
fn signed_dice(skills_dir: &Path, key: &ed25519_compact::KeyPair) -> std::path::PathBuf {
    let mut manifest = example_manifest("dice");
    manifest["entrypoint"] = json!("dice.wasm");
    let dir = install(skills_dir, "dice", manifest, &example_wasm("dice"));
    skills::sign(&dir, key);
    dir
}

/// Tampers with a signed dice, starts a trusted hub, and returns the reply
/// to a dice request and the skill's status entry; checks the hub still
/// serves built-ins.
fn tampered(name: &str, tamper: impl FnOnce(&Path)) -> (Value, Value) {
    let (state, skills_dir) = (TempDir::new(name), TempDir::new(&format!("{name}-skills")));
    let key = skills::test_key(11);
    let dir = signed_dice(skills_dir.path(), &key);
    tamper(&dir);
    let hub = trusted_hub(
        state.path(),
        skills_dir.path(),
        &skills::public_key(&key),
        "",
    );
    let result = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("dice", json!({})).await;
        assert_eq!(
            sat.request("system.cancel", json!({})).await["status"],
            "ok",
            "still serving"
        );
        let mut watcher = Satellite::connect_as(hub.port, &hub.prefix, "watch").await;
        watcher.subscribe("hark/hub/status").await;
        let status = watcher.next_message(PATIENCE).await.unwrap().1;
        let entry = status["skills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "dice")
            .cloned()
            .unwrap();
        (reply, entry)
    });
    hub.stop().unwrap();
    result
}

fn refused_because(reply: &Value, entry: &Value, says: &str) {
    assert_eq!(reply["status"], "denied", "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains(says),
        "{reply}"
    );
    assert_eq!(entry["enabled"], false, "{entry}");
    assert!(entry["reason"].as_str().unwrap().contains(says), "{entry}");
}

#[test]
fn a_signed_skill_that_nobody_touched_runs() {
    let (reply, entry) = tampered("sig-ok", |_| {});
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(entry["enabled"], true);
}

#[test]
fn a_module_changed_after_signing_is_refused() {
    let (reply, entry) = tampered("sig-module", |dir| {
        let path = dir.join("dice.wasm");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    });
    refused_because(&reply, &entry, "changed after signing");
}

#[test]
fn a_manifest_edited_after_signing_is_refused() {
    let (reply, entry) = tampered("sig-manifest", |dir| {
        let path = dir.join("manifest.json");
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        manifest["permissions"]
            .as_array_mut()
            .unwrap()
            .push(json!("kv"));
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    });
    refused_because(&reply, &entry, "bad signature");
}

#[test]
fn a_skill_signed_by_a_key_not_in_trust_keys_is_refused() {
    let (reply, entry) = tampered("sig-stranger", |dir| {
        skills::sign(dir, &skills::test_key(12))
    });
    refused_because(&reply, &entry, "which is not there");
}

#[test]
fn a_truncated_or_garbage_signature_is_refused() {
    let (reply, entry) = tampered("sig-truncated", |dir| {
        let path = dir.join("manifest.sig");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    refused_because(&reply, &entry, "not a signature file");
    let (reply, entry) = tampered("sig-garbage", |dir| {
        std::fs::write(dir.join("manifest.sig"), [0xde, 0xad, 0xbe, 0xef]).unwrap();
    });
    refused_because(&reply, &entry, "not a signature file");
}

fn install_signed_example(skills_dir: &Path, name: &str, key: &ed25519_compact::KeyPair) {
    let mut manifest = example_manifest(name);
    manifest["entrypoint"] = json!(format!("{name}.wasm"));
    // An example's own budget (tea asks for 300 ms) is a claim about a Pi's
    // speed; these tests check what the skill does, also under qemu on a busy
    // machine, so they give it the hub's whole budget.
    if let Some(limits) = manifest.get_mut("limits") {
        limits["timeout_ms"] = json!(1500);
    }
    let dir = install(skills_dir, name, manifest, &example_wasm(name));
    skills::sign(&dir, key);
}

#[test]
fn the_shopping_list_survives_a_hub_restart() {
    let (state, skills_dir) = (TempDir::new("shopping"), TempDir::new("shopping-skills"));
    let key = skills::test_key(13);
    install_signed_example(skills_dir.path(), "shopping_list", &key);
    let public = skills::public_key(&key);
    let hub = trusted_hub(state.path(), skills_dir.path(), &public, "");
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let add = |item: &str| json!({"action": "add", "item": item});
        assert_eq!(
            kitchen.request("shopping_list", add("milk")).await["speech"],
            "Added milk to the shopping list."
        );
        assert_eq!(
            kitchen.request("shopping_list", add("eggs")).await["speech"],
            "Added eggs to the shopping list."
        );
        assert_eq!(
            kitchen.request("shopping_list", add("Milk")).await["speech"],
            "Milk is already on the shopping list."
        );
    });
    hub.stop().unwrap();

    let hub = trusted_hub(state.path(), skills_dir.path(), &public, "");
    runtime().block_on(async {
        let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
        let reply = hall
            .request("shopping_list", json!({"action": "list"}))
            .await;
        assert_eq!(
            reply["speech"], "The shopping list has milk and eggs.",
            "{reply}"
        );
        assert_eq!(reply["data"], json!(["milk", "eggs"]));
        let reply = hall
            .request("shopping_list", json!({"action": "clear"}))
            .await;
        assert_eq!(reply["speech"], "The shopping list is empty now.");
        let reply = hall
            .request("shopping_list", json!({"action": "add"}))
            .await;
        assert_eq!(
            (reply["status"].as_str(), reply["speech"].as_str()),
            (Some("error"), Some("Which item?"))
        );
    });
    hub.stop().unwrap();
}

#[test]
fn lights_publishes_only_inside_its_grant() {
    let (state, skills_dir) = (TempDir::new("lights"), TempDir::new("lights-skills"));
    let key = skills::test_key(14);
    install_signed_example(skills_dir.path(), "lights", &key);
    let public = skills::public_key(&key);

    // Without the grant the trusted tier refuses to load it.
    let hub = trusted_hub(state.path(), skills_dir.path(), &public, "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("lights", json!({"room": "kitchen", "state": "off"}))
            .await;
        assert_eq!(reply["status"], "denied", "{reply}");
    });
    hub.stop().unwrap();

    let grant = "lights = [\"mqtt.publish:home/lights/+/set\"]";
    let hub = trusted_hub(state.path(), skills_dir.path(), &public, grant);
    runtime().block_on(async {
        let mut bulbs = Satellite::connect_as(hub.port, &hub.prefix, "bulbs").await;
        bulbs.subscribe("#").await;
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("lights", json!({"room": "living_room", "brightness": 50}))
            .await;
        assert_eq!(
            reply["speech"], "Set the living room lights to 50 percent.",
            "{reply}"
        );
        let body = bulbs
            .wait_for(PATIENCE, |t, _| t == "home/lights/living_room/set")
            .await
            .expect("the bulb hears it on its own topic");
        assert_eq!(body, json!({"state": "ON", "brightness": 127}));
        // A room that would leave the filter never passes the schema.
        let reply = sat
            .request("lights", json!({"room": "../../hark/reply", "state": "on"}))
            .await;
        assert_eq!(reply["status"], "invalid");
        let stray = bulbs
            .wait_for(Duration::from_millis(300), |t, _| t.starts_with("home/"))
            .await;
        assert!(stray.is_none(), "nothing else reached home/: {stray:?}");
    });
    hub.stop().unwrap();
}

#[test]
fn tea_chimes_on_the_satellite_and_starts_a_labelled_timer() {
    let (state, skills_dir) = (TempDir::new("tea"), TempDir::new("tea-skills"));
    let key = skills::test_key(15);
    install_signed_example(skills_dir.path(), "tea", &key);
    let hub = trusted_hub(
        state.path(),
        skills_dir.path(),
        &skills::public_key(&key),
        "",
    );
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = kitchen.request("tea", json!({"kind": "green"})).await;
        assert_eq!(
            reply["speech"], "Steeping green tea for 2 minutes.",
            "{reply}"
        );
        let started = kitchen.event("timer_started", PATIENCE).await;
        assert_eq!(
            (started["label"].as_str(), started["total_s"].as_u64()),
            (Some("green tea"), Some(120))
        );
        let chime = kitchen.event("playback_started", PATIENCE).await;
        assert_eq!(
            (chime["sound"].as_str(), chime["target"].as_str()),
            (Some("chime"), Some("satellite"))
        );
        let reply = kitchen
            .request("system.cancel", json!({"label": "green tea"}))
            .await;
        assert_eq!(
            reply["speech"], "Cancelled the green tea timer.",
            "a skill's timer is an ordinary timer"
        );
    });
    hub.stop().unwrap();
}

/// Every byte of a module is parsed, validated and compiled by the hub at
/// load, on a Pi: the examples, and `dice` above all, stay under 64 KiB.
/// Module size does not depend on the machine, only on the SDK and the
/// toolchain, so this is a budget, not a timing.
#[test]
fn the_example_modules_stay_under_64_kib() {
    let sizes: Vec<(&str, usize)> = ["dice", "shopping_list", "lights", "tea"]
        .into_iter()
        .map(|name| (name, example_wasm(name).len()))
        .collect();
    eprintln!("module sizes: {sizes:?}");
    for (name, _) in &sizes {
        // Every initial page is allocated and zeroed on every call.
        let pages = initial_memory_pages(&example_wasm(name));
        eprintln!("{name}: {pages} initial pages");
        assert!(
            pages <= 2,
            "{name}.wasm starts with {pages} pages of memory: was it built without its \
             64 KiB stack (-zstack-size=65536 in .cargo/config.toml)?"
        );
    }
    for (name, size) in sizes {
        assert!(
            size < 64 * 1024,
            "{name}.wasm is {size} bytes; the SDK's JSON reader (skill-sdk/src/de.rs) exists to keep \
             serde_json's error formatting out of modules: is something pulling it back in?"
        );
    }
}

/// The minimum of the module's memory, from its memory section (id 5).
fn initial_memory_pages(module: &[u8]) -> u64 {
    fn leb(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                return value;
            }
        }
    }
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(module, &mut at) as usize;
        if id == 5 {
            let mut inner = at;
            let _count = leb(module, &mut inner);
            let _flags = module[inner];
            inner += 1;
            return leb(module, &mut inner);
        }
        at += size;
    }
    panic!("the module defines no memory")
}
