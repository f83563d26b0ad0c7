//! `hark satellite acl --mosquitto`: a mosquitto `password_file` and
//! `acl_file` that enforce SPEC §7's table on an external mosquitto.
//!
//! The password file holds mosquitto's own `$7$` hashes (PBKDF2-SHA512, a
//! 12-byte salt), which the registry keeps beside each Argon2id hash because
//! neither can be made from the other. The ACL is written with patterns, so
//! one block serves every satellite: `%u` is the login, which is the
//! satellite id.

use std::fmt::Write;

use super::{Registry, RegistryError, password};

/// PBKDF2 rounds for mosquitto's hashes. mosquitto's own tool uses 101;
/// mosquitto checks a login on its single thread, and the passwords the
/// registry makes are 192 random bits, which no number of rounds protects
/// better than their length does.
const ROUNDS: u32 = 10_000;

/// mosquitto's `$7$<rounds>$<salt>$<hash>` of `secret`, with a fresh salt.
pub fn hash(secret: &str) -> Result<String, RegistryError> {
    hash_with(secret, &password::random::<12>()?, ROUNDS)
}

fn hash_with(secret: &str, salt: &[u8], rounds: u32) -> Result<String, RegistryError> {
    use ct_codecs::{Base64, Encoder};
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(secret.as_bytes(), salt, rounds, &mut out);
    let b64 =
        |b: &[u8]| Base64::encode_to_string(b).map_err(|e| RegistryError::Random(e.to_string()));
    Ok(format!("$7${rounds}${}${}", b64(salt)?, b64(&out)?))
}

/// The logins besides the satellites: the hub's own and the local CLI's,
/// both with the admin secret.
#[derive(Debug)]
pub struct HubLogins<'a> {
    pub prefix: &'a str,
    pub admin_secret: &'a str,
}

/// The `password_file`: the hub, the CLI, then every satellite.
pub fn password_file(registry: &Registry, hub: &HubLogins<'_>) -> Result<String, RegistryError> {
    let mut text = String::new();
    let admin_hash = hash(hub.admin_secret)?;
    let _ = writeln!(text, "{}:{admin_hash}", super::admin::hub_user(hub.prefix));
    let _ = writeln!(text, "{}:{admin_hash}", super::admin::cli_user(hub.prefix));
    for satellite in registry.iter() {
        let _ = writeln!(text, "{}:{}", satellite.id, satellite.mosquitto);
    }
    Ok(text)
}

/// The `acl_file`, the table of SPEC §7 in mosquitto's words, and the
/// Hermes topics for the Rhasspy logins of `registry`.
pub fn acl_file(prefix: &str, registry: &Registry) -> String {
    let mut rhasspy = String::new();
    for satellite in registry.iter().filter(|s| s.hermes) {
        let _ = write!(
            rhasspy,
            "\n# {id}: a Rhasspy login; the site in each payload is for hermes.sites to check.\n\
             user {id}\ntopic readwrite hermes/#\n",
            id = satellite.id
        );
    }
    acl_table(prefix) + &rhasspy
}

fn acl_table(prefix: &str) -> String {
    let hub = super::admin::hub_user(prefix);
    let cli = super::admin::cli_user(prefix);
    format!(
        "# SPEC §7's table. The hub: everything under {prefix}/, and the Hermes topics it answers on.\n\
         user {hub}\n\
         topic readwrite {prefix}/#\n\
         topic readwrite hermes/#\n\
         \n\
         # The local CLI (`hark send`): speaks as any satellite, reads what the hub says.\n\
         user {cli}\n\
         topic write {prefix}/intent/+\n\
         topic write {prefix}/hub/refresh\n\
         topic read {prefix}/reply/+\n\
         topic read {prefix}/event/+\n\
         topic read {prefix}/timers/+\n\
         topic read {prefix}/hub/#\n\
         topic read {prefix}/audit/#\n\
         \n\
         # Every satellite: its login is its id, bound to its own topics.\n\
         pattern write {prefix}/intent/%u\n\
         pattern read {prefix}/reply/%u\n\
         pattern read {prefix}/event/%u\n\
         pattern read {prefix}/timers/%u\n\
         pattern read {prefix}/hub/status\n"
    )
}

const BEGIN: &str =
    "# ---- begin: written by `hark satellite acl --mosquitto`; edits here are lost ----\n";
const END: &str = "# ---- end of Hark's part: your own rules may follow ----\n";
/// The line of Hark's part of the ACL that names the logins Hark wrote into
/// the password file (which cannot hold comments: mosquitto_passwd refuses them).
const LOGINS: &str = "# logins:";

