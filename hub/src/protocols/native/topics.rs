//! The native protocol's topic names (SPEC §2), built from `mqtt.prefix`.
//!
//! The satellite id comes from the topic, never the payload, so a broker ACL
//! that binds a satellite's credentials to its own topics binds its identity.

/// Longest satellite id.
pub const MAX_SATELLITE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What an incoming topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `<prefix>/intent/<sat>` with a well-formed satellite id.
    Intent { satellite: &'a str },
    /// `<prefix>/intent/<sat>` whose satellite id breaks the rules. `reply_to`
    /// is where the complaint can go, when the id can be part of a topic.
    BadSatellite {
        raw: &'a str,
        reason: String,
        reply_to: Option<String>,
    },
    /// Not one of ours.
    Other,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subscription that receives every satellite's intents.
    pub fn intent_filter(&self) -> String {
        format!("{}/intent/+", self.prefix)
    }

    pub fn intent(&self, satellite: &str) -> String {
        format!("{}/intent/{satellite}", self.prefix)
    }

    pub fn reply(&self, satellite: &str) -> String {
        format!("{}/reply/{satellite}", self.prefix)
    }

    pub fn event(&self, satellite: &str) -> String {
        format!("{}/event/{satellite}", self.prefix)
    }

    /// Where the satellite's current timers are retained.
    pub fn timers(&self, satellite: &str) -> String {
        format!("{}/timers/{satellite}", self.prefix)
    }

    pub fn status(&self) -> String {
        format!("{}/hub/status", self.prefix)
    }

    /// Where the local admin (`hark status`) asks the hub to publish its
    /// status and metrics now.
    pub fn refresh(&self) -> String {
        format!("{}/hub/refresh", self.prefix)
    }

    /// The retained metrics (SPEC §10), beside the status.
    pub fn metrics(&self) -> String {
        format!("{}/hub/metrics", self.prefix)
    }

    /// Where the hub retains its alarm: the audit log lost records (SPEC §9).
    pub fn alarm(&self) -> String {
        format!("{}/hub/alarm", self.prefix)
    }

    /// Where the hub retains its newest signed checkpoint of the audit log.
    pub fn audit_checkpoint(&self) -> String {
        format!("{}/audit/checkpoint", self.prefix)
    }

    pub fn parse<'a>(&self, topic: &'a str) -> Incoming<'a> {
        let Some(rest) = topic.strip_prefix(self.prefix.as_str()) else {
            return Incoming::Other;
        };
        let Some(raw) = rest.strip_prefix("/intent/") else {
            return Incoming::Other;
        };
        match check_satellite_id(raw) {
            Ok(()) => Incoming::Intent { satellite: raw },
            Err(reason) => {
                // A level with '/' is not what `intent/+` delivers, but another
                // subscription might; only answer where the reply topic is one level.
                let publishable = !raw.contains(['/', '+', '#', '\0']) && raw.len() <= 1024;
                Incoming::BadSatellite {
                    raw,
                    reason,
                    reply_to: publishable.then(|| self.reply(raw)),
                }
            }
        }
    }
}

/// 1–64 characters of `[A-Za-z0-9_-]`.
pub fn check_satellite_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the satellite id in the topic is empty".to_string());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        let mut shown: String = id.chars().take(MAX_SATELLITE_LEN).collect();
        if shown.len() < id.len() {
            shown.push('…');
        }
        return Err(format!(
            "the satellite id {shown:?} contains {c:?}; use letters, digits, '_' and '-'"
        ));
    }
    // Only ASCII is left, so bytes are characters.
    if id.len() > MAX_SATELLITE_LEN {
        return Err(format!(
            "the satellite id in the topic is {} characters; the limit is {MAX_SATELLITE_LEN}",
            id.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_topics_give_their_satellite() {
        let t = Topics::new("hark");
        assert_eq!(
            t.parse("hark/intent/kitchen"),
            Incoming::Intent {
                satellite: "kitchen"
            }
        );
        assert_eq!(
            t.parse("hark/intent/Living_Room-2"),
            Incoming::Intent {
                satellite: "Living_Room-2"
            }
        );
        assert_eq!(t.parse("hark/reply/kitchen"), Incoming::Other);
        assert_eq!(t.parse("harkx/intent/kitchen"), Incoming::Other);
        assert_eq!(t.parse("other/intent/kitchen"), Incoming::Other);
    }

    #[test]
    fn bad_satellite_ids_are_explained_and_answered_where_possible() {
        let t = Topics::new("hark");
        let Incoming::BadSatellite {
            reason, reply_to, ..
        } = t.parse("hark/intent/living room")
        else {
            panic!()
        };
        assert!(reason.contains("' '"), "{reason}");
        assert_eq!(reply_to.as_deref(), Some("hark/reply/living room"));

        let long = "x".repeat(65);
        let topic = format!("hark/intent/{long}");
        let Incoming::BadSatellite { reason, .. } = t.parse(&topic) else {
            panic!()
        };
        assert!(reason.contains("65 characters"), "{reason}");

        let Incoming::BadSatellite {
            reason, reply_to, ..
        } = t.parse("hark/intent/")
        else {
            panic!()
        };
        assert!(reason.contains("empty"));
        assert_eq!(reply_to.as_deref(), Some("hark/reply/"));

        let Incoming::BadSatellite { reply_to, .. } = t.parse("hark/intent/a/b") else {
            panic!()
        };
        assert_eq!(reply_to, None);
    }

    #[test]
    fn custom_prefixes_shape_every_topic() {
        let t = Topics::new("home/voice");
        assert_eq!(t.intent_filter(), "home/voice/intent/+");
        assert_eq!(t.reply("k"), "home/voice/reply/k");
        assert_eq!(t.event("k"), "home/voice/event/k");
        assert_eq!(t.timers("k"), "home/voice/timers/k");
        assert_eq!(t.status(), "home/voice/hub/status");
    }
}
