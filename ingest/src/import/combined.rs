//! Parsing one line of an access log in combined log format, the format nginx (`combined`)
//! and Apache (`LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\""`)
//! write:
//!
//! ```text
//! 192.0.2.10 - - [10/Oct/2024:13:55:36 +0000] "GET /abc123?utm=x HTTP/1.1" 302 0 "https://www.google.com/" "Mozilla/5.0 ..."
//! ```
//!
//! Also accepted: the common log format (no referrer and user agent), fractional seconds in
//! the time (`13:55:36.123`), and trailing extra fields (ignored). Quoted fields are
//! unescaped as both servers escape them: `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH` (nginx
//! escapes every non-ASCII byte this way; the bytes are reassembled and decoded as UTF-8,
//! invalid sequences replaced by U+FFFD). A `-` referrer is absent; a `-` user agent is the
//! empty string (what the redirect records for a request without the header).

/// One parsed access-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// `%h`: the client address as logged (usually an IP).
    pub host: String,
    /// `%t` as ms since the Unix epoch, UTC.
    pub ts_ms: i64,
    /// Request method (`GET`, `HEAD`, ...), as logged.
    pub method: String,
    /// Request target (`/abc?x=1`, or an absolute URL), unescaped.
    pub target: String,
    /// `%>s`.
    pub status: u16,
    /// Referrer; `None` for `-` or when the line has no referrer field.
    pub referrer: Option<String>,
    /// User agent; empty for `-` or when the line has no user-agent field.
    pub user_agent: String,
}

/// Why a line is not an access record (a stable snake_case code).
pub type ParseError = &'static str;

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_spaces(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    /// A space-delimited token.
    fn token(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != b' ' {
            self.i += 1;
        }
        (self.i > start).then(|| std::str::from_utf8(&self.s[start..self.i]).ok()).flatten()
    }

    /// `[...]`.
    fn bracketed(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        if self.s.get(self.i) != Some(&b'[') {
            return None;
        }
        let start = self.i + 1;
        let end = start + self.s[start..].iter().position(|&b| b == b']')?;
        self.i = end + 1;
        std::str::from_utf8(&self.s[start..end]).ok()
    }

    /// `"..."` with escapes decoded.
    fn quoted(&mut self) -> Option<String> {
        self.skip_spaces();
        if self.s.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match b {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => match self.s.get(self.i) {
                    Some(b'"') | Some(b'\\') => {
                        out.push(self.s[self.i]);
                        self.i += 1;
                    }
                    Some(b'n') => {
                        out.push(b'\n');
                        self.i += 1;
                    }
                    Some(b'r') => {
                        out.push(b'\r');
                        self.i += 1;
                    }
                    Some(b't') => {
                        out.push(b'\t');
                        self.i += 1;
                    }
                    Some(b'x') => {
                        match self.s.get(self.i + 1..self.i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                            Some(byte) => {
                                out.push(byte);
                                self.i += 3;
                            }
                            None => out.push(b'\\'),
                        }
                    }
                    _ => out.push(b'\\'),
                },
                _ => out.push(b),
            }
        }
        None
    }
}

/// `10/Oct/2024:13:55:36 +0000` (optionally `13:55:36.123`) as ms since the epoch, UTC.
pub fn parse_clf_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_str(s, "%d/%b/%Y:%H:%M:%S%.f %z").ok().map(|t| t.timestamp_millis())
}

/// Parses one line (without its line terminator). Errors: `malformed_line` (fields missing
/// or out of shape), `invalid_time`, `invalid_status`, `malformed_request` (the quoted
/// request is not `METHOD TARGET [PROTOCOL]`, e.g. a TLS handshake sent to the HTTP port).
pub fn parse_line(line: &str) -> Result<AccessRecord, ParseError> {
    let mut c = Cursor { s: line.as_bytes(), i: 0 };
    let host = c.token().ok_or("malformed_line")?.to_owned();
    let _ident = c.token().ok_or("malformed_line")?;
    let _user = c.token().ok_or("malformed_line")?;
    let time = c.bracketed().ok_or("malformed_line")?;
    let request = c.quoted().ok_or("malformed_line")?;
    let status = c.token().ok_or("malformed_line")?;
    let _bytes = c.token().ok_or("malformed_line")?;
    let ts_ms = parse_clf_time(time).ok_or("invalid_time")?;
    let status: u16 = status.parse().ok().filter(|s| (100..=599).contains(s)).ok_or("invalid_status")?;
    let (referrer, user_agent) = if c.at_end() {
        (None, String::new())
    } else {
        let r = c.quoted().ok_or("malformed_line")?;
        let ua = if c.at_end() { String::new() } else { c.quoted().ok_or("malformed_line")? };
        (Some(r).filter(|r| r != "-" && !r.is_empty()), if ua == "-" { String::new() } else { ua })
    };
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("malformed_request");
    };
    let protocol_ok = parts.next().is_none_or(|p| p.starts_with("HTTP/")) && parts.next().is_none();
    if !protocol_ok || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("malformed_request");
    }
    Ok(AccessRecord { host, ts_ms, method: method.to_owned(), target: target.to_owned(), status, referrer, user_agent })
}

/// The path of a request target: origin-form `/p?q` → `/p`; absolute-form
/// `http://h/p?q` → `/p`; anything else `None`.
pub fn target_path(target: &str) -> Option<&str> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let after_scheme = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
        &after_scheme[after_scheme.find('/')?..]
    };
    Some(rest.split(['?', '#']).next().unwrap_or(rest))
}
