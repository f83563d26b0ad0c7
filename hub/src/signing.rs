//! Skill signatures: `manifest.sig` beside `manifest.json` holds an ed25519
//! signature over the manifest's exact bytes, which pin the module through
//! its `sha256`. The file is JSON, `{"signer": "ed25519:<base64 public key>",
//! "signature": "<base64>"}`, so a refusal can tell an unknown signer from a
//! manifest changed after signing.

use std::path::Path;

use ct_codecs::{Base64, Decoder, Encoder};
use ed25519_compact::{PublicKey, SecretKey, Signature as EdSignature};
use serde::{Deserialize, Serialize};

use crate::policy::Signature;

/// Largest `manifest.sig` read.
const MAX_SIG_FILE: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigFile {
    pub signer: String,
    pub signature: String,
}

/// `ed25519:<base64>` of a public key.
pub fn format_key(key: &PublicKey) -> String {
    format!(
        "ed25519:{}",
        Base64::encode_to_string(key.as_ref()).expect("32 bytes encode")
    )
}

/// Parses `ed25519:<base64 of 32 bytes>`.
pub fn parse_key(text: &str) -> Result<PublicKey, String> {
    let b64 = text
        .trim()
        .strip_prefix("ed25519:")
        .ok_or_else(|| format!("\"{text}\" is not ed25519:<base64 public key>"))?;
    let bytes = Base64::decode_to_vec(b64, None).map_err(|_| format!("\"{b64}\" is not base64"))?;
    PublicKey::from_slice(&bytes).map_err(|_| {
        format!(
            "an ed25519 public key is 32 bytes, this one is {}",
            bytes.len()
        )
    })
}

/// Signs the exact bytes of a manifest.
pub fn sign(manifest: &[u8], secret: &SecretKey) -> SigFile {
    let signature = secret.sign(manifest, None);
    SigFile {
        signer: format_key(&secret.public_key()),
        signature: Base64::encode_to_string(signature.as_ref()).expect("64 bytes encode"),
    }
}

/// What `manifest.sig` in `dir` says about `manifest`, judged against the
/// trusted keys.
pub fn check(dir: &Path, manifest: &[u8], trust_keys: &[String]) -> Signature {
    let path = dir.join("manifest.sig");
    let rejected = |reason: String| Signature::Rejected { reason };
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Signature::Unsigned,
        Err(e) => return rejected(format!("cannot read manifest.sig: {e}")),
        Ok(meta) if meta.len() > MAX_SIG_FILE => {
            return rejected(format!(
                "manifest.sig is {} bytes; a signature file is under {MAX_SIG_FILE}",
                meta.len()
            ));
        }
        Ok(_) => {}
    }
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => return rejected(format!("cannot read manifest.sig: {e}")),
    };
    let sig: SigFile = match serde_json::from_slice(&text) {
        Ok(sig) => sig,
        Err(e) => {
            return rejected(format!(
                "manifest.sig is not a signature file ({e}); sign again with `hark skill sign`"
            ));
        }
    };
    let key = match parse_key(&sig.signer) {
        Ok(key) => key,
        Err(e) => return rejected(format!("manifest.sig: signer {e}")),
    };
    let signature = match Base64::decode_to_vec(sig.signature.trim(), None)
        .ok()
        .and_then(|b| EdSignature::from_slice(&b).ok())
    {
        Some(s) => s,
        None => return rejected("manifest.sig: the signature is not base64 of 64 bytes".into()),
    };
    if key.verify(manifest, &signature).is_err() {
        return rejected(format!(
            "bad signature: manifest.json is not what {} signed (was it edited after signing?)",
            sig.signer
        ));
    }
    let signer = format_key(&key);
    let trusted = trust_keys
        .iter()
        .filter_map(|k| parse_key(k).ok())
        .any(|k| k == key);
    if trusted {
        Signature::Verified { signer }
    } else {
        Signature::UnknownSigner { signer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_compact::{KeyPair, Seed};

    fn keys(n: u8) -> KeyPair {
        KeyPair::from_seed(Seed::new([n; 32]))
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hark-sig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_sig(d: &Path, sig: &SigFile) {
        std::fs::write(d.join("manifest.sig"), serde_json::to_vec(sig).unwrap()).unwrap();
    }

    #[test]
    fn a_signature_by_a_trusted_key_verifies() {
        let d = dir("ok");
        let k = keys(1);
        write_sig(&d, &sign(b"{\"name\":\"dice\"}", &k.sk));
        let trusted = [format_key(&k.pk)];
        assert_eq!(
            check(&d, b"{\"name\":\"dice\"}", &trusted),
            Signature::Verified {
                signer: trusted[0].clone()
            }
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_failure_has_its_own_reason() {
        let d = dir("bad");
        let k = keys(2);
        let trusted = [format_key(&k.pk)];
        assert_eq!(check(&d, b"m", &trusted), Signature::Unsigned);

        write_sig(&d, &sign(b"m", &k.sk));
        let Signature::Rejected { reason } = check(&d, b"m edited", &trusted) else {
            panic!()
        };
        assert!(reason.contains("bad signature"), "{reason}");

        let stranger = keys(3);
        write_sig(&d, &sign(b"m", &stranger.sk));
        assert_eq!(
            check(&d, b"m", &trusted),
            Signature::UnknownSigner {
                signer: format_key(&stranger.pk)
            }
        );

        std::fs::write(d.join("manifest.sig"), b"\x00\x01garbage").unwrap();
        let Signature::Rejected { reason } = check(&d, b"m", &trusted) else {
            panic!()
        };
        assert!(reason.contains("not a signature file"), "{reason}");

        let mut truncated = sign(b"m", &k.sk);
        truncated.signature.truncate(20);
        write_sig(&d, &truncated);
        let Signature::Rejected { reason } = check(&d, b"m", &trusted) else {
            panic!()
        };
        assert!(reason.contains("64 bytes"), "{reason}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn keys_round_trip_through_their_text_form() {
        let k = keys(4);
        assert_eq!(parse_key(&format_key(&k.pk)).unwrap(), k.pk);
        assert!(parse_key("rsa:AAAA").is_err());
        assert!(parse_key("ed25519:AAAA").is_err());
    }
}
