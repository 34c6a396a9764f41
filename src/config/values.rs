//! Checks and decoders of single configuration values (flags and keys alike).

use anyhow::Context;

/// Checks a base URL (`--base-url`, `server.base-url`): http or https with a host, an empty
/// path, no query or fragment and no `user:password@` credentials (refused without echoing
/// them); a trailing dot of the host is dropped (`https://SHO.RT.` → `https://sho.rt/`, the
/// host short URLs carry). Returns the parsed origin.
///
/// Errors: a message starting with the quoted value (credentials removed) and saying what
/// is wrong with it.
pub fn check_base_url(raw: &str) -> Result<url::Url, String> {
    let invalid = |e: url::ParseError| format!("\"{raw}\" is not a valid url ({e})");
    let mut url = url::Url::parse(raw).map_err(invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        let _ = (url.set_username(""), url.set_password(None));
        return Err(format!("\"{url}\" (credentials removed here) must not contain user:password@ credentials: short URLs would not carry them"));
    }
    if let Some(host) = url.host_str().and_then(|h| h.strip_suffix('.')).filter(|h| !h.is_empty()).map(str::to_owned) {
        url.set_host(Some(&host)).map_err(invalid)?;
    }
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("\"{raw}\" must be an http or https origin"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!("\"{raw}\" must not have a path, query or fragment"));
    }
    Ok(url)
}

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
