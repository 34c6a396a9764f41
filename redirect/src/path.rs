//! Percent-encoding normalization of request paths (RFC 3986 §6.2.2.2).
//!
//! `/%50abc` and `/Pabc` are the same URI: a percent-encoded *unreserved* character
//! (`ALPHA / DIGIT / "-" / "." / "_" / "~"`, RFC 3986 §2.3) is equivalent to the character
//! itself, and normalizers decode it. Every other escape (reserved characters such as
//! `%2F`, non-ASCII and control bytes) is kept as it is: decoding it would change the
//! path's meaning. A `%` not followed by two hex digits is not a valid URI path
//! (RFC 3986 §2.1, `pct-encoded = "%" HEXDIG HEXDIG`).
//!
//! The HTTP server normalizes a request's path before dispatching it, and the redirect
//! handler normalizes the code it reads from the path (for routers that call it directly),
//! so that a code spelled with escapes finds its link; a path whose code still is not
//! `[A-Za-z0-9_-]{1,64}` after normalization answers 404, a malformed escape 400.

use std::borrow::Cow;

/// Why a path cannot be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedEscape {
    /// Byte offset of the offending `%` in the path.
    pub at: usize,
}

/// `path` with every percent-encoded unreserved character decoded (hex digits in either
/// case); other escapes are kept verbatim. Borrowed when `path` holds no such escape.
///
/// # Errors
/// [`MalformedEscape`] when a `%` is not followed by two hex digits.
pub fn normalize_unreserved(path: &str) -> Result<Cow<'_, str>, MalformedEscape> {
    let bytes = path.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else { return Ok(Cow::Borrowed(path)) };
    let mut out: Option<String> = None;
    let mut i = first;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b))) else {
            return Err(MalformedEscape { at: i });
        };
        let decoded = hi << 4 | lo;
        if is_unreserved(decoded) {
            let s = out.get_or_insert_with(|| String::with_capacity(path.len()));
            s.push_str(&path[copied..i]);
            s.push(char::from(decoded));
            copied = i + 3;
        }
        i += 3;
    }
    Ok(match out {
        Some(mut s) => {
            s.push_str(&path[copied..]);
            Cow::Owned(s)
        }
        None => Cow::Borrowed(path),
    })
}

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Naive reference: decode every escape to a byte, then re-encode (upper-case hex)
    /// every byte that was escaped and is not unreserved. Agrees with
    /// [`normalize_unreserved`] up to the case of the kept escapes' hex digits.
    fn reference(path: &str) -> Option<String> {
        let b = path.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                let v = u8::from_str_radix(h, 16).ok()?;
                if h.starts_with('+') || h.starts_with('-') {
                    return None;
                }
                if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                    out.push(char::from(v));
                } else {
                    out.push_str(&format!("%{v:02X}"));
                }
                i += 3;
            } else {
                let c = path[i..].chars().next()?;
                out.push(c);
                i += c.len_utf8();
            }
        }
        Some(out)
    }

    fn upper_escapes(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            out.push('%');
            out.push_str(&rest[p + 1..p + 3].to_ascii_uppercase());
            rest = &rest[p + 3..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_kept() {
        assert_eq!(normalize_unreserved("/%50abc").as_deref(), Ok("/Pabc"));
        assert_eq!(normalize_unreserved("/a%62c%2d%5F%7e%2E").as_deref(), Ok("/abc-_~."));
        assert_eq!(normalize_unreserved("/a%2Fb%20c%C3%BC%00").as_deref(), Ok("/a%2Fb%20c%C3%BC%00"));
        assert_eq!(normalize_unreserved("/plain"), Ok(Cow::Borrowed("/plain")));
        assert!(matches!(normalize_unreserved("/a%2Fb"), Ok(Cow::Borrowed(_))), "nothing decoded: borrowed");
    }

    #[test]
    fn malformed_escapes_are_errors() {
        assert_eq!(normalize_unreserved("/abc%"), Err(MalformedEscape { at: 4 }));
        assert_eq!(normalize_unreserved("/abc%4"), Err(MalformedEscape { at: 4 }));
        assert_eq!(normalize_unreserved("/%zzabc"), Err(MalformedEscape { at: 1 }));
        assert_eq!(normalize_unreserved("/%41%+1"), Err(MalformedEscape { at: 4 }));
        assert_eq!(normalize_unreserved("/%41%é"), Err(MalformedEscape { at: 4 }));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(parts in proptest::collection::vec(prop_oneof![
            any::<u8>().prop_map(|b| format!("%{b:02x}")),
            any::<u8>().prop_map(|b| format!("%{b:02X}")),
            "[%0-9a-fA-Fg+-]{0,3}",
            "\\PC{0,4}",
        ], 0..12)) {
            let path = format!("/{}", parts.concat());
            match (normalize_unreserved(&path), reference(&path)) {
                (Ok(got), Some(want)) => prop_assert_eq!(upper_escapes(&got), want),
                (Err(_), None) => {}
                (got, want) => prop_assert!(false, "{path:?}: {got:?} vs reference {want:?}"),
            }
        }
    }
}
