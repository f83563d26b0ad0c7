//! What the criterion benches share: a hub assembled in-process, without
//! the network, in a state dir of its own.

use std::path::{Path, PathBuf};

use hark_hub::Config;
use hark_hub::hub::{Assembly, assemble};

/// A hub's parts as `hark run` builds them (no broker, no protocol loop),
/// with the runtime they run on; the state dir is removed on drop.
#[derive(Debug)]
pub struct Bench {
    pub assembly: Assembly,
    pub rt: tokio::runtime::Runtime,
    state: PathBuf,
}

impl Bench {
    /// A hub with state dir `state`, no sound card, `top` before the first
    /// table (`tier = ...`) and `tables` after `[audio]`.
    pub fn assemble(state: &Path, top: &str, tables: &str) -> Bench {
        let text = format!(
            "{top}state_dir = \"{}\"\n[audio]\nbackend = \"null\"\n{tables}",
            state.display()
        );
        let config = Config::from_toml(&text, Path::new("bench.toml"))
            .unwrap_or_else(|e| panic!("bench config: {e}\n{text}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let assembly = rt.block_on(async { assemble(&config) }).unwrap();
        Bench {
            assembly,
            rt,
            state: state.to_path_buf(),
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A fresh, empty folder under the temp dir for bench `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hark-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
