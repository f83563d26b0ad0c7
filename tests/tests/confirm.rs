//! Confirmation before sensitive actions (SPEC §8.1), end to end: a real
//! hub with `[confirm] skills = ["timer.set"]` on a real mosquitto, a
//! satellite saying yes, no, nothing, or yes from the wrong room, and the
//! three audit records of each question. The timer is the witness: it
//! exists only if the call really ran.

use std::time::Duration;

use hark_tests::hermes::{Peer, Rhasspy};
use hark_tests::{BrokerKind, Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, runtime};
use serde_json::{Value, json};

fn start_hub(name: &str, timeout_s: u64, extra: &str) -> (TempDir, Hub) {
    let dir = TempDir::new(name);
    let hub = Hub::start_with(
        dir.path(),
        &Setup {
            broker: BrokerKind::Mosquitto,
            tables: format!(
                "[confirm]\nskills = [\"timer.set\"]\ntimeout_s = {timeout_s}\n{extra}"
            ),
            ..Setup::default()
        },
    );
    (dir, hub)
}

async fn timers(sat: &mut Satellite) -> usize {
    let list = sat.request("timer.list", json!({})).await;
    assert_eq!(list["status"], "ok", "{list}");
    list["data"]["timers"].as_array().unwrap().len()
}

/// Asks for the pasta timer and checks the question it gets back.
async fn ask_for_pasta(sat: &mut Satellite) -> (String, String) {
    let asked = sat
        .request("timer.set", json!({"duration": "5m", "label": "pasta"}))
        .await;
    assert_eq!(asked["status"], "confirm", "{asked}");
    assert_eq!(asked["intent"], "timer.set");
    let token = asked["confirm"]["token"].as_str().unwrap().to_string();
    assert!(
        asked["confirm"]["expires_s"].as_u64().unwrap() >= 1,
        "{asked}"
    );
    assert!(
        asked["speech"].as_str().unwrap().ends_with('?'),
        "a question: {asked}"
    );
    (asked["id"].as_str().unwrap().to_string(), token)
}

fn record_of(records: &[Value], wanted: impl Fn(&Value) -> bool) -> &Value {
    records
        .iter()
        .find(|r| wanted(r))
        .unwrap_or_else(|| panic!("no such audit record in {records:#?}"))
}

#[test]
fn yes_runs_the_call_once_with_its_own_id_and_three_records_name_each_other() {
    let (_dir, hub) = start_hub("confirm-yes", 10, "");
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, "hark", "kitchen").await;
        let (asked_id, token) = ask_for_pasta(&mut kitchen).await;
        assert_eq!(timers(&mut kitchen).await, 0, "nothing runs before the yes");

        kitchen.send_raw(
            json!({"id": "yes-1", "intent": "system.confirm", "args": {"answer": "yes", "token": token}})
                .to_string(),
        ).await;
        let ran = kitchen.reply_for(Some(&asked_id)).await;
        assert_eq!(ran["status"], "ok", "{ran}");
        assert_eq!(ran["intent"], "timer.set");
        assert_eq!(ran["speech"], "Pasta timer set for 5 minutes.");
        assert_eq!(timers(&mut kitchen).await, 1);

        // A second yes finds nothing to confirm, and runs nothing.
        let again = kitchen
            .request("system.confirm", json!({"answer": "yes"}))
            .await;
        assert_eq!(again["status"], "invalid", "{again}");
        assert_eq!(again["error"]["code"], "no_confirmation");
        assert_eq!(again["speech"], "There's nothing to confirm.");
        assert_eq!(timers(&mut kitchen).await, 1, "ran once");

        let records = audit_records(&hub.audit_path());
        let prompt = record_of(&records, |r| r["status"] == "confirm");
        assert_eq!(prompt["request_id"], asked_id.as_str());
        assert!(
            prompt["message"].as_str().unwrap().contains(&token),
            "{prompt}"
        );
        let answer = record_of(&records, |r| r["request_id"] == "yes-1");
        let named = format!("{token} (prompt at audit {})", prompt["seq"]);
        assert_eq!(answer["intent"], "system.confirm");
        assert!(answer["message"].as_str().unwrap().contains(&named), "{answer}");
        let outcome = record_of(&records, |r| {
            r["request_id"] == asked_id.as_str() && r["status"] == "ok"
        });
        assert_eq!(
            outcome["message"],
            format!("confirmed: question {named}, answered yes at audit {}", answer["seq"]),
        );
        assert_eq!(ran["audit"], outcome["seq"]);
        assert!(prompt["seq"].as_u64() < answer["seq"].as_u64());
        assert!(answer["seq"].as_u64() < outcome["seq"].as_u64());
    });
    hub.stop().unwrap();
}

