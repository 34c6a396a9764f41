//! Checks and decoders of single configuration values (flags and keys alike).

use anyhow::Context;

/// Checks one own short domain (`--short-domain`, `server.short-domains`): a bare host
/// name or IP address as a URL's host would be (parsed like a link's host, by the `url`
/// crate: IDNA, no spaces or other forbidden characters), not empty, without scheme,
/// port, userinfo or path. Returns it as given.
///
/// Errors: a message naming the value and what is wrong with it.
pub fn check_short_domain(s: &str) -> Result<String, String> {
    const HINT: &str = "give a bare host name such as sho.rt.example";
    if s.trim().is_empty() {
        return Err(format!("{s:?} is empty: {HINT}"));
    }
    let bracketed = s.starts_with('[') && s.ends_with(']');
    if !bracketed && s.contains([':', '/', '?', '#', '@', '\\']) {
        return Err(format!("{s:?} is not a host name (no scheme, port, path or userinfo): {HINT}"));
    }
    match url::Url::parse(&format!("http://{s}/")) {
        Ok(u) if u.host_str().is_some() && u.path() == "/" => Ok(s.to_owned()),
        Ok(_) => Err(format!("{s:?} is not a host name: {HINT}")),
        Err(e) => Err(format!("{s:?} is not a host name ({e}): {HINT}")),
    }
}

/// Decodes a 64-hex-character secret.
pub fn parse_secret(s: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(s.trim()).context("visitor secret must be hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("visitor secret must be 64 hex characters (32 bytes)"))
}
