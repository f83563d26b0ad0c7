//! `system.confirm`: the satellite's yes or no to a question a sensitive
//! skill asked before running (SPEC §8.1).
//!
//! A yes hands the call asked about back to the hub, which runs it with the
//! args it had when it asked; its reply is the answer. Only the asking
//! satellite's questions can be answered, so a yes from the hall never
//! unlocks the door the kitchen asked about.

use serde_json::json;

use crate::{Answered, BuiltinError, BuiltinSkill, ErrorCode, Host, Intent, SkillReply};

/// Said when a question is answered no, runs out of time, or is cancelled.
pub const DECLINED: &str = "Okay, I won't.";

#[derive(Debug)]
pub struct SystemConfirm;

impl BuiltinSkill for SystemConfirm {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../manifests/system.confirm.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let yes = match intent.args.get("answer").and_then(|v| v.as_str()) {
            Some("yes") => true,
            Some("no") => false,
            _ => return Err(BuiltinError::invalid("/answer", "Say yes or no.")),
        };
        let token = intent.args.get("token").and_then(|v| v.as_str());
        match host.answer_confirmation(&intent.satellite, token, yes) {
            Answered::Nothing => Err(BuiltinError::Refused {
                code: ErrorCode::NoConfirmation,
                message: "There's nothing to confirm.".to_string(),
            }),
            Answered::Declined { token } => Ok(SkillReply::speech(DECLINED)
                .with_data(json!({"token": token, "outcome": "declined"}))),
            // The hub runs the call; its reply is the one spoken.
            Answered::Confirmed { token } => Ok(SkillReply {
                speech: None,
                data: Some(json!({"token": token, "outcome": "confirmed"})),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, intent};

    fn asking(pairs: &[(&str, &str)]) -> FakeHost {
        let host = FakeHost::default();
        for (satellite, token) in pairs {
            host.asking
                .borrow_mut()
                .push((satellite.to_string(), token.to_string()));
        }
        host
    }

    #[test]
    fn yes_answers_the_newest_question_of_this_satellite() {
        let host = asking(&[("kitchen", "c-1"), ("kitchen", "c-2"), ("hall", "c-3")]);
        let reply = SystemConfirm
            .handle(&intent("system.confirm", json!({"answer": "yes"})), &host)
            .unwrap();
        assert_eq!(reply.speech, None, "the call's own reply speaks");
        assert_eq!(reply.data.unwrap()["token"], "c-2");
        assert_eq!(host.asking.borrow().len(), 2);
    }

    #[test]
    fn no_declines_and_says_so() {
        let host = asking(&[("kitchen", "c-1"), ("kitchen", "c-2")]);
        let reply = SystemConfirm
            .handle(
                &intent("system.confirm", json!({"answer": "no", "token": "c-1"})),
                &host,
            )
            .unwrap();
        assert_eq!(reply.speech.as_deref(), Some(DECLINED));
        assert_eq!(reply.data.unwrap()["outcome"], "declined");
        assert_eq!(*host.asking.borrow(), [("kitchen".into(), "c-2".into())]);
    }

    #[test]
    fn another_satellites_question_or_none_is_nothing_to_confirm() {
        let host = asking(&[("hall", "c-3")]);
        for args in [
            json!({"answer": "yes"}),
            json!({"answer": "yes", "token": "c-3"}),
        ] {
            let err = SystemConfirm
                .handle(&intent("system.confirm", args), &host)
                .unwrap_err();
            assert_eq!(
                err,
                BuiltinError::Refused {
                    code: ErrorCode::NoConfirmation,
                    message: "There's nothing to confirm.".into()
                }
            );
        }
        assert_eq!(
            host.asking.borrow().len(),
            1,
            "the hall's question still waits"
        );
    }
}
