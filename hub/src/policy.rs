//! The policy gate: trust tiers, permissions and grants (SPEC §3–4).
//!
//! [`decide`] is a pure function from facts (tier, what the skill is, how it
//! is signed, what the user granted: its [`SkillInfo`]) and a requested
//! action to a [`Decision`] naming the rule that decided. Every load, call
//! and host call passes here; nothing is allowed that a rule does not allow.

use std::fmt;
use std::str::FromStr;

use hark_skill_sdk::{Manifest, Permission, Risk};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Tier {
    #[default]
    Paranoid = 0,
    Trusted = 1,
    Convenient = 2,
}

/// The tier a running hub decides under: set at start, changed by a reload
/// (SIGHUP), read by every decision.
#[derive(Debug)]
pub struct TierCell(std::sync::atomic::AtomicU8);

impl TierCell {
    pub fn new(tier: Tier) -> TierCell {
        TierCell(std::sync::atomic::AtomicU8::new(tier as u8))
    }

    pub fn get(&self) -> Tier {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            2 => Tier::Convenient,
            1 => Tier::Trusted,
            _ => Tier::Paranoid,
        }
    }

    pub fn set(&self, tier: Tier) {
        self.0
            .store(tier as u8, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Paranoid => "paranoid",
            Tier::Trusted => "trusted",
            Tier::Convenient => "convenient",
        }
    }

    /// Whether audit records carry full arguments and results (SPEC §4).
    pub fn audits_full_args(self) -> bool {
        self == Tier::Convenient
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Tier, String> {
        match s {
            "paranoid" => Ok(Tier::Paranoid),
            "trusted" => Ok(Tier::Trusted),
            "convenient" => Ok(Tier::Convenient),
            _ => Err(format!(
                "\"{s}\" is not one of paranoid, trusted, convenient"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkillKind {
    Builtin,
    Wasm,
}

impl SkillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SkillKind::Builtin => "builtin",
            SkillKind::Wasm => "wasm",
        }
    }
}

/// What the hub established about a skill's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// Built into the binary: nothing to sign.
    NotApplicable,
    /// No `manifest.sig`.
    Unsigned,
    /// Verified against this key of `trust.keys`.
    Verified { signer: String },
    /// A good signature by a key that is not in `trust.keys`.
    UnknownSigner { signer: String },
    /// Present but not acceptable: unknown signer, bad signature, module changed.
    Rejected { reason: String },
}

/// What the hub established about one skill when it loaded it: the facts
/// the gate decides on. Held once per skill, in one `Arc` that its registry
/// entry and its sandbox calls share.
#[derive(Debug, Clone)]
pub struct SkillInfo {
    /// The intent it serves: its manifest's `name`.
    pub name: String,
    pub kind: SkillKind,
    /// Validated.
    pub manifest: Manifest,
    /// The manifest's permissions, parsed.
    pub permissions: Vec<Permission>,
    pub signature: Signature,
    /// High-risk permissions the user granted this skill in `[grants]`.
    pub grants: Vec<Permission>,
    /// Why the skill may never run, whatever the tier: it declares
    /// `mqtt.publish` on a filter that can reach a reserved topic (SPEC §7).
    /// The loader sets it, knowing the topic prefix.
    pub reserved_publish: Option<String>,
    /// Why the skill may not load on this hub, whatever the tier: the rule
    /// and the reason (`trust.hermetic`, `load.min_hub_version`). The
    /// loader sets it, knowing the config and the hub's version.
    pub load_refusal: Option<(&'static str, String)>,
}

impl SkillInfo {
    pub fn new(
        kind: SkillKind,
        manifest: Manifest,
        signature: Signature,
        grants: Vec<Permission>,
    ) -> SkillInfo {
        SkillInfo {
            name: manifest.name.clone(),
            kind,
            permissions: manifest.parsed_permissions(),
            manifest,
            signature,
            grants,
            reserved_publish: None,
            load_refusal: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Register the skill so it can serve intents.
    Load,
    /// Run it for one intent.
    Run,
    /// Use a permission from inside a call (a host function).
    Use(&'a Permission),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// Stable name of the rule that decided, for the audit log.
    pub rule: &'static str,
    /// A sentence for a person: why, and what would change it.
    pub reason: String,
}

impl Decision {
    fn allow(rule: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            allow: true,
            rule,
            reason: reason.into(),
        }
    }
    fn deny(rule: &'static str, reason: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            rule,
            reason: reason.into(),
        }
    }
}

/// The gate. Default-deny: every path that is not explicitly allowed denies.
pub fn decide(tier: Tier, skill: &SkillInfo, action: &Action<'_>) -> Decision {
    if let Some(reason) = &skill.reserved_publish {
        return Decision::deny("mqtt.reserved_topic", reason.clone());
    }
    if let Some((rule, reason)) = &skill.load_refusal {
        return Decision::deny(rule, reason.clone());
    }
    match (skill.kind, action) {
        (SkillKind::Builtin, Action::Load | Action::Run) => {
            Decision::allow("builtin", "built-in skills run in every tier")
        }
        (SkillKind::Builtin, Action::Use(p)) => use_declared(skill, p, "builtin.declared"),
        (SkillKind::Wasm, Action::Load | Action::Run) => wasm_admission(tier, skill),
        (SkillKind::Wasm, Action::Use(p)) => {
            let admitted = wasm_admission(tier, skill);
            if !admitted.allow {
                return admitted;
            }
            if **p == Permission::Log {
                return Decision::allow("permission.log", "log is always granted");
            }
            let declared = use_declared(skill, p, "permission.declared");
            if !declared.allow || p.risk() == Risk::Low {
                return declared;
            }
            match tier {
                Tier::Paranoid => Decision::deny(
                    "tier.paranoid.high_risk",
                    format!("tier paranoid never allows {p}"),
                ),
                Tier::Trusted if skill.grants.contains(p) => {
                    Decision::allow("grant", format!("{p} is granted in [grants]"))
                }
                Tier::Trusted => Decision::deny(
                    "grant.missing",
                    format!(
                        "{p} is high-risk and not granted; add {} = [\"{p}\"] to [grants]",
                        skill.name
                    ),
                ),
                Tier::Convenient => Decision::allow(
                    "tier.convenient.declared",
                    format!("tier convenient allows declared {p}"),
                ),
            }
        }
    }
}

fn use_declared(skill: &SkillInfo, p: &Permission, rule: &'static str) -> Decision {
    if skill.permissions.contains(p) {
        Decision::allow(rule, format!("{p} is declared"))
    } else {
        Decision::deny(
            "permission.undeclared",
            format!("{} does not declare the permission {p}", skill.name),
        )
    }
}

/// May this WebAssembly skill serve intents at all under `tier`?
fn wasm_admission(tier: Tier, skill: &SkillInfo) -> Decision {
    if let Signature::Rejected { reason } = &skill.signature {
        // A signature that fails is a sign of tampering: refused in every tier.
        return Decision::deny("signature.rejected", format!("signature refused: {reason}"));
    }
    match tier {
        Tier::Paranoid => Decision::deny(
            "tier.paranoid.builtins_only",
            "tier paranoid allows built-in skills only",
        ),
        Tier::Trusted => {
            let signer = match &skill.signature {
                Signature::Verified { signer } => signer,
                Signature::UnknownSigner { signer } => {
                    return Decision::deny(
                        "tier.trusted.unknown_signer",
                        format!(
                            "tier trusted runs only skills signed by a key in trust.keys; this one \
                             is signed by {signer}, which is not there"
                        ),
                    );
                }
                _ => {
                    return Decision::deny(
                        "tier.trusted.unsigned",
                        "tier trusted runs only skills signed by a key in trust.keys; this one is unsigned",
                    );
                }
            };
            let ungranted: Vec<String> = skill
                .permissions
                .iter()
                .filter(|p| p.risk() == Risk::High && !skill.grants.contains(p))
                .map(|p| p.to_string())
                .collect();
            if ungranted.is_empty() {
                Decision::allow("tier.trusted.signed", format!("signed by {signer}"))
            } else {
                Decision::deny(
                    "grant.missing",
                    format!(
                        "it declares the high-risk {} but [grants] does not grant {}; add {} = [{}] \
                         to [grants] to allow it",
                        ungranted.join(", "),
                        if ungranted.len() == 1 { "it" } else { "them" },
                        skill.name,
                        ungranted
                            .iter()
                            .map(|p| format!("\"{p}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
        }
        Tier::Convenient => match &skill.signature {
            Signature::Verified { signer } => {
                Decision::allow("tier.convenient.signed", format!("signed by {signer}"))
            }
            _ => Decision::allow(
                "tier.convenient.unsigned",
                "tier convenient runs unsigned skills (development only)",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(permissions: &[&str], trusted: bool) -> Manifest {
        serde_json::from_value(json!({
            "name": "lights", "version": "1.0.0", "trusted": trusted,
            "permissions": permissions,
        }))
        .unwrap()
    }

    fn signed() -> Signature {
        Signature::Verified {
            signer: "ed25519:AAAA".into(),
        }
    }

    fn subject(kind: SkillKind, m: &Manifest, sig: &Signature, grants: &[Permission]) -> SkillInfo {
        SkillInfo::new(kind, m.clone(), sig.clone(), grants.to_vec())
    }

    #[test]
    fn builtins_run_in_every_tier() {
        let m = manifest(&["timer"], false);
        let s = subject(SkillKind::Builtin, &m, &Signature::NotApplicable, &[]);
        for tier in [Tier::Paranoid, Tier::Trusted, Tier::Convenient] {
            assert!(decide(tier, &s, &Action::Run).allow);
            assert!(decide(tier, &s, &Action::Use(&Permission::Timer)).allow);
            assert!(!decide(tier, &s, &Action::Use(&Permission::Kv)).allow);
        }
    }

    #[test]
    fn a_reserved_publish_is_refused_in_every_tier_for_every_action() {
        let m = manifest(&["mqtt.publish:#"], false);
        let mut s = subject(SkillKind::Wasm, &m, &signed(), &[]);
        s.reserved_publish = Some("declares mqtt.publish:#, which can reach hark/#".into());
        let publish = Permission::MqttPublish("#".into());
        for tier in [Tier::Paranoid, Tier::Trusted, Tier::Convenient] {
            for action in [Action::Load, Action::Run, Action::Use(&publish)] {
                let d = decide(tier, &s, &action);
                assert_eq!((d.allow, d.rule), (false, "mqtt.reserved_topic"));
                assert!(d.reason.contains("hark/#"), "{}", d.reason);
            }
        }
    }

    #[test]
    fn paranoid_refuses_every_wasm_skill_even_signed() {
        let m = manifest(&["kv"], false);
        let sig = signed();
        let d = decide(
            Tier::Paranoid,
            &subject(SkillKind::Wasm, &m, &sig, &[]),
            &Action::Load,
        );
        assert!(!d.allow);
        assert_eq!(d.rule, "tier.paranoid.builtins_only");
        assert_eq!(d.reason, "tier paranoid allows built-in skills only");
    }

    #[test]
    fn trusted_refuses_unsigned_and_runs_signed() {
        let m = manifest(&["kv"], false);
        let unsigned = Signature::Unsigned;
        let d = decide(
            Tier::Trusted,
            &subject(SkillKind::Wasm, &m, &unsigned, &[]),
            &Action::Run,
        );
        assert_eq!((d.allow, d.rule), (false, "tier.trusted.unsigned"));
        let sig = signed();
        let d = decide(
            Tier::Trusted,
            &subject(SkillKind::Wasm, &m, &sig, &[]),
            &Action::Run,
        );
        assert_eq!((d.allow, d.rule), (true, "tier.trusted.signed"));
    }

    #[test]
    fn a_rejected_signature_is_refused_in_every_tier() {
        let m = manifest(&[], false);
        let sig = Signature::Rejected {
            reason: "module changed after signing".into(),
        };
        for tier in [Tier::Paranoid, Tier::Trusted, Tier::Convenient] {
            let d = decide(
                tier,
                &subject(SkillKind::Wasm, &m, &sig, &[]),
                &Action::Load,
            );
            assert_eq!((d.allow, d.rule), (false, "signature.rejected"));
            assert!(d.reason.contains("module changed"));
        }
    }

    #[test]
    fn an_unknown_signer_is_refused_by_trusted_and_accepted_by_convenient() {
        let m = manifest(&[], false);
        let sig = Signature::UnknownSigner {
            signer: "ed25519:BBBB".into(),
        };
        let s = subject(SkillKind::Wasm, &m, &sig, &[]);
        let d = decide(Tier::Trusted, &s, &Action::Load);
        assert_eq!((d.allow, d.rule), (false, "tier.trusted.unknown_signer"));
        assert!(d.reason.contains("ed25519:BBBB"));
        assert!(decide(Tier::Convenient, &s, &Action::Load).allow);
    }

    #[test]
    fn trusted_needs_a_grant_for_high_risk_permissions() {
        let p = Permission::MqttPublish("home/lights/+/set".into());
        let m = manifest(&["mqtt.publish:home/lights/+/set"], true);
        let sig = signed();
        let d = decide(
            Tier::Trusted,
            &subject(SkillKind::Wasm, &m, &sig, &[]),
            &Action::Load,
        );
        assert_eq!((d.allow, d.rule), (false, "grant.missing"));
        assert!(
            d.reason
                .contains("lights = [\"mqtt.publish:home/lights/+/set\"]"),
            "{}",
            d.reason
        );
        let grants = [p.clone()];
        let s = subject(SkillKind::Wasm, &m, &sig, &grants);
        assert!(decide(Tier::Trusted, &s, &Action::Load).allow);
        assert_eq!(decide(Tier::Trusted, &s, &Action::Use(&p)).rule, "grant");
    }

    #[test]
    fn convenient_runs_unsigned_and_declared_high_risk() {
        let p = Permission::SecretsRead("api".into());
        let m = manifest(&["secrets.read:api"], true);
        let sig = Signature::Unsigned;
        let s = subject(SkillKind::Wasm, &m, &sig, &[]);
        assert_eq!(
            decide(Tier::Convenient, &s, &Action::Load).rule,
            "tier.convenient.unsigned"
        );
        assert!(decide(Tier::Convenient, &s, &Action::Use(&p)).allow);
    }

    #[test]
    fn undeclared_permissions_are_denied_in_every_tier() {
        let m = manifest(&["kv"], false);
        let sig = signed();
        let s = subject(SkillKind::Wasm, &m, &sig, &[]);
        for tier in [Tier::Trusted, Tier::Convenient] {
            let d = decide(tier, &s, &Action::Use(&Permission::Timer));
            assert_eq!((d.allow, d.rule), (false, "permission.undeclared"));
            assert!(decide(tier, &s, &Action::Use(&Permission::Kv)).allow);
            assert!(
                decide(tier, &s, &Action::Use(&Permission::Log)).allow,
                "log is always granted"
            );
        }
    }

    #[test]
    fn a_grant_for_another_filter_does_not_count() {
        let m = manifest(&["mqtt.publish:home/#"], true);
        let sig = signed();
        let grants = [Permission::MqttPublish("home/lights/+/set".into())];
        let d = decide(
            Tier::Trusted,
            &subject(SkillKind::Wasm, &m, &sig, &grants),
            &Action::Load,
        );
        assert!(!d.allow);
    }

    #[test]
    fn only_convenient_audits_full_args() {
        assert!(!Tier::Paranoid.audits_full_args());
        assert!(!Tier::Trusted.audits_full_args());
        assert!(Tier::Convenient.audits_full_args());
    }
}
