//! The one error type of `sluice-schemas`.

/// Errors from decoding or validating schema types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field failed validation; `field` names it.
    #[error("invalid field \"{field}\": {reason}")]
    InvalidField {
        /// Name of the offending field.
        field: &'static str,
        /// Human-readable reason, lowercase.
        reason: String,
    },
    /// Bytes could not be decoded as the expected record.
    #[error("could not decode record: {0}")]
    Decode(String),
    /// A record could not be encoded.
    #[error("could not encode record: {0}")]
    Encode(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
