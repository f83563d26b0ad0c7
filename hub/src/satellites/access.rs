//! Which client may use which topic (SPEC §7): the table the embedded
//! broker enforces, the same one [`super::mosquitto::acl_file`] writes for an
//! external mosquitto, and the topics no skill may publish on.

/// Who a connected client is, as the broker's gate decided at CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The hub's own link.
    Hub,
    /// The local CLI holding the admin credential.
    Admin,
    /// A registered satellite; its id is its MQTT username.
    Satellite(String),
    /// A client without credentials, admitted while the broker is open.
    Open,
}

/// What the hub consumes or speaks on with authority: no skill publishes
/// here (SPEC §7). `<prefix>/#` stands first, for the configured prefix.
pub const RESERVED: [&str; 7] = [
    "hermes/intent/#",
    "hermes/nlu/#",
    "hermes/dialogueManager/#",
    "hermes/tts/#",
    "hermes/audioServer/#",
    "hermes/hotword/#",
    "$SYS/#",
];

/// The reserved filter that skill `skill`'s `mqtt.publish` filter (or
/// topic) can reach, if any: `hermes/#`, `#`, `+/intent/+` and
/// `hark/reply/+` all can. A skill's own namespace, `<prefix>/skill/<skill>/#`
/// (SPEC §10), is its to publish in: nothing the hub or a satellite acts on
/// lives there.
pub fn reserved_overlap(filter: &str, prefix: &str, skill: &str) -> Option<String> {
    if within_own_namespace(filter, prefix, skill) {
        return None;
    }
    let own = format!("{prefix}/#");
    std::iter::once(own.as_str())
        .chain(RESERVED)
        .find(|reserved| filters_overlap(filter, reserved))
        .map(str::to_string)
}

