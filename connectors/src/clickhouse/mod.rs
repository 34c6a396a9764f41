//! ClickHouse connector (feature `clickhouse-sink`).

/// Whether a ClickHouse client error is transient (network, timeout, server overloaded or
/// restarting) rather than a bad query, schema mismatch or bad data.
pub fn clickhouse_error_retryable(e: &::clickhouse::error::Error) -> bool {
    use ::clickhouse::error::Error as E;
    match e {
        E::Network(_) | E::TimedOut => true,
        // `Code: N. DB::Exception: ...`: retry only codes that mean "try again later".
        E::BadResponse(text) => server_code(text).is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    }
}

/// ClickHouse error codes worth retrying: TIMEOUT_EXCEEDED (159), TOO_MANY_SIMULTANEOUS_QUERIES
/// (202), NETWORK_ERROR (210), SOCKET_TIMEOUT (209), TOO_MANY_PARTS (252), ABORTED (236),
/// MEMORY_LIMIT_EXCEEDED (241), TABLE_IS_READ_ONLY (242), ALL_CONNECTION_TRIES_FAILED (279),
/// KEEPER_EXCEPTION (999), TOO_MANY_CONCURRENT_QUERIES... (from ClickHouse `src/Common/ErrorCodes.cpp`).
const RETRYABLE_CODES: [u32; 10] = [159, 202, 209, 210, 236, 241, 242, 252, 279, 999];

/// The `N` of a `Code: N. DB::Exception: ...` response text.
pub fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}
