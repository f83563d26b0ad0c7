//! The hub's own MQTT logins (SPEC §7): `<prefix>-hub` for the hub and
//! `<prefix>-admin` for the CLI on its machine (`hark send`), both with the
//! secret in `<state_dir>/admin.secret` (0600, the hub's user). Whoever can
//! read that file can already read everything the hub keeps.

use std::path::{Path, PathBuf};

use super::RegistryError;
use crate::config::{Config, Credentials, MqttConfig};

pub const FILE: &str = "admin.secret";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The hub's login name.
pub fn hub_user(prefix: &str) -> String {
    format!("{}-hub", prefix.replace('/', "-"))
}

/// The local CLI's login name.
pub fn cli_user(prefix: &str) -> String {
    format!("{}-admin", prefix.replace('/', "-"))
}

/// The admin secret, if there is one.
pub fn read(state_dir: &Path) -> Result<Option<String>, RegistryError> {
    let path = path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < 16 {
                return Err(RegistryError::Parse {
                    path,
                    message: "the secret is shorter than 16 characters; delete the file and \
                              let the hub make a new one"
                        .into(),
                });
            }
            Ok(Some(secret.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistryError::Read { path, source }),
    }
}

/// The admin secret, made (0600) if there is none yet.
pub fn read_or_create(state_dir: &Path) -> Result<String, RegistryError> {
    if let Some(secret) = read(state_dir)? {
        return Ok(secret);
    }
    crate::fsutil::create_private_dir(state_dir).map_err(|source| RegistryError::Write {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let secret = super::password::generate()?;
    let path = path(state_dir);
    crate::fsutil::write_private(&path, format!("{secret}\n").as_bytes())
        .map_err(|source| RegistryError::Write { path, source })?;
    Ok(secret)
}

/// The login a client of this machine uses when the config names none: the
/// hub's own (`hub`) or the CLI's, with the admin secret, if the secret can
/// be read. An explicit `mqtt.username` always wins.
pub fn login(
    configured: Option<&Credentials>,
    state_dir: &Path,
    prefix: &str,
    hub: bool,
) -> Option<Credentials> {
    if let Some(creds) = configured {
        return Some(creds.clone());
    }
    let secret = read(state_dir).ok().flatten()?;
    Some(Credentials {
        username: if hub {
            hub_user(prefix)
        } else {
            cli_user(prefix)
        },
        password: secret,
    })
}

/// The broker settings the local CLI (`hark send`) connects with: the
/// config's, with the CLI's own login when the config names none.
pub fn cli_mqtt(config: &Config) -> MqttConfig {
    let mut mqtt = config.mqtt.clone();
    mqtt.credentials = login(
        mqtt.credentials.as_ref(),
        &config.state_dir,
        &mqtt.prefix,
        false,
    );
    mqtt
}
