//! Strict JSON reading for request bodies and wire input: a JSON text whose objects repeat
//! a key is refused instead of keeping the last value (RFC 8259 §4 leaves duplicate names
//! to the implementation; serde_json keeps the last). An API that silently picks one of
//! two `long_url`s or `ts`s hides client bugs and lets a proxy and the server disagree on
//! what a request says, so every JSON body we accept is read with [`from_slice_strict`].

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Prefix of the message of a duplicate-key error (see [`duplicate_key`]).
const DUPLICATE: &str = "duplicate key ";

/// Why a JSON text was refused.
#[derive(Debug)]
pub enum StrictJsonError {
    /// Not JSON (syntax or early end), with serde_json's 1-based position.
    Syntax(serde_json::Error),
    /// An object repeats `key`; `line`/`column` (1-based) point just after the repeated key.
    DuplicateKey {
        /// The repeated member name.
        key: String,
        /// Line of the repeat.
        line: usize,
        /// Column just after the repeated key.
        column: usize,
    },
    /// The text starts with a UTF-8 byte order mark (`EF BB BF`): RFC 8259 §8.1 forbids one
    /// in JSON sent over a network, and serde_json would call it an "expected value".
    ByteOrderMark,
    /// The bytes are not UTF-8, which RFC 8259 §8.1 requires of JSON exchanged between
    /// systems; `byte` is the 0-based offset of the first byte of the invalid sequence.
    InvalidUtf8 {
        /// Offset (bytes, 0-based) of the first invalid byte.
        byte: usize,
    },
}

/// The UTF-8 byte order mark.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl std::fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrictJsonError::Syntax(e) => {
                write!(f, "{e}")?;
                // serde_json's words for an unpaired surrogate escape ("unexpected end of hex
                // escape" when no second \u escape follows a high one) do not say what is wrong.
                let msg = e.to_string();
                if msg.starts_with("unexpected end of hex escape") || msg.starts_with("lone leading surrogate") {
                    f.write_str(
                        " (an unpaired surrogate: a \\uD800–\\uDBFF escape must be followed by a \\uDC00–\\uDFFF one, and those only follow \
                         one; a lone surrogate is no character, RFC 8259 §7)",
                    )?;
                }
                Ok(())
            }
            StrictJsonError::ByteOrderMark => {
                f.write_str("it starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON must not carry (RFC 8259 §8.1): remove it")
            }
            StrictJsonError::DuplicateKey { key, line, column } => {
                write!(f, "duplicate key {} at line {line} column {column}", Value::String(key.clone()))
            }
            StrictJsonError::InvalidUtf8 { byte } => {
                write!(f, "byte {byte} (0-based) starts an invalid UTF-8 sequence; JSON text must be UTF-8 (RFC 8259 §8.1)")
            }
        }
    }
}

/// A JSON value read with duplicate keys refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Strict, D::Error> {
        Strict::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{}", Value::String(key))));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parses `bytes` as one JSON value, refusing objects that repeat a key (at any depth).
///
/// # Errors
/// [`StrictJsonError::DuplicateKey`] for a repeated key, [`StrictJsonError::ByteOrderMark`]
/// for a leading byte order mark, [`StrictJsonError::InvalidUtf8`] for bytes that are not
/// UTF-8, [`StrictJsonError::Syntax`] for anything else that is not one JSON value.
pub fn from_slice_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    check_text(bytes)?;
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => Err(classify(e)),
    }
}

/// [`from_slice_strict`] on a string.
///
/// # Errors
/// As [`from_slice_strict`].
pub fn from_str_strict(text: &str) -> Result<Value, StrictJsonError> {
    from_slice_strict(text.as_bytes())
}

/// Refuses what is not a JSON text before parsing: a byte order mark, then bytes that are
/// not UTF-8 (serde_json would report those only inside strings, as a syntax error).
fn check_text(bytes: &[u8]) -> Result<(), StrictJsonError> {
    if bytes.starts_with(UTF8_BOM) {
        return Err(StrictJsonError::ByteOrderMark);
    }
    std::str::from_utf8(bytes).map(drop).map_err(|e| StrictJsonError::InvalidUtf8 { byte: e.valid_up_to() })
}

fn classify(e: serde_json::Error) -> StrictJsonError {
    if e.classify() == serde_json::error::Category::Data {
        let msg = e.to_string();
        if let Some(rest) = msg.strip_prefix(DUPLICATE) {
            // `rest` is the key as a JSON string, then " at line L column C".
            let quoted = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
            if let Ok(Value::String(key)) = serde_json::from_str::<Value>(quoted) {
                return StrictJsonError::DuplicateKey { key, line: e.line(), column: e.column() };
            }
        }
    }
    StrictJsonError::Syntax(e)
}

/// A JSON array read by [`array_from_slice_strict`].
#[derive(Debug, Clone, PartialEq)]
pub enum BoundedArray {
    /// The elements (at most the limit).
    Items(Vec<Value>),
    /// An array of `len` elements, more than the limit: the elements past the limit were
    /// checked (syntax, duplicate keys) and counted, never kept.
    TooLong {
        /// Number of elements.
        len: usize,
    },
    /// One JSON value, but not an array.
    NotArray,
}

