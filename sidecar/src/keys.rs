//! Virtual keys as LiteLLM makes and stores them, so LiteLLM's key tables import and
//! their client keys keep working.
//!
//! - a key is `"sk-" + secrets.token_urlsafe(16)`: 16 random bytes, URL-safe base64
//!   without padding (22 characters);
//! - only its `hash_token` is stored: unsalted SHA-256, lowercase hex (64 characters);
//! - it is shown as `key_name = "sk-...<last 4>"` (`abbreviate_api_key`).
//!
//! Where an endpoint names a key it takes the plaintext or the hash: text starting with
//! `sk-` is hashed, anything else is taken as a hash (LiteLLM's `_hash_token_if_needed`).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new key, `sk-` + 22 URL-safe characters from the OS's random source.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format!("sk-{}", base64url(&bytes)))
}

/// LiteLLM's `hash_token`: SHA-256 of the UTF-8 key, lowercase hex.
pub fn hash_token(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// A key's stored form whichever form the caller named it in.
pub fn to_hash(key_or_hash: &str) -> String {
    if key_or_hash.starts_with("sk-") {
        hash_token(key_or_hash)
    } else {
        key_or_hash.to_owned()
    }
}

/// Is this a stored hash (64 lowercase hex digits)?
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// LiteLLM's `abbreviate_api_key`: `sk-...` and the last four characters.
pub fn key_name(key: &str) -> String {
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("sk-...{tail}")
}

/// Constant-time equality of a presented secret with the configured one: both are hashed
/// first, so neither the content nor the length of the secret leaks through timing.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 15] {
            out.extend(DIGITS.get(usize::from(nibble)).map(|d| char::from(*d)));
        }
    }
    out
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.extend(ALPHABET.get(idx as usize).map(|c| char::from(*c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_litellm_hash_token() {
        // hashlib.sha256(b"sk-1234").hexdigest()
        assert_eq!(hash_token("sk-1234"), "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b");
        assert_eq!(hash_token(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_hash(&hash_token("sk-anything")));
        assert_eq!(to_hash("sk-abc"), hash_token("sk-abc"));
        let h = hash_token("sk-abc");
        assert_eq!(to_hash(&h), h);
        assert!(!is_hash("sk-abc") && !is_hash(&h.to_uppercase()));
    }

    #[test]
    fn generated_keys_look_like_litellm_keys() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let key = generate().unwrap_or_default();
            assert_eq!(key.len(), 3 + 22, "{key}");
            assert!(key.starts_with("sk-"));
            assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(seen.insert(key));
        }
    }

    #[test]
    fn base64url_matches_python_token_urlsafe_encoding() {
        // base64.urlsafe_b64encode(bytes(range(16))).rstrip(b"=")
        let bytes: Vec<u8> = (0u8..16).collect();
        assert_eq!(base64url(&bytes), "AAECAwQFBgcICQoLDA0ODw");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn names_and_secrets() {
        assert_eq!(key_name("sk-abcdefgh1234"), "sk-...1234");
        assert_eq!(key_name("sk-"), "sk-...sk-");
        assert!(secret_matches("sk-master", "sk-master"));
        assert!(!secret_matches("sk-master2", "sk-master"));
        assert!(!secret_matches("", "sk-master"));
    }
}