/// Whether every topic `filter` matches is under `<prefix>/skill/<skill>/`
/// (or is that level itself). The prefix and the name hold no wildcards, so
/// a filter that starts with them literally cannot match anything else.
pub fn within_own_namespace(filter: &str, prefix: &str, skill: &str) -> bool {
    let own = format!("{prefix}/skill/{skill}");
    filter == own
        || filter
            .strip_prefix(&own)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether some topic matches both MQTT filters. Wildcards in the first
/// level are taken to reach `$` topics too: for refusing, erring wide is right.
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            // `x/#` also matches `x` itself.
            (None, Some(rest)) | (Some(rest), None) => {
                return rest == "#";
            }
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

/// The topic rules of one hub's broker.
#[derive(Debug, Clone)]
pub struct Table {
    prefix: String,
}

impl Table {
    pub fn new(prefix: &str) -> Table {
        Table {
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>/<kind>/<satellite>` → the satellite, for one of `kinds`.
    fn satellite_of<'t>(&self, topic: &'t str, kinds: &[&str]) -> Option<(&'t str, &'t str)> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let (kind, satellite) = rest.split_once('/')?;
        kinds
            .contains(&kind)
            .then_some((kind, satellite))
            .filter(|(_, s)| !s.contains('/'))
    }

    fn status(&self) -> String {
        format!("{}/hub/status", self.prefix)
    }

    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        match who {
            Principal::Hub | Principal::Open => true,
            Principal::Admin => {
                topic == format!("{}/hub/refresh", self.prefix)
                    || self
                        .satellite_of(topic, &["intent"])
                        .is_some_and(|(_, s)| super::check_id(s).is_ok())
            }
            Principal::Satellite(id) => {
                self.satellite_of(topic, &["intent"]).map(|(_, s)| s) == Some(id.as_str())
            }
        }
    }

    pub fn may_subscribe(&self, who: &Principal, filter: &str) -> bool {
        const READS: [&str; 3] = ["reply", "event", "timers"];
        match who {
            Principal::Hub | Principal::Open => true,
            Principal::Admin => {
                filter == self.status()
                    || self
                        .satellite_of(filter, &READS)
                        .is_some_and(|(_, s)| s == "+" || super::check_id(s).is_ok())
                    || [
                        format!("{}/hub/", self.prefix),
                        format!("{}/audit/", self.prefix),
                    ]
                    .iter()
                    .any(|p| filter.starts_with(p.as_str()))
            }
            Principal::Satellite(id) => {
                filter == self.status()
                    || self.satellite_of(filter, &READS).map(|(_, s)| s) == Some(id.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_satellite_speaks_and_hears_only_for_itself() {
        let t = Table::new("hark");
        let kitchen = Principal::Satellite("kitchen".into());
        assert!(t.may_publish(&kitchen, "hark/intent/kitchen"));
        for topic in [
            "hark/intent/hall",
            "hark/intent/kitchen/x",
            "hark/reply/kitchen",
            "hark/hub/status",
            "hark/intent/+",
            "hermes/intent/x",
        ] {
            assert!(!t.may_publish(&kitchen, topic), "{topic}");
        }
        for filter in [
            "hark/reply/kitchen",
            "hark/event/kitchen",
            "hark/timers/kitchen",
            "hark/hub/status",
        ] {
            assert!(t.may_subscribe(&kitchen, filter), "{filter}");
        }
        for filter in [
            "hark/reply/hall",
            "hark/reply/+",
            "hark/#",
            "#",
            "hark/+/kitchen",
            "hark/intent/kitchen",
            "hermes/#",
        ] {
            assert!(!t.may_subscribe(&kitchen, filter), "{filter}");
        }
    }

    #[test]
    fn the_cli_speaks_as_any_satellite_but_never_as_the_hub() {
        let t = Table::new("hark");
        assert!(t.may_publish(&Principal::Admin, "hark/intent/hall"));
        assert!(!t.may_publish(&Principal::Admin, "hark/intent/+"));
        assert!(!t.may_publish(&Principal::Admin, "hark/reply/hall"));
        assert!(!t.may_publish(&Principal::Admin, "hark/hub/status"));
        // `hark status` asks the hub to publish now; a satellite may not.
        assert!(t.may_publish(&Principal::Admin, "hark/hub/refresh"));
        let kitchen = Principal::Satellite("kitchen".into());
        assert!(!t.may_publish(&kitchen, "hark/hub/refresh"));
        assert!(!t.may_subscribe(&kitchen, "hark/hub/metrics"));
        assert!(t.may_subscribe(&Principal::Admin, "hark/reply/hall"));
        assert!(t.may_subscribe(&Principal::Admin, "hark/audit/checkpoint"));
        assert!(!t.may_subscribe(&Principal::Admin, "#"));
        assert!(t.may_publish(&Principal::Hub, "hark/reply/hall"));
    }

    #[test]
    fn filters_that_can_reach_a_reserved_topic_name_it() {
        for (filter, reserved) in [
            ("hermes/#", "hermes/intent/#"),
            ("hermes/intent/+", "hermes/intent/#"),
            ("#", "hark/#"),
            ("hark/reply/+", "hark/#"),
            ("+/lights/set", "hark/#"),
            ("hermes/tts/say", "hermes/tts/#"),
            ("$SYS/broker", "$SYS/#"),
            ("hark", "hark/#"),
            ("hark/skill/+/x", "hark/#"),
            ("hark/skill/lightsout/x", "hark/#"),
            ("hark/skill/#", "hark/#"),
        ] {
            assert_eq!(
                reserved_overlap(filter, "hark", "lights").as_deref(),
                Some(reserved),
                "{filter}"
            );
        }
        for filter in [
            "zigbee2mqtt/+/set",
            "home/lights/#",
            "hermes/led/on",
            "harkness/x",
            "hark/skill/lights",
            "hark/skill/lights/#",
            "hark/skill/lights/state/+",
        ] {
            assert_eq!(reserved_overlap(filter, "hark", "lights"), None, "{filter}");
        }
    }
}
