//! The media types the API reads request bodies in, by `Content-Type`: JSON
//! (`application/json` or a `+json` type, RFC 6839) on the `POST` routes ([`crate::extract::ApiJson`]),
//! and a JSON merge patch on `PATCH /v1/links/{code}` ([`ApiMergePatch`]). A `PATCH` body's
//! media type says how to apply it (RFC 5789 §2): `application/json-patch+json` (RFC 6902,
//! an array of operations) is another patch format than the merge patch we apply, so it is
//! refused 415 rather than read as one. Every refusal is 415 `unsupported_media_type`, details
//! `{content_type}`, in the API's error shape.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use sluice_schemas::media_type::MediaType;

use crate::error::ApiError;
use crate::extract::ApiJson;

/// The media types `PATCH /v1/links/{code}` takes, as its 415 names them and its
/// `Accept-Patch` header (RFC 5789 §3.1) lists them.
pub const MERGE_PATCH_TYPES: &str = "application/merge-patch+json, application/json";

/// `Content-Type` must be `application/json` or `application/*+json` (RFC 6839), parsed by
/// [`sluice_schemas::media_type::parse_media_type`] as RFC 9110 writes it (whitespace around
/// `;`, empty parameters, any quoted-string value: quoted-pairs such as `\"`, an empty `""`);
/// a `charset` parameter, when present, must name UTF-8 (any case, quoted or not),
/// the only encoding of JSON exchanged between systems (RFC 8259 §8.1;
/// [`sluice_schemas::media_type::check_json_charset`], shared with `POST /v1/events`).
///
/// Errors: 415 `unsupported_media_type` (details `{content_type}`) otherwise, also for a
/// header that does not parse as a media type.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    check_content_type(headers, "expected content-type application/json", |mt| {
        // `application/json` itself, or a `+json` suffix type (RFC 6839); `application/json+xml`
        // (another suffix) is neither.
        mt.type_() == "application" && (mt.subtype() == "json" || mt.suffix() == Some("json"))
    })
}

/// `Content-Type` of a JSON merge patch (RFC 7396): `application/merge-patch+json` or
/// `application/json`, with the charset rule of [`check_json_content_type`]. Other `+json`
/// types are refused: a `PATCH` body's type names its patch format, and
/// `application/json-patch+json` (RFC 6902) is not the one applied here.
///
/// Errors: 415 `unsupported_media_type` (details `{content_type}`), naming the two types.
pub(crate) fn check_merge_patch_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    check_content_type(headers, "expected content-type application/merge-patch+json or application/json (a JSON merge patch, RFC 7396)", |mt| {
        matches!(mt.essence().as_str(), "application/json" | "application/merge-patch+json")
    })
}

/// The 415 of a `Content-Type` (empty when absent) that does not parse, that `accepts`
/// refuses (message `expected`), or whose charset is not UTF-8.
fn check_content_type(headers: &HeaderMap, expected: &str, accepts: impl Fn(&MediaType) -> bool) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let refuse =
        |message: String| Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message).with_details(json!({ "content_type": ct })));
    match sluice_schemas::media_type::parse_media_type(ct) {
        Some(mt) if accepts(&mt) => sluice_schemas::media_type::check_json_charset(&mt, "JSON bodies").or_else(|e| refuse(e.to_string())),
        _ => refuse(expected.to_owned()),
    }
}

/// A JSON merge patch body (RFC 7396) parsed into `T`: [`ApiJson`] with the media types of
/// [`check_merge_patch_content_type`] instead of any JSON type.
///
/// Errors: as [`ApiJson`]; the 415 also for a JSON type other than the two, answered with an
/// `Accept-Patch` header listing them ([`PatchRejection`]).
#[derive(Debug)]
pub struct ApiMergePatch<T>(pub ApiJson<T>);

impl<T, S> FromRequest<S> for ApiMergePatch<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PatchRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_merge_patch_content_type(req.headers())?;
        let crate::extract::ApiBytes(bytes) = crate::extract::ApiBytes::from_request(req, state).await?;
        Ok(ApiMergePatch(crate::extract::parse_json_body(&bytes)?))
    }
}

/// Why [`ApiMergePatch`] refused a body: the [`ApiError`], answered as every other, plus
/// `Accept-Patch: ` [`MERGE_PATCH_TYPES`] on a 415 (RFC 5789 §2.2).
#[derive(Debug)]
pub struct PatchRejection(pub ApiError);

impl From<ApiError> for PatchRejection {
    fn from(e: ApiError) -> Self {
        PatchRejection(e)
    }
}

impl IntoResponse for PatchRejection {
    fn into_response(self) -> Response {
        let unsupported = self.0.status == StatusCode::UNSUPPORTED_MEDIA_TYPE;
        let mut resp = self.0.into_response();
        if unsupported {
            resp.headers_mut().insert(HeaderName::from_static("accept-patch"), HeaderValue::from_static(MERGE_PATCH_TYPES));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, ct.parse().expect("header value"));
        h
    }

    /// `check_json_content_type` refuses `ct` with 415 and exactly `message`.
    #[track_caller]
    fn assert_json_415(ct: &str, message: &str) {
        let e = check_json_content_type(&headers(ct)).expect_err(ct);
        assert_eq!(
            (e.status, e.body()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({"error": {"code": "unsupported_media_type", "message": message, "details": {"content_type": ct}}})),
            "{ct}"
        );
    }

