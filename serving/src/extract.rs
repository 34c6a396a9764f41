//! Wrapper extractors that turn every malformed request into an [`ApiError`] in the
//! DESIGN.md shape (never axum's plain-text rejections, never a 500 for bad input).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ApiError, echo};

/// A JSON body parsed into `T`, plus the canonical form of the JSON value (object keys
/// sorted recursively, no whitespace) used to compare request bodies for `Idempotency-Key`.
///
/// Errors: 415 `unsupported_media_type` unless `Content-Type` is `application/json` (or
/// `application/*+json`) with no `charset` but UTF-8; 413 `payload_too_large` over the body limit; 400 `malformed_json`
/// for syntax errors; 400 `duplicate_key` when an object repeats a member name (at any
/// depth; details `{key, line, column}`: we never silently keep one of two values, see
/// `sluice_schemas::strict_json`); 400 `invalid_request` for a body whose top-level value is
/// not an object (`["https://…"]` is never read into a struct by position) and for a member
/// of the wrong JSON type or `null` where it is not allowed, whatever the member
/// (`"long_url": 5`, `"enabled": "yes"`, `"tags": "a"`; details `{field}` naming the top-level
/// member, the first the body writes when several are refused; a wrong *value* of the right
/// type gets the field's own code from the handler, e.g. `invalid_url`), and for a required
/// member missing (`{}`: details `{field}` naming it); 400 `unknown_field` for fields the
/// endpoint does not know.
#[derive(Debug)]
pub struct ApiJson<T> {
    /// The parsed value.
    pub value: T,
    /// Canonical JSON text of the body.
    pub canonical: String,
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        crate::media_types::check_json_content_type(req.headers())?;
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json_body(&bytes)
    }
}

/// The request body as bytes, read to the route's limit ([`with_body_limit`]), whatever its
/// content type. Errors: 413 `payload_too_large` over the limit ([`payload_too_large`]:
/// the same answer whether the body has a `Content-Length` or is chunked); 400
/// `invalid_request` when it cannot be read.
#[derive(Debug)]
pub struct ApiBytes(pub Bytes);

impl<S> FromRequest<S> for ApiBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                match limit {
                    Some(BodyLimit(max)) => payload_too_large(max),
                    None => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is larger than the configured limit"),
                }
            } else {
                ApiError::bad_request("invalid_request", format!("could not read request body: {}", rej.body_text()))
            }
        })?;
        Ok(ApiBytes(bytes))
    }
}

/// The request body limit of the routes [`with_body_limit`] wrapped, in bytes (a request
/// extension), so a body found too long while it is read (a chunked body, no
/// `Content-Length`) is answered exactly as one whose `Content-Length` is over the limit
/// ([`payload_too_large`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// `router` with request bodies read by its extractors ([`ApiJson`]) limited to `max_bytes`
/// (axum's `DefaultBodyLimit`), the limit recorded as the [`BodyLimit`] extension.
pub fn with_body_limit(router: axum::Router, max_bytes: usize) -> axum::Router {
    router.layer(axum::extract::DefaultBodyLimit::max(max_bytes)).layer(axum::Extension(BodyLimit(max_bytes)))
}

/// 413 `payload_too_large` for a body over `max_bytes`: `request body is larger than
/// <max_bytes> bytes`, details `{"max_body_bytes": max_bytes}` (the same answer the HTTP
/// server gives to a `Content-Length` over the limit before reading the body).
pub fn payload_too_large(max_bytes: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body is larger than {max_bytes} bytes"))
        .with_details(json!({ "max_body_bytes": max_bytes }))
}

