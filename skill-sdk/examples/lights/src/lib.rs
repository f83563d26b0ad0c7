//! `lights`: publishes `{"state": "ON", "brightness": 128}` to
//! `home/lights/<room>/set`. Needs the trusted tier and a grant of
//! `mqtt.publish:home/lights/+/set`: it can reach those topics and no other.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    room: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    brightness: Option<u8>,
}

#[derive(Serialize)]
struct Command {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    brightness: Option<u16>,
}

fn handle(request: Request<Args>) -> Result<SkillReply, SkillError> {
    let Args {
        room,
        state,
        brightness,
    } = request.args;
    let on = match (state.as_deref(), brightness) {
        (Some("off"), _) | (None, Some(0)) => false,
        _ => true,
    };
    let command = Command {
        state: if on { "ON" } else { "OFF" },
        // zigbee2mqtt brightness is 0..254; people say percent.
        brightness: brightness
            .filter(|_| on)
            .map(|p| u16::from(p.min(100)) * 254 / 100),
    };
    let payload = serde_json::to_vec(&command)
        .map_err(|_| SkillError::new("encode", "The light command did not encode."))?;
    let topic = format!("home/lights/{room}/set");
    host::mqtt_publish(&topic, &payload)?;
    let place = room.replace('_', " ");
    let speech = match (on, brightness) {
        (false, _) => format!("Turned the {place} lights off."),
        (true, Some(p)) => format!("Set the {place} lights to {p} percent."),
        (true, None) => format!("Turned the {place} lights on."),
    };
    Ok(SkillReply::speech(speech).with_data(to_data(&command)?))
}

hark_skill!(handle);
