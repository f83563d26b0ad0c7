//! The commands besides `hark run`: what they do, separate from how `main`
//! parses them, so tests can call them directly.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

pub mod send;

/// Where the config comes from: `--config`, else `HARK_CONFIG`, else
/// `/etc/hark/hark.toml` when it exists, else the built-in defaults.
pub fn load_config(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let chosen = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("HARK_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = chosen {
        return Ok((Config::load(&path)?, Some(path)));
    }
    let system = PathBuf::from("/etc/hark/hark.toml");
    if system.exists() {
        return Ok((Config::load(&system)?, Some(system)));
    }
    Ok((Config::defaults(), None))
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `hark init`: writes the commented default config.
pub fn init(path: &Path, force: bool) -> Result<(), InitError> {
    if path.exists() && !force {
        return Err(InitError::Exists(path.to_path_buf()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| InitError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, crate::config::DEFAULT_CONFIG).map_err(|source| InitError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `hark audit verify`: a line for the person, and whether the log is intact.
pub fn audit_verify(path: &Path) -> (String, bool) {
    match crate::audit::verify(path) {
        Ok(report) => (
            format!(
                "{}: intact, {} records, last seq {}, head {}",
                path.display(),
                report.records,
                report.last_seq,
                &report.last_hash[..report.last_hash.len().min(16)]
            ),
            true,
        ),
        Err(e) => (format!("{}: BROKEN at {e}", path.display()), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let dir = std::env::temp_dir().join(format!("hark-init-{}", std::process::id()));
        let path = dir.join("hark.toml");
        init(&path, false).unwrap();
        assert!(
            Config::load(&path).is_ok(),
            "the written file is a valid config"
        );
        assert!(matches!(init(&path, false), Err(InitError::Exists(_))));
        init(&path, true).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
