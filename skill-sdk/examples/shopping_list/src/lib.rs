//! `shopping_list`: a list kept in the skill's own key/value store, so it
//! survives hub restarts and is shared by every satellite in the house.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::prelude::*;
use serde::Deserialize;

const KEY: &str = "items";
/// Items kept at most; the store has a size cap anyway.
const MAX_ITEMS: usize = 100;

#[derive(Deserialize)]
struct Args {
    action: String,
    #[serde(default)]
    item: Option<String>,
}

fn handle(request: Request<Args>) -> Result<SkillReply, SkillError> {
    let mut items = load()?;
    let item = request
        .args
        .item
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty());
    let speech = match (request.args.action.as_str(), item) {
        ("add", Some(item)) => {
            if items.iter().any(|i| i.eq_ignore_ascii_case(item)) {
                format!("{item} is already on the shopping list.")
            } else if items.len() >= MAX_ITEMS {
                return Err(SkillError::new("full", "The shopping list is full."));
            } else {
                items.push(item.to_string());
                save(&items)?;
                format!("Added {item} to the shopping list.")
            }
        }
        ("remove", Some(item)) => {
            let before = items.len();
            items.retain(|i| !i.eq_ignore_ascii_case(item));
            if items.len() == before {
                format!("{item} is not on the shopping list.")
            } else {
                save(&items)?;
                format!("Removed {item} from the shopping list.")
            }
        }
        ("add" | "remove", None) => {
            return Err(SkillError::new("no_item", "Which item?"));
        }
        ("clear", _) => {
            kv::delete(KEY)?;
            items.clear();
            "The shopping list is empty now.".to_string()
        }
        _ => speak_list(&items),
    };
    Ok(SkillReply::speech(speech).with_data(to_data(&items)?))
}

fn load() -> Result<Vec<String>, SkillError> {
    Ok(match kv::get(KEY)? {
        Some(bytes) => String::from_utf8(bytes)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect(),
        None => Vec::new(),
    })
}

fn save(items: &[String]) -> Result<(), SkillError> {
    kv::set(KEY, items.join("\n").as_bytes())?;
    Ok(())
}

fn speak_list(items: &[String]) -> String {
    match items {
        [] => "The shopping list is empty.".to_string(),
        [one] => format!("The shopping list has {one}."),
        [rest @ .., last] => format!("The shopping list has {} and {last}.", rest.join(", ")),
    }
}

hark_skill!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_spoken_naturally() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(speak_list(&items(&[])), "The shopping list is empty.");
        assert_eq!(speak_list(&items(&["milk"])), "The shopping list has milk.");
        assert_eq!(
            speak_list(&items(&["milk", "eggs", "tea"])),
            "The shopping list has milk, eggs and tea."
        );
    }
}