/// Parses a request body (already read) as a JSON object into `T`; see [`ApiJson`] for the
/// errors. Every JSON body of the API is an object: any other top-level value is refused
/// ([`not_an_object`]) before `T` sees it, since serde would read a struct from an array
/// by position (`["https://evil.example/"]` as `{"long_url": …}`).
pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<ApiJson<T>, ApiError> {
    let raw: Value = sluice_schemas::strict_json::from_slice_strict(bytes).map_err(json_body_error)?;
    let Value::Object(members) = &raw else {
        return Err(not_an_object(&raw));
    };
    let canonical = canonical_json(&raw);
    match serde_path_to_error::deserialize::<_, T>(&raw) {
        Ok(value) => Ok(ApiJson { value, canonical }),
        // serde reads the members in key order (serde_json's map is sorted): the first one
        // refused in the order the body writes them is looked for, to name that one.
        Err(e) => Err(member_error(first_refused_member::<T>(bytes, members).unwrap_or(e))),
    }
}

/// The error [`parse_json_body`] answers for `e`: 400 `unknown_field`, or `invalid_request`
/// naming the top-level member in `details.field` (the one of the wrong type, or the
/// required one missing).
fn member_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let msg = e.inner().to_string();
    let top = match e.path().iter().next() {
        Some(serde_path_to_error::Segment::Map { key }) => Some(key.as_str()),
        _ => None,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        ApiError::bad_request("unknown_field", format!("unknown field \"{}\"", echo(&field))).with_details(json!({ "field": field }))
    } else if let Some(field) = top {
        ApiError::bad_request("invalid_request", format!("invalid request body: {}: {msg}", echo(field))).with_details(json!({ "field": field }))
    } else if let Some(field) = missing_field(&msg) {
        ApiError::bad_request("invalid_request", format!("invalid request body: missing field \"{}\"", echo(field))).with_details(json!({ "field": field }))
    } else {
        ApiError::bad_request("invalid_request", format!("invalid request body: {msg}"))
    }
}

/// The field serde's `missing field `x`` message names.
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The error of the first member of `members` (in the order `bytes` writes them) that `T`
/// refuses on its own: its type is wrong, it is unknown, or `null` where that is refused.
/// Each member is read alone (`{"tags": 1}`), and counts only when the error is about it
/// (at its path, or naming it unknown), not a required member missing from that one-member
/// object. `None` when no member is refused alone (the body lacks a required member).
fn first_refused_member<T: DeserializeOwned>(bytes: &[u8], members: &serde_json::Map<String, Value>) -> Option<serde_path_to_error::Error<serde_json::Error>> {
    let order = serde_json::from_slice::<MemberOrder>(bytes).ok()?.0;
    order.into_iter().find_map(|key| {
        let alone = Value::Object(serde_json::Map::from_iter([(key.clone(), members.get(&key)?.clone())]));
        let e = serde_path_to_error::deserialize::<_, T>(&alone).err()?;
        let at_key = matches!(e.path().iter().next(), Some(serde_path_to_error::Segment::Map { key: k }) if *k == key);
        let unknown = e.inner().to_string().starts_with(&format!("unknown field `{key}`"));
        (at_key || unknown).then_some(e)
    })
}