#[test]
fn no_a_stranger_a_cancel_and_the_clock_each_keep_the_call_from_running() {
    let (_dir, hub) = start_hub("confirm-no", 1, "");
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, "hark", "kitchen").await;
        let mut hall = Satellite::connect(hub.port, "hark", "hall").await;

        // No.
        let (asked_id, _) = ask_for_pasta(&mut kitchen).await;
        let no = kitchen
            .request("system.confirm", json!({"answer": "no"}))
            .await;
        assert_eq!(no["status"], "ok", "{no}");
        assert_eq!(no["speech"], "Okay, I won't.");
        assert_eq!(no["data"]["outcome"], "declined");
        let records = audit_records(&hub.audit_path());
        let declined = record_of(&records, |r| r["status"] == "declined");
        assert_eq!(declined["request_id"], asked_id.as_str());
        assert!(
            declined["message"]
                .as_str()
                .unwrap()
                .ends_with(&format!("answered at audit {}", no["audit"])),
            "{declined}"
        );

        // Yes from another satellite, even with the right token.
        let (asked_id, token) = ask_for_pasta(&mut kitchen).await;
        let stranger = hall
            .request("system.confirm", json!({"answer": "yes", "token": token}))
            .await;
        assert_eq!(stranger["error"]["code"], "no_confirmation", "{stranger}");
        // ... leaves the kitchen's question waiting, until it expires: the
        // kitchen hears "Okay, I won't." as the asking request's answer.
        let expired = kitchen.reply_for(Some(&asked_id)).await;
        assert_eq!(expired["status"], "ok", "{expired}");
        assert_eq!(expired["speech"], "Okay, I won't.");
        assert_eq!(expired["data"]["outcome"], "expired");
        let late = kitchen
            .request("system.confirm", json!({"answer": "yes", "token": token}))
            .await;
        assert_eq!(late["error"]["code"], "no_confirmation", "{late}");

        // system.cancel answers no.
        let (asked_id, _) = ask_for_pasta(&mut kitchen).await;
        let cancel = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(cancel["speech"], "Okay, I won't.", "{cancel}");
        assert_eq!(cancel["data"]["confirmations"], 1);
        let closed = kitchen.reply_for(Some(&asked_id)).await;
        assert_eq!(closed["data"]["outcome"], "cancelled", "{closed}");
        assert_eq!(closed.get("speech"), None, "the cancel's reply speaks");

        assert_eq!(timers(&mut kitchen).await, 0, "no pasta timer ever ran");
        let records = audit_records(&hub.audit_path());
        for outcome in ["declined", "expired", "cancelled"] {
            record_of(&records, |r| r["status"] == outcome);
        }
        assert!(
            !records
                .iter()
                .any(|r| r["intent"] == "timer.set" && r["status"] == "ok"),
            "no timer.set ran"
        );
    });
    hub.stop().unwrap();
}

#[test]
fn bad_answers_are_refused_and_keep_the_question() {
    let (_dir, hub) = start_hub("confirm-bad", 10, "");
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, "hark", "kitchen").await;
        let (asked_id, token) = ask_for_pasta(&mut kitchen).await;
        for args in [
            json!({}),
            json!({"answer": "maybe"}),
            json!({"answer": true}),
            json!({"answer": "yes", "token": ""}),
            json!({"answer": "yes", "token": "x".repeat(65)}),
            json!({"answer": "yes", "extra": 1}),
        ] {
            let reply = kitchen.request("system.confirm", args.clone()).await;
            assert_eq!(reply["status"], "invalid", "{args}: {reply}");
            assert_eq!(reply["error"]["code"], "schema", "{args}: {reply}");
        }
        let unknown = kitchen
            .request("system.confirm", json!({"answer": "yes", "token": "c-999"}))
            .await;
        assert_eq!(unknown["error"]["code"], "no_confirmation", "{unknown}");
        // The question still waits, and a proper yes still runs it.
        kitchen
            .send_raw(
                json!({"id": "yes-1", "intent": "system.confirm",
                       "args": {"answer": "yes", "token": token}})
                .to_string(),
            )
            .await;
        let ran = kitchen.reply_for(Some(&asked_id)).await;
        assert_eq!(ran["status"], "ok", "{ran}");
    });
    hub.stop().unwrap();
}

