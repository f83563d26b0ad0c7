//! `hark satellite add|list|remove|rotate|acl`: the satellite registry of
//! SPEC §7, from the command line.

use std::fmt::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::config::{Broker, Config};
use crate::protocols::native::topics::Topics;
use crate::satellites::{Registry, RegistryError, admin, mosquitto};

/// A satellite's id must not be one of the hub's own logins.
fn check_free(config: &Config, id: &str) -> Result<(), RegistryError> {
    let prefix = &config.mqtt.prefix;
    if id == admin::hub_user(prefix) || id == admin::cli_user(prefix) {
        return Err(RegistryError::Usage(format!(
            "\"{id}\" is the name of one of the hub's own logins; choose another id"
        )));
    }
    Ok(())
}

/// What a satellite needs to connect: as JSON (`--json`) and as text.
fn settings(config: &Config, id: &str, password: &str) -> Value {
    let topics = Topics::new(&config.mqtt.prefix);
    let (host, port) = config.mqtt.client_target();
    json!({
        "id": id,
        "username": id,
        "password": password,
        "broker": format!("mqtt://{host}:{port}"),
        "topics": {
            "publish": topics.intent(id),
            "reply": topics.reply(id),
            "event": topics.event(id),
            "timers": topics.timers(id),
            "status": topics.status(),
        },
    })
}

