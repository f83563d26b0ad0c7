//! `dice`: roll dice. Pure compute with typed args; the hub's randomness.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Args {
    #[serde(default = "six")]
    sides: u32,
    #[serde(default = "one")]
    count: u32,
}

/// What a UI or automation gets back.
#[derive(Serialize)]
struct Rolled {
    rolls: Vec<u32>,
    total: u32,
    sides: u32,
}

fn six() -> u32 {
    6
}

fn one() -> u32 {
    1
}

fn roll(request: Request<Args>) -> Result<SkillReply, SkillError> {
    let Args { sides, count } = request.args;
    let mut bytes = [0u8; 40];
    host::random(&mut bytes[..count as usize * 4])?;
    let rolls: Vec<u32> = bytes
        .chunks_exact(4)
        .take(count as usize)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % sides + 1)
        .collect();
    let total: u32 = rolls.iter().sum();
    let speech = speak(&rolls, total);
    Ok(SkillReply::speech(speech).with_data(to_data(&Rolled {
        rolls,
        total,
        sides,
    })?))
}

fn speak(rolls: &[u32], total: u32) -> String {
    match rolls {
        [one] => format!("You rolled a {one}."),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|r| r.to_string()).collect();
            format!(
                "You rolled {} and {last}: {total} in total.",
                rest.join(", ")
            )
        }
        [] => "You rolled nothing.".to_string(),
    }
}

hark_skill!(roll);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_spoken_naturally() {
        assert_eq!(speak(&[4], 4), "You rolled a 4.");
        assert_eq!(speak(&[3, 5, 6], 14), "You rolled 3, 5 and 6: 14 in total.");
    }
}