const HERMES: &str = "[hermes]\nenabled = true\n[hermes.intents]\nSetTimer = \"timer.set\"\n";

fn slot(name: &str, value: Value) -> Value {
    json!({"entity": name, "slotName": name, "value": {"kind": "Unknown", "value": value}})
}

#[test]
fn over_hermes_the_question_continues_the_session_and_the_answer_ends_it() {
    let mut peer = Peer::start();
    let (_dir, hub) = start_hub("confirm-hermes", 10, HERMES);
    runtime().block_on(async {
        let mut rhasspy = Rhasspy::connect(hub.port).await;
        let set_timer = json!({"intent": "SetTimer", "input": "set a pasta timer for five minutes",
            "slots": [slot("duration", json!("five minutes")), slot("label", json!("pasta"))],
            "siteId": "kitchen", "sessionId": "s-1", "customData": "cd"});
        let (topic, payload) = peer.nlu_intent(set_timer.clone());
        rhasspy.publish(&topic, payload).await;
        let question = rhasspy.continue_session("s-1").await;
        let question = peer.read_continue_session(&question);
        assert_eq!(question["intentFilter"], json!(["Yes", "No"]), "{question}");
        assert_eq!(question["customData"], "cd");
        assert!(
            question["text"].as_str().unwrap().ends_with('?'),
            "{question}"
        );

        // Rhasspy hears "yes" in the same session.
        let (topic, payload) = peer.nlu_intent(
            json!({"intent": "Yes", "input": "yes", "siteId": "kitchen", "sessionId": "s-1"}),
        );
        rhasspy.publish(&topic, payload).await;
        let end = rhasspy.end_session("s-1").await;
        assert_eq!(
            peer.read_end_session(&end)["text"],
            "Pasta timer set for 5 minutes."
        );
        // A second yes, and a yes from another site, find nothing to confirm.
        for (site, session) in [("kitchen", "s-1b"), ("hall", "s-1c")] {
            let (topic, payload) = peer.nlu_intent(
                json!({"intent": "Yes", "input": "yes", "siteId": site, "sessionId": session}),
            );
            rhasspy.publish(&topic, payload).await;
            let end = rhasspy.end_session(session).await;
            assert_eq!(
                peer.read_end_session(&end)["text"],
                "There's nothing to confirm."
            );
        }

        // A no in another session ends it with "Okay, I won't." and runs nothing.
        let mut declined = set_timer.clone();
        declined["sessionId"] = json!("s-2");
        let (topic, payload) = peer.nlu_intent(declined);
        rhasspy.publish(&topic, payload).await;
        rhasspy.continue_session("s-2").await;
        let (topic, payload) = peer.nlu_intent(
            json!({"intent": "No", "input": "no", "siteId": "kitchen", "sessionId": "s-2"}),
        );
        rhasspy.publish(&topic, payload).await;
        let end = rhasspy.end_session("s-2").await;
        assert_eq!(peer.read_end_session(&end)["text"], "Okay, I won't.");

        let records = audit_records(&hub.audit_path());
        let ran: Vec<&Value> = records
            .iter()
            .filter(|r| r["intent"] == "timer.set" && r["status"] == "ok")
            .collect();
        assert_eq!(ran.len(), 1, "one yes, one run: {ran:#?}");
        assert_eq!(ran[0]["request_id"], "s-1");
    });
    drop(hub);
    // The question of a third session expires unanswered: with no session
    // left to continue, it is ended for Rhasspy, not left open.
    let (_dir, hub) = start_hub("confirm-hermes-expiry", 1, HERMES);
    runtime().block_on(async {
        let mut rhasspy = Rhasspy::connect(hub.port).await;
        let (topic, payload) = peer.nlu_intent(json!({"intent": "SetTimer",
            "slots": [slot("duration", json!("five minutes"))],
            "siteId": "kitchen", "sessionId": "s-3"}));
        rhasspy.publish(&topic, payload).await;
        rhasspy.continue_session("s-3").await;
        let end = tokio::time::timeout(
            PATIENCE + Duration::from_secs(1),
            rhasspy.end_session("s-3"),
        )
        .await
        .expect("the session is ended when its question expires");
        assert_eq!(peer.read_end_session(&end)["text"], "Okay, I won't.");
    });
    hub.stop().unwrap();
}
