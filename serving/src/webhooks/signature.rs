//! Webhook signatures.
//!
//! Every delivery carries `Sluice-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//! the lowercase hex HMAC-SHA256 (RFC 2104, FIPS 180-4) keyed with the webhook's secret over
//! the bytes `"<t>.<raw request body>"` — the scheme Stripe documents for its webhooks.
//! A receiver recomputes it over the raw body, compares in constant time, and rejects
//! timestamps too far from its clock (replays).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "sluice-signature";

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length (longer ones are hashed), so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("hmac takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value `t=<timestamp>,v1=<signature>`.
pub fn header_value(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231_test_case_2() {
        // The primitive, pinned by RFC 4231 §4.3 (test case 2: key "Jefe").
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac.finalize().into_bytes()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // sign() is that primitive over "<t>.<body>".
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").expect("key");
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(sign(b"k", 1_700_000_000, br#"{"a":1}"#), hex::encode(mac.finalize().into_bytes()));
        assert_eq!(header_value(b"k", 5, b"x"), format!("t=5,v1={}", sign(b"k", 5, b"x")));
    }
}
