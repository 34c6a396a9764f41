//! Loading the layered configuration ([`Config::load`]): the built-in defaults → the
//! `--config` file → `SLUICE__…` environment variables → command-line flags, and which keys
//! a layer above the defaults set ([`Given`]).

use std::path::Path;

use anyhow::bail;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};

use super::{Config, DEFAULT_TOML, FlagOverrides, load_error};
use crate::bench::usage_error as usage;

/// The keys a command takes from elsewhere when no layer sets them, and whether the
/// `--config` file or a `SLUICE__…` environment variable set each (a flag is not counted:
/// the command sees its own flags). `sluice demo` runs in a temporary data dir and on a free
/// port unless they are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    /// `[server] listen` (`SLUICE__SERVER__LISTEN`).
    pub listen: bool,
    /// `[server] data-dir` (`SLUICE__SERVER__DATA_DIR`).
    pub data_dir: bool,
}

/// Name of the built-in defaults' layer in figment's metadata ([`Given`] tells the layers
/// apart by it).
const DEFAULTS: &str = "built-in defaults (default.toml)";

/// The built-in `default.toml` as a figment layer named [`DEFAULTS`].
struct Defaults;

impl Provider for Defaults {
    fn metadata(&self) -> Metadata {
        Metadata::named(DEFAULTS)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(DEFAULT_TOML).data()
    }
}

impl Config {
    /// Loads defaults → `file` → `SLUICE__…` env vars → `flags`, then validates.
    ///
    /// `file` is read once, whatever it is: a regular file, or a FIFO, a process
    /// substitution (`--config <(...)`, a pipe) or `/dev/stdin` (figment's own file layer
    /// skipped every path that is no regular file, without a word). A relative path is
    /// read from the working directory (no parent directory is searched).
    ///
    /// Errors: a `file` that is missing or a directory ([`crate::bench::BenchError::Usage`]:
    /// exit code 2); unreadable/invalid TOML, unknown keys, wrong types, invalid values (see
    /// [`Config::validate`]).
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<Config> {
        Self::load_noting_given(file, flags).map(|(cfg, _)| cfg)
    }

    /// [`Self::load`], also saying which of the keys of [`Given`] the file or the
    /// environment set.
    ///
    /// Errors: as [`Self::load`].
    pub fn load_noting_given(file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<(Config, Given)> {
        let mut fig = Figment::from(Defaults);
        if let Some(path) = file {
            match std::fs::metadata(path) {
                // A wrong `--config` value is a usage error (exit code 2, as clap's own).
                Ok(m) if m.is_dir() => return Err(usage(format!("config file \"{}\" is a directory, not a TOML file", path.display()))),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(usage(format!("config file \"{}\" does not exist", path.display()))),
                Err(e) => bail!("config file \"{}\" cannot be read: {e}", path.display()),
            }
            // Absolute, so that messages name the file wherever the process runs.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed(load_error::ENV_PREFIX).map(|k| k.as_str().replace("__", ".").replace('_', "-").into()));
        let set = |key: &str| fig.find_metadata(key).is_some_and(|m| m.name != DEFAULTS);
        let given = Given { listen: set("server.listen"), data_dir: set("server.data-dir") };
        let mut cfg: Config = fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {}", load_error::describe(e)))?;
        cfg.apply(flags);
        // An out-of-range value names its key; with a config file, also say where to look.
        if let Err(e) = cfg.validate() {
            return Err(match file {
                Some(p) => anyhow::anyhow!("{e:#} (configuration from \"{}\", SLUICE__* variables and flags)", p.display()),
                None => e,
            });
        }
        Ok((cfg, given))
    }
}