/// Parses `bytes` as one JSON value like [`from_slice_strict`], expecting an array of at
/// most `max` elements: memory grows with the first `max` elements only, however long the
/// array is (a 32 MB array of numbers would otherwise take ~1 GB as [`Value`]s).
///
/// # Errors
/// As [`from_slice_strict`] (for the whole text, the elements past `max` included).
pub fn array_from_slice_strict(bytes: &[u8], max: usize) -> Result<BoundedArray, StrictJsonError> {
    check_text(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = Bounded { max }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(out)
}

/// Seed of [`array_from_slice_strict`].
struct Bounded {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = BoundedArray;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<BoundedArray, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = BoundedArray;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_i64<E>(self, _: i64) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_u64<E>(self, _: u64) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_f64<E>(self, _: f64) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_str<E>(self, _: &str) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_unit<E>(self) -> Result<BoundedArray, E> {
        Ok(BoundedArray::NotArray)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BoundedArray, A::Error> {
        Checked::visit_map(Checked, map).map(|Checked| BoundedArray::NotArray)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BoundedArray, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(4096));
        while out.len() < self.max {
            match seq.next_element()? {
                Some(Strict(v)) => out.push(v),
                None => return Ok(BoundedArray::Items(out)),
            }
        }
        if seq.next_element::<Checked>()?.is_none() {
            return Ok(BoundedArray::Items(out));
        }
        drop(out);
        let mut len = self.max + 1;
        while seq.next_element::<Checked>()?.is_some() {
            len += 1;
        }
        Ok(BoundedArray::TooLong { len })
    }
}

/// A JSON value checked like [`Strict`] (duplicate keys refused) and dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{}", Value::String(key))));
            }
            map.next_value::<Checked>()?;
            keys.insert(key);
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_equal_serde_json_without_duplicates() {
        for text in [r#"{"a": 1, "b": [true, null, 2.5, -3, "x"], "c": {"d": {}}}"#, r#"[{"a": 1}, {"a": 2}]"#, "18446744073709551615", r#""\u00e9""#, "[]"] {
            assert_eq!(from_str_strict(text).expect(text), serde_json::from_str::<Value>(text).expect(text), "{text}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for (text, key, column) in [(r#"{"a": 1, "a": 2}"#, "a", 12), (r#"[{"x": {"b\"q": 1, "b\"q": 1}}]"#, "b\"q", 25), ("{\"k\":1,\n\"k\":1}", "k", 3)] {
            match from_str_strict(text) {
                Err(StrictJsonError::DuplicateKey { key: k, column: c, .. }) => assert_eq!((k.as_str(), c), (key, column), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// Attack of session 51: `"\ud800"` was answered "unexpected end of hex escape", though the
    /// escape is whole; the message now names the unpaired surrogate. A pair is a character.
    #[test]
    fn an_unpaired_surrogate_escape_is_named() {
        const HINT: &str = " (an unpaired surrogate: a \\uD800–\\uDBFF escape must be followed by a \\uDC00–\\uDFFF one, and those only \
                            follow one; a lone surrogate is no character, RFC 8259 §7)";
        for (text, serde_says) in [
            (r#"{"a":"\ud800"}"#, "unexpected end of hex escape at line 1 column 13"),
            (r#"{"a":"\ud800\u0041"}"#, "lone leading surrogate in hex escape at line 1 column 18"),
            (r#"{"a":"\udc00"}"#, "lone leading surrogate in hex escape at line 1 column 12"),
        ] {
            let e = from_str_strict(text).expect_err(text);
            assert_eq!(e.to_string(), format!("{serde_says}{HINT}"), "{text}");
        }
        assert_eq!(from_str_strict(r#"{"a":"\ud83d\ude00"}"#).expect("a pair"), serde_json::json!({"a": "\u{1F600}"}));
        // Other escape errors keep serde_json's words alone.
        assert_eq!(from_str_strict(r#"{"a":"\u12"}"#).expect_err("short").to_string(), "invalid escape at line 1 column 12");
    }

    #[test]
    fn a_leading_byte_order_mark_is_named() {
        let e = from_str_strict("\u{feff}{\"a\":1}").expect_err("bom");
        assert!(matches!(e, StrictJsonError::ByteOrderMark), "{e:?}");
        assert_eq!(e.to_string(), "it starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON must not carry (RFC 8259 §8.1): remove it");
        // Inside a string it is just a character.
        assert_eq!(from_str_strict("{\"a\":\"\u{feff}\"}").expect("ok"), serde_json::json!({"a": "\u{feff}"}));
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["{", r#"{"a" 1}"#, "[1,]", "", "{} x"] {
            assert!(matches!(from_str_strict(text), Err(StrictJsonError::Syntax(_))), "{text}");
        }
    }

    #[test]
    fn bounded_arrays_keep_at_most_the_limit() {
        assert_eq!(array_from_slice_strict(b"[1, {\"a\": 2}]", 2).expect("ok"), BoundedArray::Items(vec![json!(1), json!({"a": 2})]));
        assert_eq!(array_from_slice_strict(b"[]", 0).expect("ok"), BoundedArray::Items(vec![]));
        assert_eq!(array_from_slice_strict(b"[1, 2, [3], {\"b\": {}}]", 2).expect("ok"), BoundedArray::TooLong { len: 4 });
        assert_eq!(array_from_slice_strict(b"[1]", 0).expect("ok"), BoundedArray::TooLong { len: 1 });
        for text in [&b"{\"a\": [1]}"[..], b"1", b"\"x\"", b"null"] {
            assert_eq!(array_from_slice_strict(text, 5).expect("ok"), BoundedArray::NotArray);
        }
        // the whole text is checked, past the limit too
        match array_from_slice_strict(b"[1, 2, {\"k\": 1, \"k\": 2}]", 1) {
            Err(StrictJsonError::DuplicateKey { key, .. }) => assert_eq!(key, "k"),
            other => panic!("{other:?}"),
        }
        for text in [&b"[1, 2, 3"[..], b"[1, 2,]", b"[1] x", b"{\"a\": 1, \"a\": 1}"] {
            assert!(array_from_slice_strict(text, 1).is_err(), "{}", String::from_utf8_lossy(text));
        }
    }
}