/// The member names of a JSON object in the order its text writes them (values skipped).
struct MemberOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for MemberOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = MemberOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MemberOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(MemberOrder(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// 400 `invalid_request` for a JSON body whose top-level value is not an object: `request
/// body must be a JSON object, got an array` (or a string, a number, a boolean, null).
pub fn not_an_object(v: &Value) -> ApiError {
    let got = match v {
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Object(_) => "an object",
    };
    ApiError::bad_request("invalid_request", format!("request body must be a JSON object, got {got}"))
}

/// The API error of a body that [`sluice_schemas::strict_json`] refused: 400
/// `duplicate_key` (details `{key, line, column}`) or 400 `malformed_json` (details
/// `{line, column}`; a leading byte order mark is named as such, at line 1 column 1), or 400
/// `invalid_utf8` (details `{byte}`: offset of the first invalid byte) for bytes that are
/// not UTF-8.
pub fn json_body_error(e: sluice_schemas::strict_json::StrictJsonError) -> ApiError {
    use sluice_schemas::strict_json::StrictJsonError;
    match e {
        StrictJsonError::DuplicateKey { key, line, column } => ApiError::bad_request(
            "duplicate_key",
            format!("request body repeats the key {} in one object (line {line}, column {column}); send each member once", Value::from(echo(&key))),
        )
        .with_details(json!({ "key": key, "line": line, "column": column })),
        StrictJsonError::Syntax(e) => {
            let details = json!({ "line": e.line(), "column": e.column() });
            ApiError::bad_request("malformed_json", format!("request body is not valid json: {}", StrictJsonError::Syntax(e))).with_details(details)
        }
        e @ StrictJsonError::ByteOrderMark => {
            ApiError::bad_request("malformed_json", format!("request body is not valid json: {e}")).with_details(json!({ "line": 1, "column": 1 }))
        }
        e @ StrictJsonError::InvalidUtf8 { byte } => {
            ApiError::bad_request("invalid_utf8", format!("request body is not utf-8: {e}")).with_details(json!({ "byte": byte }))
        }
    }
}

/// Canonical JSON text: objects with keys in byte order at every depth, no whitespace.
/// Independent of serde_json's `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// Query string parsed into `T`; on error 400 with the same codes as the stats endpoints:
/// `invalid_parameter` for a name or value that is not UTF-8 once percent-decoded
/// ([`crate::query::decode`]), `unknown_parameter` (when `T` denies unknown fields),
/// `duplicate_parameter`, `invalid_limit` for a `limit` that is not plain decimal digits
/// ([`ApiError::invalid_limit`], up to [`PAGE_MAX_LIMIT`]), else `invalid_parameter` (a
/// value of the wrong type or out of range, details `{parameter, value}`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // serde's parser decodes bytes that are not UTF-8 lossily (so the raw pairs are
        // decoded strictly first) and reads `limit` with Rust's integer parser, which takes
        // `+5` (so the raw `limit` is checked after serde's own errors).
        let raw = crate::query::decode(parts.uri.query())?;
        let v = axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| query_error(&e.body_text(), parts.uri.query()))?;
        // The range too, so that `details.value` is the text sent (`0000`), not the number.
        if let Some(limit) = crate::query::get(&raw, "limit") {
            crate::query::limit(Some(limit), 1, PAGE_MAX_LIMIT)?;
        }
        Ok(v)
    }
}

/// The query of a route that takes no parameter, read with [`ApiQuery`] (`ApiQuery<NoParams>`)
/// after the route's authentication: any parameter is 400 `unknown_parameter` (details
/// `{parameter, supported: []}`), a name or value that is not UTF-8 once percent-decoded 400
/// `invalid_parameter`, as [`crate::query::refuse_query`] answers on the link routes; an
/// empty query (`?`, `?&`) passes.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Largest `limit` of the paged lists read with [`ApiQuery`] (`GET /v1/links`, the admin
/// audit log).
pub const PAGE_MAX_LIMIT: usize = 1000;