    /// The charset rule is `sluice_schemas::media_type`'s, shared with `POST /v1/events`;
    /// the answer is this API's 415, message and details as before.
    #[test]
    fn json_content_types_and_charsets() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON; Charset=\"UTF-8\"",
            "application/merge-patch+json; charset=UTF-8",
            "application/json ;charset=utf-8",
            "application/json;;;",
            "application/vnd.example+json",
            "application/json; charset=\"utf\\-8\"",
        ] {
            assert!(check_json_content_type(&headers(ok)).is_ok(), "{ok}");
        }
        for (ct, message) in [
            ("application/json; charset=latin1", "charset latin1 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset"),
            (
                "application/merge-patch+json; charset=\"utf-16\"",
                "charset utf-16 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset",
            ),
            ("text/plain; charset=utf-8", "expected content-type application/json"),
            ("application/", "expected content-type application/json"),
            ("application/json+xml", "expected content-type application/json"),
            ("application/json+x; charset=utf-8", "expected content-type application/json"),
            (
                "application/json; charset=utf-8; charset=latin1",
                "charset latin1 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset",
            ),
        ] {
            assert_json_415(ct, message);
        }
    }

    /// Finding: valid quoted parameter values the `mime` crate could not hold were 415: an
    /// escaped quote, an empty quoted string. They are read per RFC 9110 §5.6.6 now, on the
    /// POST and the PATCH routes alike; the charset policy (UTF-8 only, any case, quoted or
    /// not) and the 415 of a malformed header are unchanged.
    #[test]
    fn quoted_parameter_values_are_read_per_rfc_9110() {
        for ct in [
            r#"application/json; foo="a\"b""#,
            "application/json; foo=\"\"",
            "application/json; charset=\"UTF-8\"",
            r#"application/json; foo="a\"b"; charset="UTF-8""#,
            "application/json; foo=\"\"; charset=utf-8",
        ] {
            assert_eq!(check_json_content_type(&headers(ct)), Ok(()), "{ct}");
            assert_eq!(check_merge_patch_content_type(&headers(ct)), Ok(()), "{ct}");
        }
        assert_eq!(check_json_content_type(&headers(r#"application/vnd.example+json; foo="a\"b""#)), Ok(()));
        assert_eq!(check_merge_patch_content_type(&headers("application/merge-patch+json; foo=\"\"")), Ok(()));
        let charset = |c: &str| format!("charset {c} is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset");
        let malformed = "expected content-type application/json".to_owned();
        for (ct, message) in [
            ("application/json; charset=us-ascii", charset("us-ascii")),
            ("application/json; charset=\"ISO-8859-1\"", charset("iso-8859-1")),
            ("application/json; charset=\"\"", charset("\"\"")),
            (r#"application/json; foo="a\"b"; charset=latin1"#, charset("latin1")),
            ("application/json; foo=\"open", malformed.clone()),
            (r#"application/json; foo="a\""#, malformed.clone()),
            ("application/json; foo=\"a\"b", malformed.clone()),
            ("application", malformed.clone()),
            ("application/", malformed.clone()),
            ("application/json; foo", malformed.clone()),
        ] {
            assert_json_415(ct, &message);
        }
    }

    /// Finding: `PATCH /v1/links/{code}` read an `application/json-patch+json` body (RFC
    /// 6902) as a merge patch, so its array got 400 `invalid_request`. A PATCH body is a merge
    /// patch, typed `application/merge-patch+json` or `application/json`; any other type is
    /// 415 with the POST routes' error shape, naming the two.
    #[test]
    fn a_patch_body_must_be_a_json_merge_patch() {
        for ok in [
            "application/json",
            "application/merge-patch+json",
            "Application/Merge-Patch+JSON; charset=\"UTF-8\"",
            "application/merge-patch+json; charset=\"utf\\-8\"",
            "application/json ;charset=utf-8",
        ] {
            assert_eq!(check_merge_patch_content_type(&headers(ok)), Ok(()), "{ok}");
        }
        let expected = "expected content-type application/merge-patch+json or application/json (a JSON merge patch, RFC 7396)";
        for (ct, message) in [
            ("application/json-patch+json", expected),
            ("application/json-patch+json; charset=utf-8", expected),
            ("application/vnd.example+json", expected),
            ("text/plain", expected),
            ("application/", expected),
            (
                "application/merge-patch+json; charset=latin1",
                "charset latin1 is not supported: JSON bodies are UTF-8 (RFC 8259 §8.1); send charset=utf-8 or no charset",
            ),
        ] {
            let e = check_merge_patch_content_type(&headers(ct)).expect_err(ct);
            assert_eq!(
                (e.status, e.body()),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({"error": {"code": "unsupported_media_type", "message": message, "details": {"content_type": ct}}})),
                "{ct}"
            );
        }
        let e = check_merge_patch_content_type(&HeaderMap::new()).expect_err("no content type");
        assert_eq!(e.body(), json!({"error": {"code": "unsupported_media_type", "message": expected, "details": {"content_type": ""}}}));
    }

    /// The 415 of a PATCH lists what it takes in `Accept-Patch` (RFC 5789 §2.2); other
    /// refusals carry no such header.
    #[test]
    fn a_refused_patch_type_is_answered_with_accept_patch() {
        let e = check_merge_patch_content_type(&headers("application/json-patch+json")).expect_err("json patch");
        let resp = PatchRejection(e).into_response();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(resp.headers().get("accept-patch").and_then(|v| v.to_str().ok()), Some("application/merge-patch+json, application/json"));
        let resp = PatchRejection(ApiError::bad_request("invalid_request", "x")).into_response();
        assert_eq!((resp.status(), resp.headers().get("accept-patch")), (StatusCode::BAD_REQUEST, None));
    }
}
