//! A cursor over one HTTP field value that reads the common rules of RFC 9110 §5.6 every
//! structured field shares: tokens (§5.6.2), optional whitespace (§5.6.3) and quoted strings
//! with their quoted-pairs (§5.6.4). [`crate::media_type`] reads `Content-Type` with it and
//! the redirect crate reads RFC 7239 `Forwarded` with it, so a quoted `;` or `,` and an
//! escaped `\"` mean the same in both.
//!
//! It works on bytes, because field values may hold obs-text (bytes 0x80–0xFF) that need
//! not be UTF-8; a value read from a `&str` stays UTF-8 (only ASCII quotes and backslashes
//! are dropped).

/// A cursor over the bytes of one field value; each reader consumes what it read and leaves
/// the cursor where it stopped, also when it returns `None`.
#[derive(Debug, Clone)]
pub struct FieldReader<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> FieldReader<'a> {
    /// A cursor at the start of `value`.
    pub fn new(value: &'a [u8]) -> Self {
        Self { s: value, i: 0 }
    }

    /// The next byte, not consumed; `None` at the end.
    pub fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Whether the whole value was read.
    pub fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    /// Consumes `b` when it is the next byte; whether it was.
    pub fn eat(&mut self, b: u8) -> bool {
        let next = self.peek() == Some(b);
        self.i += usize::from(next);
        next
    }

    /// Skips optional whitespace (OWS, RFC 9110 §5.6.3: spaces and tabs).
    pub fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// A token (RFC 9110 §5.6.2: one or more [`is_tchar`] bytes); `None` when none starts
    /// here.
    pub fn token(&mut self) -> Option<&'a [u8]> {
        let (s, start) = (self.s, self.i);
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        s.get(start..self.i).filter(|t| !t.is_empty())
    }

    /// A quoted string (RFC 9110 §5.6.4) starting here, its content appended to `out` with
    /// the quoted-pairs decoded (`"a\"b"` gives `a"b`). qdtext is a tab, a space or a
    /// visible character other than `"` and `\`, or obs-text; a quoted-pair is `\` and a
    /// tab, a space, a visible character or obs-text. `None` when no `"` starts here, without
    /// a closing quote, or for any other byte (a control character).
    pub fn quoted_string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    let c = *self.s.get(self.i + 1).filter(|&&c| c == b'\t' || c == b' ' || c >= 0x21)?;
                    if c == 0x7f {
                        return None;
                    }
                    out.push(c);
                    self.i += 2;
                }
                c if c == b'\t' || c == b' ' || c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80 => {
                    out.push(c);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }

    /// A parameter value (`token / quoted-string`, as in RFC 9110 §5.6.6 and RFC 7239 §4)
    /// appended to `out`, a quoted one without its quotes and with its quoted-pairs decoded.
    /// Returns whether it was quoted; `None` when neither starts here or the quoted string
    /// is malformed.
    pub fn token_or_quoted_string(&mut self, out: &mut Vec<u8>) -> Option<bool> {
        if self.peek() == Some(b'"') {
            self.quoted_string(out)?;
            return Some(true);
        }
        out.extend_from_slice(self.token()?);
        Some(false)
    }
}

/// `tchar` of RFC 9110 §5.6.2: ASCII letters and digits and ``!#$%&'*+-.^_`|~``.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &[u8]) -> Option<(Vec<u8>, bool, Vec<u8>)> {
        let mut r = FieldReader::new(s);
        let mut out = Vec::new();
        let quoted = r.token_or_quoted_string(&mut out)?;
        Some((out, quoted, s[r.i..].to_vec()))
    }

    #[test]
    fn tokens_stop_at_the_first_byte_outside_tchar() {
        assert_eq!(value(b"utf-8;x"), Some((b"utf-8".to_vec(), false, b";x".to_vec())));
        assert_eq!(value(b"a b"), Some((b"a".to_vec(), false, b" b".to_vec())));
        assert_eq!(value(b";"), None);
        assert_eq!(value(b""), None);
        // Every tchar, and each excluded ASCII visible byte ends a token.
        let tchars: Vec<u8> = (0u8..=0x7f).filter(|&b| is_tchar(b)).collect();
        assert_eq!(tchars.len(), 26 * 2 + 10 + 15);
        for b in b"\"(),/:;<=>?@[\\]{} \t".iter().copied() {
            assert!(!is_tchar(b), "{}", b as char);
        }
    }

    #[test]
    fn quoted_strings_decode_quoted_pairs_and_keep_separators() {
        assert_eq!(value(br#""a\"b";x"#), Some((b"a\"b".to_vec(), true, b";x".to_vec())));
        assert_eq!(value(br#""a;b, c""#), Some((b"a;b, c".to_vec(), true, vec![])));
        assert_eq!(value(br#""utf\-8""#), Some((b"utf-8".to_vec(), true, vec![])));
        assert_eq!(value(br#""\\""#), Some((b"\\".to_vec(), true, vec![])));
        assert_eq!(value(b"\"\""), Some((vec![], true, vec![])));
        assert_eq!(value(b"\"\t \xc3\xa9\""), Some((b"\t \xc3\xa9".to_vec(), true, vec![])));
        assert_eq!(value(b"\"\\\xff\""), Some((b"\xff".to_vec(), true, vec![])));
    }

    #[test]
    fn malformed_quoted_strings_are_none() {
        for bad in [&b"\"abc"[..], b"\"a\\", b"\"a\x01\"", b"\"a\x7f\"", b"\"a\\\x01\"", b"\"a\\\x7f\"", b"\"a\n\""] {
            assert_eq!(value(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
