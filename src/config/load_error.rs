//! Configuration errors worded for the user: each names the key as the user wrote it —
//! `server.listen` for a TOML file, `SLUICE__SERVER__LISTEN` for an environment variable —
//! instead of figment's profile-prefixed path (`default.server.listen`).

use figment::error::Kind;
use figment::{Error, Source};

/// Env var prefix of the configuration layer (see [`super::Config::load`]).
pub(super) const ENV_PREFIX: &str = "SLUICE__";

/// The environment variable that sets the key at `path` (`["server", "listen"]` →
/// `SLUICE__SERVER__LISTEN`; `-` in a key is `_`).
pub(super) fn env_var_name(path: &[String]) -> String {
    let keys: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase().replace('-', "_")).collect();
    format!("{ENV_PREFIX}{}", keys.join("__"))
}

/// One line per error in `err`: `<where>: <what>`, e.g. `server.listen in sluice.toml:
/// invalid socket address syntax` or `SLUICE__LINKS__CODE_LENGTH (environment variable):
/// invalid type: found string "x", expected usize`.
pub(super) fn describe(err: Error) -> String {
    err.into_iter().map(|e| describe_one(&e)).collect::<Vec<_>>().join("\n")
}

/// Where layer `m` set `key` (dotted, e.g. `dataflow.processes`), worded as [`describe`]
/// words it: `dataflow.processes in /abs/sluice.toml` or
/// `SLUICE__DATAFLOW__PROCESSES (environment variable)`.
pub(super) fn place(m: &figment::Metadata, key: &str) -> String {
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    if m.name.contains("environment variable") {
        return format!("{} (environment variable)", env_var_name(&path));
    }
    match &m.source {
        Some(Source::File(f)) => format!("{key} in {}", f.display()),
        _ => format!("{key} in {}", m.name),
    }
}

fn describe_one(e: &Error) -> String {
    // An unknown key's path may end at its table; the key itself is in the kind.
    let mut path = e.path.clone();
    if let Kind::UnknownField(field, _) = &e.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    let from_env = e.metadata.as_ref().is_some_and(|m| m.name.contains("environment variable"));
    let file = e.metadata.as_ref().and_then(|m| m.source.as_ref()).and_then(|s| match s {
        Source::File(p) => Some(p.display().to_string()),
        _ => None,
    });
    let place = match (from_env, path.is_empty(), file) {
        (true, false, _) => format!("{} (environment variable)", env_var_name(&path)),
        (true, true, _) => "environment variables".to_string(),
        (false, false, Some(f)) => format!("{} in {f}", path.join(".")),
        (false, true, Some(f)) => f,
        (false, false, None) => path.join("."),
        (false, true, None) => "configuration".to_string(),
    };
    let what = match &e.kind {
        Kind::UnknownField(field, expected) => unknown_field(field, expected),
        Kind::UnknownVariant(variant, expected) => format!("unknown value: found `{variant}`, expected {}", one_of(expected)),
        kind => kind.to_string(),
    };
    format!("{place}: {what}")
}

/// An unknown key and the keys its table takes. figment's own text nests serde's list in
/// another pair of backticks (``expected `one of `a`, `b`` ``).
fn unknown_field(field: &str, expected: &[&str]) -> String {
    match expected {
        [] => format!("unknown field: found `{field}`, this table takes no keys"),
        _ => format!("unknown field: found `{field}`, expected {}", one_of(expected)),
    }
}

/// `` `a` `` or ``one of `a`, `b` `` (figment's own text for an unknown field or value nests
/// serde's list in another pair of backticks).
fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => "nothing".to_string(),
        [one] => format!("`{one}`"),
        many => format!("one of {}", many.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")),
    }
}