/// The usernames Hark wrote, as an earlier ACL from [`merge_acl`] lists them.
fn logins_in(acl: &str) -> Vec<&str> {
    acl.lines()
        .find_map(|l| l.strip_prefix(LOGINS))
        .map(|names| names.split_whitespace().collect())
        .unwrap_or_default()
}

/// The ACL: `existing` (perhaps with the household's own rules after Hark's
/// part) with Hark's part replaced by `ours`, which names `logins`.
pub fn merge_acl(existing: Option<&str>, ours: &str, logins: &[&str]) -> String {
    let block = format!("{BEGIN}{LOGINS} {}\n{ours}{END}", logins.join(" "));
    let Some(existing) = existing else {
        return block;
    };
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!(
                "{}{block}{}",
                &existing[..start],
                &existing[end + END.len()..]
            )
        }
        _ => format!("{block}{existing}"),
    }
}

/// The password file: Hark's logins (`ours`), then every line of
/// `existing` whose user is not Hark's now and was not Hark's before (as
/// `old_acl` says): Home Assistant's or Zigbee2MQTT's login survives a
/// satellite being added, and a removed satellite's goes.
pub fn merge_passwd(existing: Option<&str>, ours: &str, old_acl: Option<&str>) -> String {
    let mut text = ours.to_string();
    let Some(existing) = existing else {
        return text;
    };
    let ours_now: Vec<&str> = ours
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(u, _)| u)
        .collect();
    let ours_before = old_acl.map(logins_in).unwrap_or_default();
    for line in existing.lines() {
        let user = line.split_once(':').map_or(line, |(u, _)| u);
        if line.trim().is_empty() || ours_now.contains(&user) || ours_before.contains(&user) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// The lines of `mosquitto.conf` that use the two files.
pub fn conf_lines(passwd: &str, acl: &str) -> String {
    format!("allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_what_mosquitto_passwd_writes() {
        // `mosquitto_passwd -c -b pw kitchen secret` (mosquitto 2.0.11) wrote:
        let salt = b"\xfe\x61\xe3\xc1\x35\x0b\x95\x47\xe4\xb5\xf5\xce";
        assert_eq!(
            hash_with("secret", salt, 101).unwrap(),
            "$7$101$/mHjwTULlUfktfXO$gIJTh6tjYMq9ItjzIwZaDBxGLbpyYKigPtf257Eik3DMHPJqn9H7PIZbC9SL\
             5gF685jnzRcN7IoHbYP4mff8Mw=="
        );
    }

    #[test]
    fn a_rewrite_keeps_the_households_own_logins_and_rules() {
        let acl1 = merge_acl(
            None,
            "pattern write hark/intent/%u\n",
            &["hark-hub", "kitchen"],
        );
        let passwd1 = merge_passwd(None, "hark-hub:$7$h\nkitchen:$7$k\n", None);
        // The household adds its own login and rule.
        let passwd = format!("{passwd1}homeassistant:$7$ha\n");
        let acl = format!("{acl1}user homeassistant\ntopic readwrite #\n");
        // kitchen is removed, hall added.
        let acl2 = merge_acl(
            Some(&acl),
            "pattern write hark/intent/%u\n",
            &["hark-hub", "hall"],
        );
        let passwd2 = merge_passwd(Some(&passwd), "hark-hub:$7$h2\nhall:$7$b\n", Some(&acl));
        assert_eq!(passwd2, "hark-hub:$7$h2\nhall:$7$b\nhomeassistant:$7$ha\n");
        assert!(
            acl2.ends_with("user homeassistant\ntopic readwrite #\n"),
            "{acl2}"
        );
        assert!(acl2.contains("# logins: hark-hub hall\n"), "{acl2}");
        assert_eq!(acl2.matches("pattern write").count(), 1, "{acl2}");
    }

    #[test]
    fn the_acl_binds_each_login_to_its_own_topics() {
        let mut registry = Registry::default();
        registry.add_with("rhasspy", None, true).unwrap();
        registry.add("kitchen", None).unwrap();
        let acl = acl_file("home", &registry);
        assert!(
            acl.contains("user rhasspy\ntopic readwrite hermes/#\n"),
            "{acl}"
        );
        assert!(!acl.contains("user kitchen"), "{acl}");
        assert!(acl.contains("user home-hub\ntopic readwrite home/#"));
        assert!(acl.contains("pattern write home/intent/%u\n"));
        assert!(
            !acl.contains("pattern write home/reply"),
            "no satellite writes a reply"
        );
    }
}
