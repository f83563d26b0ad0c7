//! `tea`: a chime on the satellite now, and a timer for the tea's steeping
//! time; the hub rings it and announces it like any timer.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    kind: Option<String>,
}

/// Steeping time in seconds, by kind of tea.
fn steep_seconds(kind: &str) -> u64 {
    match kind {
        "green" => 120,
        "white" => 240,
        "oolong" => 180,
        "herbal" => 300,
        _ => 240,
    }
}

fn handle(request: Request<Args>) -> Result<SkillReply, SkillError> {
    let kind = request.args.kind.unwrap_or_else(|| "black".to_string());
    let seconds = steep_seconds(&kind);
    let label = format!("{kind} tea");
    let timer = timer::start(seconds * 1000, Some(&label))?;
    host::play("chime", Target::Satellite, 0.6)?;
    let minutes = seconds / 60;
    let speech = format!(
        "Steeping {kind} tea for {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    );
    Ok(SkillReply::speech(speech).with_data(to_data(&(timer, seconds))?))
}

hark_skill!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tea_has_its_time() {
        assert_eq!(steep_seconds("green"), 120);
        assert_eq!(steep_seconds("black"), 240);
        assert_eq!(steep_seconds("rooibos"), 240);
    }
}
