//! The hub's secret store: `<state_dir>/secrets.toml`, a flat table of
//! `id = "value"`, readable by the hub's user only. A skill reads one id it
//! declared (`secrets.read:<id>`) and was granted. Secrets never come from
//! the process environment.

use std::path::Path;

/// The value of secret `id`, `None` when the store lacks it (or does not exist).
pub fn read(path: &Path, id: &str) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the secret store: {e}")),
    };
    warn_if_readable_by_others(path);
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("the secret store {} is not valid TOML: {e}", path.display()))?;
    match table.get(id) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "the secret \"{id}\" in the secret store is not a string"
        )),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "the secret store {} can be read by other users; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_by_id() {
        let path = std::env::temp_dir().join(format!("hark-secrets-{}.toml", std::process::id()));
        std::fs::write(&path, "weather_api = \"abc123\"\nnumber = 5\n").unwrap();
        assert_eq!(
            read(&path, "weather_api").unwrap().as_deref(),
            Some("abc123")
        );
        assert_eq!(read(&path, "missing").unwrap(), None);
        assert!(read(&path, "number").is_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read(&path, "weather_api").unwrap(), None);
    }
}
