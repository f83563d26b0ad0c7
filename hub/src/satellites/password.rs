//! Satellite passwords: generated from the OS's randomness, stored as
//! Argon2id hashes.
//!
//! The cost is OWASP's fifth Argon2id setting (7 MiB, 5 passes, 1 lane): a
//! Pi 3 checks one in well under a second, and a login is checked once per
//! connection (the gate remembers a login it already checked).

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

use super::RegistryError;

const MEMORY_KIB: u32 = 7 * 1024;
const PASSES: u32 = 5;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("constant Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// `n` random bytes from the OS.
pub fn random<const N: usize>() -> Result<[u8; N], RegistryError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| RegistryError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A new password: 192 random bits as 32 URL-safe characters, which every
/// satellite's config file and shell can hold without quoting.
pub fn generate() -> Result<String, RegistryError> {
    use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
    let bytes = random::<24>()?;
    Base64UrlSafeNoPadding::encode_to_string(bytes)
        .map_err(|e| RegistryError::Random(e.to_string()))
}

/// The Argon2id PHC string of `secret` with a fresh 16-byte salt.
pub fn hash(secret: &str) -> Result<String, RegistryError> {
    let salt = random::<16>()?;
    argon2()
        .hash_password_with_salt(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| RegistryError::Random(format!("cannot hash a password: {e}")))
}

/// Whether `secret` is the password `stored` was made from.
pub fn verify(secret: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| argon2().verify_password(secret.as_bytes(), &h).is_ok())
}

/// A stored hash must be an Argon2id PHC string: anything else (a password
/// pasted in the clear, a fast hash) is refused when the registry is read.
pub fn check_stored(stored: &str) -> Result<(), String> {
    match PasswordHash::new(stored) {
        Ok(h) if h.algorithm == argon2::ARGON2ID_IDENT => Ok(()),
        _ => {
            Err("password is not an Argon2id hash; re-issue it with `hark satellite rotate`".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_distinct_and_hash_with_their_salt() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let (ha, hb) = (hash(&a).unwrap(), hash(&a).unwrap());
        assert_ne!(ha, hb, "each hash has its own salt");
        assert!(ha.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{ha}");
        assert!(verify(&a, &ha) && verify(&a, &hb));
        assert!(!verify(&b, &ha));
        assert!(!verify(&a, "not a hash"));
        assert!(check_stored(&ha).is_ok());
        assert!(check_stored("$argon2i$v=19$m=7168,t=5,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
    }
}
