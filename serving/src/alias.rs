//! Short codes: custom alias rules, reserved words and generated codes.
//!
//! Codes are case-sensitive everywhere (creation, lookup, uniqueness, PATCH, DELETE):
//! `MyPromo` and `mypromo` are two different links. Reserved words are compared
//! case-insensitively, so neither `v1` nor `V1` can ever shadow a route.

use rand::RngExt;
use serde_json::json;

use crate::error::ApiError;

/// Longest custom alias, in characters.
pub const MAX_ALIAS_LEN: usize = 64;

/// Aliases that can never be links: every first path segment the service serves on its
/// short domains (`v1`, `healthz`, `readyz`, `metrics`) plus well-known and likely future
/// ones. Compared ASCII-case-insensitively.
pub const RESERVED_ALIASES: &[&str] = &[
    "v1",
    "v2",
    "api",
    "admin",
    "health",
    "healthz",
    "readyz",
    "livez",
    "metrics",
    "openapi.json",
    "favicon.ico",
    "robots.txt",
    "sitemap.xml",
    "static",
    "assets",
    ".well-known",
    "docs",
    "login",
    "logout",
    "status",
];

/// Alphabet of generated codes (base62).
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether `s` is 1–64 characters of `[A-Za-z0-9_-]` (the shape of every code).
pub fn is_code_charset(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ALIAS_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `s` is a reserved word (ASCII case-insensitive).
pub fn is_reserved(s: &str) -> bool {
    RESERVED_ALIASES.iter().any(|r| r.eq_ignore_ascii_case(s))
}

/// Checks a requested `custom_alias`.
///
/// Errors: 400 `alias_reserved` (checked first, so `robots.txt` is named as reserved, not
/// as malformed); 400 `invalid_alias` when empty, longer than 64 characters or outside
/// `[A-Za-z0-9_-]`.
pub fn validate_custom_alias(alias: &str) -> Result<(), ApiError> {
    if is_reserved(alias) {
        return Err(ApiError::bad_request("alias_reserved", format!("alias \"{alias}\" is reserved")).with_details(json!({ "alias": alias })));
    }
    if !is_code_charset(alias) {
        return Err(ApiError::bad_request("invalid_alias", "custom_alias must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
            .with_details(json!({ "alias": alias, "max_length": MAX_ALIAS_LEN })));
    }
    Ok(())
}

/// A random base62 code of `len` characters from the thread-local CSPRNG (ChaCha12 seeded
/// from the OS, `rand::rng()`), uniform per character; never a reserved word.
pub fn generate_code(len: usize) -> String {
    let mut rng = rand::rng();
    loop {
        let code: String = (0..len).map(|_| BASE62[rng.random_range(0..BASE62.len())] as char).collect();
        if !is_reserved(&code) {
            return code;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_rules() {
        assert!(validate_custom_alias("MyPromo").is_ok());
        assert!(validate_custom_alias("a").is_ok());
        assert!(validate_custom_alias(&"x".repeat(64)).is_ok());
        assert_eq!(validate_custom_alias(&"x".repeat(65)).expect_err("long").code, "invalid_alias");
        assert_eq!(validate_custom_alias("").expect_err("empty").code, "invalid_alias");
        assert_eq!(validate_custom_alias("a b").expect_err("space").code, "invalid_alias");
        assert_eq!(validate_custom_alias("ü").expect_err("non-ascii").code, "invalid_alias");
        for r in ["v1", "V1", "api", "ADMIN", "healthz", "robots.txt", ".well-known", "favicon.ico", "openapi.json", "Metrics"] {
            assert_eq!(validate_custom_alias(r).expect_err(r).code, "alias_reserved", "{r}");
        }
    }

    #[test]
    fn generated_codes_have_shape_and_spread() {
        let mut seen = std::collections::HashSet::new();
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            let c = generate_code(7);
            assert_eq!(c.len(), 7);
            assert!(is_code_charset(&c));
            for b in c.bytes() {
                counts[BASE62.iter().position(|x| *x == b).expect("alphabet")] += 1;
            }
            seen.insert(c);
        }
        assert_eq!(seen.len(), 2000, "7 base62 chars: collisions among 2000 are ~1e-6 likely");
        // 14000 draws over 62 symbols: mean 225.8, sd ~15; every symbol must show up well within 6 sd
        assert!(counts.iter().all(|&n| (135..=320).contains(&n)), "{counts:?}");
    }
}