/// Maps serde's query-string error text to the stats endpoints' parameter errors, in their
/// words and details: `unknown_parameter` (`{parameter, supported}`), `duplicate_parameter`
/// (`{parameter}`), `invalid_limit` for `limit`, else `invalid_parameter` (serde's text;
/// `{parameter, value}` when serde names the parameter, `value` as sent in `query`).
fn query_error(text: &str, query: Option<&str>) -> ApiError {
    let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(text);
    // axum + serde: "sort: unknown field `sort`, expected one of `a`, `b`" (or "expected
    // `a`", "there are no fields"); "duplicate field `x`", either after a "name: " path.
    // Names are the backquoted words from the serde message on.
    let quoted = |from: usize| detail[from..].split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<String>>();
    if let Some(at) = detail.find("unknown field `") {
        let names = quoted(at);
        let (name, supported) = names.split_first().map(|(n, rest)| (n.clone(), rest.to_vec())).unwrap_or_default();
        return ApiError::bad_request("unknown_parameter", format!("unknown query parameter \"{}\"", echo(&name)))
            .with_details(json!({ "parameter": name, "supported": supported }));
    }
    if let Some(at) = detail.find("duplicate field `") {
        let name = quoted(at).into_iter().next().unwrap_or_default();
        return ApiError::bad_request("duplicate_parameter", format!("query parameter \"{}\" is given more than once", echo(&name)))
            .with_details(json!({ "parameter": name }));
    }
    let named = detail.split_once(": ").filter(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let Some((name, _)) = named else {
        return ApiError::bad_request("invalid_parameter", format!("invalid query parameter: {}", detail.replace("field", "parameter")));
    };
    let value = url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default();
    if name == "limit" {
        return ApiError::invalid_limit(&value, PAGE_MAX_LIMIT);
    }
    ApiError::bad_request("invalid_parameter", format!("invalid query parameter: {}", detail.replace("field", "parameter")))
        .with_details(json!({ "parameter": name, "value": value }))
}

/// Path parameters parsed into `T` (axum's `Path`), percent-decoded. Every API route with a
/// path parameter reads it through this extractor, never through axum's `Path`, whose
/// rejections are plain text.
///
/// Errors: 400 `invalid_path` when a segment is not UTF-8 once percent-decoded
/// (`/v1/jobs/%FF`), details `{parameter}`; any other rejection (the route has no such
/// parameter, a value of the wrong type) is 404 `not_found` for the path.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    Err(ApiError::bad_request("invalid_path", format!("path parameter \"{}\" is not UTF-8 once percent-decoded", echo(key)))
                        .with_details(json!({ "parameter": key })))
                }
                _ => Err(ApiError::route_not_found(parts.uri.path())),
            },
            Err(_) => Err(ApiError::route_not_found(parts.uri.path())),
        }
    }
}

/// The `{code}` path segment of `/v1/links/{code}`, percent-decoded ([`ApiPath`]: 400
/// `invalid_path` when not UTF-8). A code that does not match `[A-Za-z0-9_-]{1,64}` cannot
/// exist, so it is answered 404 `not_found` without a store lookup.
#[derive(Debug, Clone)]
pub struct LinkCode(pub String);

impl<S: Send + Sync> FromRequestParts<S> for LinkCode {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let code: String = ApiPath::<String>::from_request_parts(parts, state).await?.0;
        if crate::alias::is_code_charset(&code) { Ok(LinkCode(code)) } else { Err(ApiError::link_not_found(&code)) }
    }
}

