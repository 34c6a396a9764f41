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

/// Where a layer above the built-in defaults set each cluster key of `[dataflow]`, worded as
/// configuration errors name a key (`dataflow.processes in /abs/sluice.toml`,
/// `SLUICE__DATAFLOW__PROCESSES (environment variable)`); `None`: the default (or a flag, which
/// the caller clears). [`Config::check_cluster`] names them in its errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSources {
    /// `dataflow.processes`.
    pub processes: Option<String>,
    /// `dataflow.process-id`.
    pub process_id: Option<String>,
    /// `dataflow.hostfile`.
    pub hostfile: Option<String>,
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
        let (cfg, given, sources) = Self::load_unchecked(file, flags)?;
        cfg.check_cluster(&sources)?;
        cfg.check_loaded(file)?;
        Ok((cfg, given))
    }

    /// The layers of [`Self::load`] merged, `flags` applied, not validated (for a command
    /// with flags of its own to apply first, then [`Self::check_cluster`] and
    /// [`Self::check_loaded`]); also which keys of [`Given`] the file or the environment set,
    /// and where the cluster keys come from.
    ///
    /// Errors: a `file` that is missing or a directory (usage error, exit code 2); an
    /// unreadable file, invalid TOML, unknown keys, wrong types.
    pub fn load_unchecked(file: Option<&Path>, flags: &FlagOverrides) -> anyhow::Result<(Config, Given, ClusterSources)> {
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
        let place = |key: &str| fig.find_metadata(key).filter(|m| m.name != DEFAULTS).map(|m| load_error::place(m, key));
        let sources = ClusterSources { processes: place("dataflow.processes"), process_id: place("dataflow.process-id"), hostfile: place("dataflow.hostfile") };
        let mut cfg: Config = fig.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {}", load_error::describe(e)))?;
        cfg.apply(flags);
        Ok((cfg, given, sources))
    }

    /// The cluster keys of `[dataflow]` checked as one setting, whichever layer gave them
    /// ([`crate::job::config::DataflowSection::validate_cluster`]): a cluster that cannot
    /// start is a usage error (exit code 2), as the same values given as `--processes`,
    /// `--process-id` or `--hostfile` are. The message names the keys the config file or
    /// environment set (`sources`), e.g. `dataflow.processes = 2 needs dataflow.process-id
    /// (--process-id): this process's line in the hostfile, 0 to 1 (from dataflow.processes
    /// in /etc/sluice.toml, SLUICE__DATAFLOW__HOSTFILE (environment variable))`.
    ///
    /// Errors: that usage error.
    pub fn check_cluster(&self, sources: &ClusterSources) -> anyhow::Result<()> {
        let Err(e) = self.dataflow.validate_cluster() else { return Ok(()) };
        let from: Vec<&str> = [&sources.processes, &sources.process_id, &sources.hostfile].into_iter().flatten().map(String::as_str).collect();
        Err(match from.as_slice() {
            [] => usage(format!("{e:#}")),
            _ => usage(format!("{e:#} (from {})", from.join(", "))),
        })
    }

    /// [`Config::validate`] of a configuration [`Self::load_unchecked`] loaded from `file`.
    ///
    /// Errors: the first invalid value, naming its key; with a config file, also where to look.
    pub fn check_loaded(&self, file: Option<&Path>) -> anyhow::Result<()> {
        // An out-of-range value names its key; with a config file, also say where to look.
        self.validate().map_err(|e| match file {
            Some(p) => anyhow::anyhow!("{e:#} (configuration from \"{}\", SLUICE__* variables and flags)", p.display()),
            None => e,
        })
    }
}
