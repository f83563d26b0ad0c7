//! `hark audit prove <seq>` and `hark audit verify --proof`: that one record is in the log, shown
//! against the newest signed checkpoint by an RFC 6962 inclusion proof, and checked offline with
//! only the hub's public key. A proof is JSON:
//! `{"seq":N,"record":"<the line as written>","tree_size":M,"proof":["<base64>",…],"checkpoint":"<signed note>"}`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ct_codecs::{Base64, Decoder, Encoder};
use ed25519_compact::PublicKey;
use serde::{Deserialize, Serialize};

use super::checkpoint::{checkpoints_path, open_note, split_notes};
use super::line::parse_line;
use super::merkle::{Hash, inclusion_proof, leaf_hash, root_of, verify_inclusion};
use super::segments::log_files;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    pub seq: u64,
    /// The record's line as written, without its '\n'.
    pub record: String,
    pub tree_size: u64,
    /// The audit path, leaf side first.
    pub proof: Vec<String>,
    /// The signed checkpoint whose root the proof leads to.
    pub checkpoint: String,
}

/// The proof that record `seq` of `log` is in the tree of its newest checkpoint.
pub fn prove(log: &Path, seq: u64, key: &PublicKey) -> Result<Proof, String> {
    let cp_path = checkpoints_path(log);
    let text = std::fs::read_to_string(&cp_path)
        .map_err(|e| format!("cannot read {}: {e}", cp_path.display()))?;
    let Some((line, note)) = split_notes(&text).pop() else {
        return Err(format!("{} holds no checkpoint yet", cp_path.display()));
    };
    let checkpoint = open_note(&note, key).map_err(|e| {
        format!(
            "the newest checkpoint ({} line {line}): {e}",
            cp_path.display()
        )
    })?;
    if seq == 0 || seq > checkpoint.size {
        return Err(format!(
            "the newest checkpoint covers seq 1 to {}; seq {seq} is not among them (a newer \
             record is covered by the next checkpoint)",
            checkpoint.size
        ));
    }
    let files = log_files(log).map_err(|e| format!("cannot list {}: {e}", log.display()))?;
    let mut chained: Box<dyn std::io::Read> = Box::new(std::io::empty());
    for path in files {
        let file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        chained = Box::new(std::io::Read::chain(chained, file));
    }
    let mut reader = BufReader::new(chained);
    let mut leaves: Vec<Hash> = Vec::new();
    let mut record = None;
    let mut buf = Vec::new();
    while (leaves.len() as u64) < checkpoint.size {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        if n == 0 || buf.pop() != Some(b'\n') {
            break;
        }
        let Ok(rec) = parse_line(&buf) else {
            continue;
        };
        if leaves.len() as u64 + 1 == seq {
            if rec.seq != seq {
                return Err(format!(
                    "record {} of the log has seq {}: run hark audit verify",
                    seq, rec.seq
                ));
            }
            record = Some(String::from_utf8_lossy(&buf).into_owned());
        }
        leaves.push(leaf_hash(&buf));
    }
    let Some(record) = record.filter(|_| root_of(&leaves) == checkpoint.root) else {
        return Err(format!(
            "{} no longer matches its newest checkpoint: run hark audit verify",
            log.display()
        ));
    };
    let index = usize::try_from(seq - 1).map_err(|e| e.to_string())?;
    Ok(Proof {
        seq,
        record,
        tree_size: checkpoint.size,
        proof: inclusion_proof(&leaves, index)
            .iter()
            .map(|h| Base64::encode_to_string(h).expect("32 bytes encode"))
            .collect(),
        checkpoint: note,
    })
}

/// Checks a proof with only the public key; a line saying what it shows, or why it fails.
pub fn verify_proof(text: &[u8], key: &PublicKey) -> Result<String, String> {
    let proof: Proof = serde_json::from_slice(text)
        .map_err(|e| format!("it is not a proof from `hark audit prove`: {e}"))?;
    let checkpoint =
        open_note(&proof.checkpoint, key).map_err(|e| format!("its checkpoint: {e}"))?;
    if checkpoint.size != proof.tree_size {
        return Err(format!(
            "it says the tree has {} records, its checkpoint says {}",
            proof.tree_size, checkpoint.size
        ));
    }
    let rec = parse_line(proof.record.as_bytes())
        .map_err(|(_, reason)| format!("its record: {reason}"))?;
    if rec.seq != proof.seq {
        return Err(format!(
            "it is for seq {}, its record has seq {}",
            proof.seq, rec.seq
        ));
    }
    let mut path = Vec::new();
    for h in &proof.proof {
        let hash: Hash = Base64::decode_to_vec(h, None)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("\"{h}\" in its proof is not a base64 SHA-256 hash"))?;
        path.push(hash);
    }
    let leaf = leaf_hash(proof.record.as_bytes());
    if !verify_inclusion(
        proof.seq - 1,
        proof.tree_size,
        &leaf,
        &path,
        &checkpoint.root,
    ) {
        return Err(format!(
            "the record and its proof do not lead to the checkpoint's root: seq {} is not shown \
             to be in the log",
            proof.seq
        ));
    }
    Ok(format!(
        "seq {} is in the log of {} at tree size {}",
        proof.seq, checkpoint.origin, checkpoint.size
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::test_util::{TestDir, request};
    use ed25519_compact::{KeyPair, Seed};

    #[test]
    fn a_proof_verifies_and_one_changed_byte_breaks_it() {
        let dir = TestDir::new("prove");
        let path = dir.log();
        let key = KeyPair::from_seed(Seed::new([4; 32])).sk;
        let mut log = AuditLog::open_signed(&path, Some(key.clone())).unwrap();
        for i in 1..=11 {
            log.append(&request(i)).unwrap();
        }
        log.prepare_checkpoint().unwrap().run().unwrap();
        log.append(&request(12)).unwrap();
        drop(log);
        let pk = key.public_key();

        assert!(
            prove(&path, 12, &pk)
                .unwrap_err()
                .contains("covers seq 1 to 11")
        );
        for seq in [1, 6, 11] {
            let proof = prove(&path, seq, &pk).unwrap();
            let text = serde_json::to_vec(&proof).unwrap();
            let ok = verify_proof(&text, &pk).unwrap();
            assert!(
                ok.starts_with(&format!("seq {seq} is in the log of hark-audit/")),
                "{ok}"
            );

            // Any one byte of the record or the proof changed: refused.
            let mut bent = proof.clone();
            bent.record = bent.record.replacen("kitchen", "kitchan", 1);
            assert!(verify_proof(&serde_json::to_vec(&bent).unwrap(), &pk).is_err());
            let mut bent = proof.clone();
            let first = bent.proof[0].clone();
            let flipped = if first.starts_with('A') { "B" } else { "A" };
            bent.proof[0] = format!("{flipped}{}", &first[1..]);
            let e = verify_proof(&serde_json::to_vec(&bent).unwrap(), &pk).unwrap_err();
            assert!(e.contains("do not lead to the checkpoint's root"), "{e}");
        }
        let other = KeyPair::from_seed(Seed::new([5; 32])).pk;
        let text = serde_json::to_vec(&prove(&path, 3, &pk).unwrap()).unwrap();
        assert!(verify_proof(&text, &other).is_err());
    }
}