/// The stored form of an id that is a UUID (webhook, job): ids are stored in their lowercase
/// hyphenated form and UUID text is case-insensitive (RFC 9562, section 4), so any spelling
/// of one finds it. `None` when `id` is not a UUID.
pub fn canonical_uuid(id: &str) -> Option<String> {
    uuid::Uuid::try_parse(id).ok().map(|u| u.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":null}}"#).expect("json");
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn query_errors_name_the_parameter_like_the_stats_endpoints() {
        let e = query_error("Failed to deserialize query string: colour: unknown field `colour`, expected one of `limit`, `cursor`", None);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "unknown_parameter", "message": "unknown query parameter \"colour\"", "details": {"parameter": "colour", "supported": ["limit", "cursor"]}}})
        );
        let e = query_error("Failed to deserialize query string: duplicate field `limit`", None);
        assert_eq!(
            e.body(),
            json!({"error": {"code": "duplicate_parameter", "message": "query parameter \"limit\" is given more than once", "details": {"parameter": "limit"}}})
        );
        // a limit that is no integer: invalid_limit, as on every endpoint
        let e = query_error("Failed to deserialize query string: limit: invalid digit found in string", Some("tag=a&limit=t%C3%A9n"));
        assert_eq!(
            e.body(),
            json!({"error": {"code": "invalid_limit", "message": "limit must be an integer between 1 and 1000, got \"tén\"", "details": {"parameter": "limit", "value": "tén", "min": 1, "max": 1000}}})
        );
        let e = query_error("Failed to deserialize query string: enabled: invalid type", Some("enabled=2"));
        assert_eq!(e.body()["error"]["details"], json!({"parameter": "enabled", "value": "2"}));
        assert_eq!(e.code, "invalid_parameter");
    }

    #[test]
    fn body_errors_are_classified() {
        assert_eq!(parse_json_body::<Probe>(b"{").expect_err("syntax").code, "malformed_json");
        // Latin-1 "é" (0xE9) inside a string, at byte 9 (0-based).
        let latin1 = parse_json_body::<Probe>(b"{\"b\":\"caf\xE9\"}").expect_err("latin-1");
        assert_eq!(latin1.code, "invalid_utf8");
        assert_eq!(latin1.details, json!({ "byte": 9 }));
        let bom = parse_json_body::<Probe>(b"\xEF\xBB\xBF{\"a\":7}").expect_err("bom");
        assert_eq!(
            bom.body(),
            json!({"error": {"code": "malformed_json", "message": "request body is not valid json: it starts with a UTF-8 byte order mark (bytes EF BB BF), which JSON must not carry (RFC 8259 §8.1): remove it", "details": {"line": 1, "column": 1}}})
        );
        assert_eq!(parse_json_body::<Probe>(br#"{"a":1,"zz":2}"#).expect_err("unknown").code, "unknown_field");
        assert_eq!(parse_json_body::<Probe>(br#"{"a":"x"}"#).expect_err("type").code, "invalid_request");
        let shape = parse_json_body::<Probe>(br#"[]"#).expect_err("shape");
        assert_eq!((shape.code, shape.message.as_str()), ("invalid_request", "request body must be a JSON object, got an array"));
        // Never read into the struct by position, nor from any other top-level value.
        for (body, got) in [("[7]", "an array"), (r#""a""#, "a string"), ("7", "a number"), ("true", "a boolean"), ("null", "null")] {
            let e = parse_json_body::<Probe>(body.as_bytes()).expect_err(body);
            assert_eq!(
                (e.status, e.body()),
                (StatusCode::BAD_REQUEST, json!({"error": {"code": "invalid_request", "message": format!("request body must be a JSON object, got {got}")}})),
                "{body}"
            );
        }
        assert_eq!(parse_json_body::<Probe>(br#"{"a":7}"#).expect("ok").value.a, 7);
        let dup = parse_json_body::<Probe>(br#"{"a":1,"a":2}"#).expect_err("duplicate");
        assert_eq!((dup.code, dup.status), ("duplicate_key", StatusCode::BAD_REQUEST));
    }

    /// Finding: `"long_url": 5` was 400 `invalid_url` while `"enabled": "yes"` was
    /// `invalid_request`. A member of the wrong JSON type (or a `null` PATCH refuses) is
    /// `invalid_request` for every field of the link bodies, the field named in the message
    /// and in details.
    #[test]
    fn a_wrong_json_type_is_invalid_request_for_every_link_field() {
        use crate::dto::{CreateLinkRequest, UpdateLinkRequest};
        let created = |body: &str| parse_json_body::<CreateLinkRequest>(body.as_bytes()).expect_err(body);
        let updated = |body: &str| parse_json_body::<UpdateLinkRequest>(body.as_bytes()).expect_err(body);
        let cases = [
            (created(r#"{"long_url":5}"#), "long_url", "invalid type: integer `5`, expected a string"),
            (created(r#"{"long_url":"https://e.example/","custom_alias":7}"#), "custom_alias", "invalid type: integer `7`, expected a string"),
            (created(r#"{"long_url":"https://e.example/","domain":1}"#), "domain", "invalid type: integer `1`, expected a string"),
            (
                created(r#"{"long_url":"https://e.example/","expires_at":1900000000000}"#),
                "expires_at",
                "invalid type: integer `1900000000000`, expected a string",
            ),
            (created(r#"{"long_url":"https://e.example/","tags":"a"}"#), "tags", "invalid type: string \"a\", expected a sequence"),
            (created(r#"{"long_url":"https://e.example/","tags":["a",5]}"#), "tags", "invalid type: integer `5`, expected a string"),
            (created(r#"{"long_url":"https://e.example/","redirect_type":"301"}"#), "redirect_type", "invalid type: string \"301\", expected 301 or 302"),
            (created(r#"{"long_url":"https://e.example/","org":false}"#), "org", "invalid type: boolean `false`, expected a string"),
            (updated(r#"{"long_url":5}"#), "long_url", "invalid type: integer `5`, expected a string"),
            (updated(r#"{"enabled":"yes"}"#), "enabled", "invalid type: string \"yes\", expected a boolean"),
            (updated(r#"{"tags":null}"#), "tags", "null is not allowed here; omit the field to keep its value"),
            (updated(r#"{"org":1}"#), "org", "invalid type: integer `1`, expected a string"),
        ];
        for (e, field, why) in cases {
            assert_eq!(
                (e.status, e.body()),
                (
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "invalid_request", "message": format!("invalid request body: {field}: {why}"), "details": {"field": field}}})
                ),
                "{field}"
            );
        }
    }

    /// Finding: `{}` was 400 `invalid_request` without `details.field`, and of several members
    /// of the wrong type the one first in key order was named (serde_json's map is sorted),
    /// not the first the body writes. A missing required member is named in details, and the
    /// first refused member in document order is the one reported.
    #[test]
    fn a_missing_member_and_the_first_refused_member_in_document_order_are_named() {
        use crate::dto::{CreateLinkRequest, UpdateLinkRequest};
        let created = |body: &str| parse_json_body::<CreateLinkRequest>(body.as_bytes()).expect_err(body).body();
        let invalid = |field: &str, message: &str| json!({"error": {"code": "invalid_request", "message": message, "details": {"field": field}}});
        assert_eq!(created("{}"), invalid("long_url", "invalid request body: missing field \"long_url\""));
        assert_eq!(created(r#"{"custom_alias":"abc"}"#), invalid("long_url", "invalid request body: missing field \"long_url\""));
        // A member of the wrong type is named before the missing one.
        assert_eq!(created(r#"{"tags":1}"#), invalid("tags", "invalid request body: tags: invalid type: integer `1`, expected a sequence"));
        for (body, field, why) in [
            (r#"{"tags":1,"domain":2,"long_url":"https://e.example/"}"#, "tags", "invalid type: integer `1`, expected a sequence"),
            (r#"{"domain":2,"tags":1,"long_url":"https://e.example/"}"#, "domain", "invalid type: integer `2`, expected a string"),
            (r#"{"org":false,"custom_alias":7}"#, "org", "invalid type: boolean `false`, expected a string"),
            (r#"{"long_url":"https://e.example/","redirect_type":"301","expires_at":5}"#, "redirect_type", "invalid type: string \"301\", expected 301 or 302"),
        ] {
            assert_eq!(created(body), invalid(field, &format!("invalid request body: {field}: {why}")), "{body}");
        }
        // An unknown member written first is the one reported, and the other way round.
        assert_eq!(
            created(r#"{"zz":1,"domain":2,"long_url":"https://e.example/"}"#),
            json!({"error": {"code": "unknown_field", "message": "unknown field \"zz\"", "details": {"field": "zz"}}})
        );
        assert_eq!(created(r#"{"domain":2,"zz":1}"#), invalid("domain", "invalid request body: domain: invalid type: integer `2`, expected a string"));
        let updated = parse_json_body::<UpdateLinkRequest>(br#"{"tags":null,"enabled":"yes"}"#).expect_err("two refused").body();
        assert_eq!(updated, invalid("tags", "invalid request body: tags: null is not allowed here; omit the field to keep its value"));
        // An empty PATCH is fine (no member is required).
        assert!(parse_json_body::<UpdateLinkRequest>(b"{}").is_ok());
    }
}