fn settings_text(config: &Config, what: &str, settings: &Value) -> String {
    let s = |k: &str| settings[k].as_str().unwrap_or_default().to_string();
    let t = |k: &str| {
        settings["topics"][k]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut text = format!(
        "{what} satellite \"{id}\". Its password is shown only now:\n\n    {password}\n\n\
         MQTT settings for the satellite:\n  \
           broker:    {broker} (from the satellite: this machine's address)\n  \
           username:  {id}\n  \
           password:  (above)\n  \
           publish:   {publish}\n  \
           subscribe: {reply}, {event}, {timers}, {status}\n",
        id = s("id"),
        password = s("password"),
        broker = s("broker"),
        publish = t("publish"),
        reply = t("reply"),
        event = t("event"),
        timers = t("timers"),
        status = t("status"),
    );
    if matches!(config.mqtt.broker, Broker::External { .. }) {
        text.push_str(
            "\nThis hub uses an external broker: update its login and ACL files with\n  \
             sudo hark satellite acl --mosquitto --dir /etc/mosquitto/hark\n\
             and reload mosquitto (`sudo systemctl reload mosquitto`).\n",
        );
    }
    text
}

/// `hark satellite add <id> [--area A] [--hermes] [--json]`.
pub fn add(
    config: &Config,
    id: &str,
    area: Option<&str>,
    hermes: bool,
    as_json: bool,
) -> Result<String, RegistryError> {
    check_free(config, id)?;
    let password = Registry::edit(&config.state_dir, |r| r.add_with(id, area, hermes))?;
    let settings = settings(config, id, &password);
    Ok(if as_json {
        format!("{settings:#}\n")
    } else {
        settings_text(config, "Registered", &settings)
    })
}

/// `hark satellite rotate <id> [--json]`: a new password; the old one stops
/// working and the running hub's broker disconnects the satellite.
pub fn rotate(config: &Config, id: &str, as_json: bool) -> Result<String, RegistryError> {
    let password = Registry::edit(&config.state_dir, |r| r.rotate(id))?;
    let settings = settings(config, id, &password);
    Ok(if as_json {
        format!("{settings:#}\n")
    } else {
        settings_text(config, "New password for", &settings)
    })
}

/// `hark satellite remove <id>`.
pub fn remove(config: &Config, id: &str) -> Result<String, RegistryError> {
    Registry::edit(&config.state_dir, |r| r.remove(id))?;
    let mut text = format!("Removed satellite \"{id}\"; the hub's broker disconnects it now.\n");
    if matches!(config.mqtt.broker, Broker::External { .. }) {
        text.push_str(
            "This hub uses an external broker: run `sudo hark satellite acl --mosquitto --dir \
             /etc/mosquitto/hark` and reload mosquitto to shut it out there.\n",
        );
    }
    Ok(text)
}

/// `hark satellite list [--json]`.
pub fn list(config: &Config, as_json: bool) -> Result<String, RegistryError> {
    let registry = Registry::load(&config.state_dir)?;
    if as_json {
        let rows: Vec<Value> = registry
            .iter()
            .map(|s| {
                json!({"id": s.id, "area": s.area, "hermes": s.hermes,
                       "created": s.created, "last_seen": s.last_seen})
            })
            .collect();
        return Ok(format!("{:#}\n", Value::Array(rows)));
    }
    if registry.is_empty() {
        return Ok(
            "No satellites are registered; add one with `hark satellite add <id>`.\n".into(),
        );
    }
    let mut text = format!(
        "{:<24} {:<16} {:<7} {:<25} {}\n",
        "ID", "AREA", "KIND", "CREATED", "LAST SEEN"
    );
    for s in registry.iter() {
        let _ = writeln!(
            text,
            "{:<24} {:<16} {:<7} {:<25} {}",
            s.id,
            s.area.as_deref().unwrap_or("-"),
            if s.hermes { "rhasspy" } else { "native" },
            s.created,
            s.last_seen.as_deref().unwrap_or("never")
        );
    }
    Ok(text)
}

/// `hark satellite acl --mosquitto [--dir D]`: the password and ACL files
/// for an external mosquitto, printed, or written to `D/passwd` and `D/acl`
/// (0640, for mosquitto's group to read) with the `mosquitto.conf` lines that
/// use them. Makes the admin secret if there is none, since the files give
/// the hub and the CLI their logins.
pub fn acl(config: &Config, dir: Option<&Path>) -> Result<String, RegistryError> {
    let registry = Registry::load(&config.state_dir)?;
    let admin_secret = admin::read_or_create(&config.state_dir)?;
    let logins = mosquitto::HubLogins {
        prefix: &config.mqtt.prefix,
        admin_secret: &admin_secret,
    };
    let passwd = mosquitto::password_file(&registry, &logins)?;
    let acl = mosquitto::acl_file(&config.mqtt.prefix, &registry);
    let Some(dir) = dir else {
        return Ok(format!(
            "# ---- password_file ----\n{passwd}\n# ---- acl_file ----\n{acl}"
        ));
    };
    let read = |name: &str| -> Result<Option<String>, RegistryError> {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RegistryError::Read { path, source }),
        }
    };
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf, RegistryError> {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let fail = |source| RegistryError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        crate::fsutil::write_atomic(&path, text.as_bytes()).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).map_err(fail)?;
        give_to_mosquitto(&path);
        Ok(path)
    };
    let (old_passwd, old_acl) = (read("passwd")?, read("acl")?);
    let logins: Vec<&str> = passwd
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(user, _)| user)
        .collect();
    let passwd_path = write(
        "passwd",
        &mosquitto::merge_passwd(old_passwd.as_deref(), &passwd, old_acl.as_deref()),
    )?;
    let acl_path = write(
        "acl",
        &mosquitto::merge_acl(old_acl.as_deref(), &acl, &logins),
    )?;
    Ok(format!(
        "wrote {} and {}.\nAdd these lines to mosquitto's config (e.g. a file in \
         /etc/mosquitto/conf.d/), under the listener the satellites use, then reload mosquitto:\n\n{}\n\
         With mqtt.username empty, the hub logs in as \"{}\" with the admin secret.\n",
        passwd_path.display(),
        acl_path.display(),
        mosquitto::conf_lines(
            &passwd_path.display().to_string(),
            &acl_path.display().to_string()
        ),
        admin::hub_user(&config.mqtt.prefix),
    ))
}

/// mosquitto 2 reads its password and ACL files as the `mosquitto` user
/// (and warns about files others may read): when root writes them, they go
/// to that user, if this machine has it.
fn give_to_mosquitto(path: &Path) {
    // SAFETY: geteuid has no preconditions; getpwnam gets a NUL-terminated
    // name and its result is read at once, before any other call could reuse it.
    unsafe {
        if libc::geteuid() != 0 {
            return;
        }
        let user = libc::getpwnam(c"mosquitto".as_ptr());
        if user.is_null() {
            return;
        }
        let (uid, gid) = ((*user).pw_uid, (*user).pw_gid);
        if let Err(e) = std::os::unix::fs::chown(path, Some(uid), Some(gid)) {
            eprintln!("warning: cannot hand {} to mosquitto: {e}", path.display());
        }
    }
}
