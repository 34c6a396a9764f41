#![allow(clippy::result_large_err)] // figment::Jail's closure signature returns figment::Error

use std::path::Path;

use super::*;

#[test]
fn default_config_parses_and_round_trips() {
    let cfg: Config = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
    cfg.validate().expect("defaults are valid");
    assert_eq!(cfg.server.listen, "127.0.0.1:8080".parse::<SocketAddr>().expect("addr"));
    assert_eq!(cfg.server.role, Role::All);
    assert_eq!(cfg.links.code_length, 7);
    assert_eq!(cfg.links.max_url_bytes, 8192);
    assert_eq!(cfg.links.permanent_max_age, Duration::from_secs(3600));
    assert_eq!(cfg.redirect.cache_ttl, Duration::from_secs(60));
    assert_eq!(cfg.redirect.negative_ttl, Duration::from_secs(5));
    assert_eq!(cfg.redirect.click_log_linger, Duration::from_millis(20));
    assert_eq!(cfg.server.worker_slice, Duration::from_micros(100));
    assert_eq!(cfg.visitor.salt_period, SaltPeriod::Day);
    assert_eq!(cfg.base_url().expect("base").as_str(), "http://127.0.0.1:8080/");
    assert_eq!(cfg.store.timeouts(), sluice_connectors::StoreTimeouts::default());
    let text = toml::to_string(&cfg).expect("serializes");
    let back: Config = toml::from_str(&text).expect("re-parses");
    assert_eq!(back, cfg);
}

#[test]
fn unknown_keys_are_rejected() {
    let bad = DEFAULT_TOML.replace("code-length = 7", "code-length = 7\ncode-lenght = 8");
    let err = toml::from_str::<Config>(&bad).expect_err("typo must fail");
    assert!(err.to_string().contains("code-lenght"), "{err}");
}

#[test]
fn layers_apply_in_order_defaults_file_env_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "sluice.toml",
            r#"
            [server]
            listen = "127.0.0.1:7001"
            data-dir = "/from/file"
            role = "api"
            [links]
            code-length = 9
            permanent-max-age = "10m"
            "#,
        )?;
        jail.set_env("SLUICE__SERVER__LISTEN", "127.0.0.1:7002");
        jail.set_env("SLUICE__LINKS__CODE_LENGTH", "10");
        jail.set_env("SLUICE__REDIRECT__NEGATIVE_TTL", "250ms");
        jail.set_env("SLUICE__REDIRECT__CLICK_LOG_LINGER", "0s");
        jail.set_env("SLUICE__SERVER__WORKER_SLICE", "2ms");

        // file over defaults, env over file
        let cfg = Config::load(Some(Path::new("sluice.toml")), &FlagOverrides::default()).expect("load");
        assert_eq!(cfg.server.listen, "127.0.0.1:7002".parse::<SocketAddr>().expect("addr"), "env beats file");
        assert_eq!(cfg.server.data_dir, PathBuf::from("/from/file"), "file beats default");
        assert_eq!(cfg.server.role, Role::Api);
        assert_eq!(cfg.links.code_length, 10, "env beats file");
        assert_eq!(cfg.links.permanent_max_age, Duration::from_secs(600), "human duration from file");
        assert_eq!(cfg.redirect.negative_ttl, Duration::from_millis(250), "human duration from env");
        assert_eq!(cfg.redirect.click_log_linger, Duration::ZERO);
        assert_eq!(cfg.server.worker_slice, Duration::from_millis(2));
        assert_eq!(cfg.links.max_url_bytes, 8192, "untouched default");
        assert_eq!(cfg.base_url().expect("base").as_str(), "http://127.0.0.1:7002/", "base url follows listen");

        // flags over everything
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:7003".parse().expect("addr")),
            data_dir: Some(PathBuf::from("/from/flag")),
            role: Some(Role::Redirect),
            base_url: Some("https://sho.rt.example".into()),
            short_domains: vec!["kurz.example".into()],
            workers: Some(3),
        };
        let cfg = Config::load(Some(Path::new("sluice.toml")), &flags).expect("load");
        assert_eq!(cfg.server.listen, "127.0.0.1:7003".parse::<SocketAddr>().expect("addr"));
        assert_eq!(cfg.server.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(cfg.server.role, Role::Redirect);
        assert_eq!(cfg.server.short_domains, vec!["kurz.example".to_string()]);
        assert_eq!(cfg.server.workers, 3);
        assert_eq!(cfg.base_url().expect("base").as_str(), "https://sho.rt.example/");
        assert_eq!(cfg.links.code_length, 10, "no flag: env value stays");
        Ok(())
    });
}

#[test]
fn invalid_values_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SLUICE__LINKS__CODE_LENGTH", "2");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("too short");
        assert!(err.to_string().contains("code-length"), "{err}");
        jail.set_env("SLUICE__LINKS__CODE_LENGTH", "7");
        jail.set_env("SLUICE__SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"127.0.0.1\", \"nonsense\"]");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("bad cidr");
        assert!(err.to_string().contains("nonsense"), "{err}");
        jail.set_env("SLUICE__SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\", \"127.0.0.1\", \"::1\"]");
        let cfg = Config::load(None, &FlagOverrides::default()).expect("valid proxies");
        let nets = cfg.trusted_proxies().expect("nets");
        assert_eq!(nets.iter().map(ToString::to_string).collect::<Vec<_>>(), vec!["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
        assert_eq!(cfg.forwarded_header().expect("default").to_string(), "auto");
        jail.set_env("SLUICE__SERVER__FORWARDED_HEADER", "x real ip");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("not a header name");
        assert!(err.to_string().contains("server.forwarded-header \"x real ip\" is not a header name"), "{err}");
        jail.set_env("SLUICE__SERVER__FORWARDED_HEADER", "CF-Connecting-IP");
        let cfg = Config::load(None, &FlagOverrides::default()).expect("a header name");
        assert_eq!(cfg.forwarded_header().expect("parsed").to_string(), "cf-connecting-ip");
        assert_eq!(cfg.prefetch().expect("default"), sluice_redirect::prefetch::PrefetchPolicy::Refuse);
        jail.set_env("SLUICE__REDIRECT__PREFETCH", "ignore");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("unknown prefetch policy");
        assert!(err.to_string().contains(r#"redirect.prefetch "ignore" is not one of "refuse" (the default), "redirect" or "count""#), "{err}");
        jail.set_env("SLUICE__REDIRECT__PREFETCH", "Count");
        let cfg = Config::load(None, &FlagOverrides::default()).expect("count");
        assert_eq!(cfg.prefetch().expect("parsed"), sluice_redirect::prefetch::PrefetchPolicy::Count);
        jail.set_env("SLUICE__REDIRECT__PREFETCH", "refuse");
        for (interval, ok) in [("1ns", false), ("999ms", false), ("0s", true), ("1s", true), ("1h", true)] {
            jail.set_env("SLUICE__DATAFLOW__CHECKPOINT_INTERVAL", interval);
            match Config::load(None, &FlagOverrides::default()) {
                Ok(cfg) => assert!(ok, "{interval} accepted: {:?}", cfg.dataflow.checkpoint_interval),
                Err(e) => {
                    assert!(!ok, "{interval}: {e}");
                    assert!(
                        e.to_string().contains(&format!("dataflow.checkpoint-interval must be \"0s\" (no checkpoints) or at least 1s, got {interval}")),
                        "{e}"
                    );
                }
            }
        }
        jail.set_env("SLUICE__DATAFLOW__CHECKPOINT_INTERVAL", "30s");
        let flags = FlagOverrides { base_url: Some("https://sho.rt.example/prefix".into()), ..FlagOverrides::default() };
        assert!(Config::load(None, &flags).is_err(), "base url with a path");
        let flags = FlagOverrides { base_url: Some("ftp://sho.rt.example".into()), ..FlagOverrides::default() };
        assert!(Config::load(None, &flags).is_err(), "non-http base url");
        jail.set_env("SLUICE__VISITOR__SALT_PERIOD", "2d");
        assert!(Config::load(None, &FlagOverrides::default()).is_err(), "unknown salt period");
        jail.set_env("SLUICE__VISITOR__SALT_PERIOD", "never");
        let cfg = Config::load(None, &FlagOverrides::default()).expect("never");
        assert_eq!(cfg.visitor.salt_period.period_ms(), None);
        // store.url: only the documented forms; a typo must not become a SQLite path.
        for bad in ["mysql://x", "garbage", "postgress://u:hunter2@h/db"] {
            jail.set_env("SLUICE__STORE__URL", bad);
            let err = Config::load(None, &FlagOverrides::default()).expect_err(bad).to_string();
            assert!(err.contains("store.url") && !err.contains("hunter2"), "{bad}: {err}");
        }
        // Schemes in any case (RFC 3986 §3.1).
        for good in ["", "postgres://u:p@127.0.0.1:5432/db", "postgresql://h/db", "sqlite:data/links.db", "SQLITE:data/links.db", "PostgreSQL://h/db"] {
            jail.set_env("SLUICE__STORE__URL", good);
            Config::load(None, &FlagOverrides::default()).expect(good);
        }
        Ok(())
    });
}

/// `[links] blocklist`: IPv6 addresses bare or bracketed; an entry with no readable host
/// stops the start with a message saying how to write it (not "invalid port number").
#[test]
fn blocklist_entries_take_ipv6_addresses_and_bad_ones_say_how_to_write_them() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("ok.toml", "[links]\nblocklist = [\"2001:db8::1\", \"[2001:db8::2]\", \"[2001:db8::3]:443\", \"evil.example\"]\n")?;
        Config::load(Some(std::path::Path::new("ok.toml")), &FlagOverrides::default()).expect("valid blocklist");
        jail.create_file("bad.toml", "[links]\nblocklist = [\"evil.example\", \"2001:db8::zz\"]\n")?;
        let err = Config::load(Some(std::path::Path::new("bad.toml")), &FlagOverrides::default()).expect_err("bad entry");
        assert_eq!(
            format!("{err:#}"),
            "links.blocklist entry \"2001:db8::zz\" (invalid_pattern): invalid blocklist entry: \"2001:db8::zz\" is neither a domain nor an IPv6 address; write an IPv6 address bare (2001:db8::1) or in brackets ([2001:db8::1], with a port [2001:db8::1]:443) (configuration from \"bad.toml\", SLUICE__* variables and flags)"
        );
        jail.create_file("nohost.toml", "[links]\nblocklist = [\"http://\"]\n")?;
        let err = Config::load(Some(std::path::Path::new("nohost.toml")), &FlagOverrides::default()).expect_err("no host");
        assert!(
            format!("{err:#}").starts_with("links.blocklist entry \"http://\" (invalid_pattern): invalid blocklist entry: \"http://\" is not a domain"),
            "{err:#}"
        );
        Ok(())
    });
}

/// `[links] blocklist` follows the admin API's rules: entries that would silently be read as
/// something else than written stop the start with the admin API's error code and message.
#[test]
fn blocklist_entries_the_admin_api_refuses_stop_the_start() {
    figment::Jail::expect_with(|jail| {
        for (entry, code) in [
            ("10.0.0.0/8", "invalid_pattern"),
            ("*.evil.com", "pattern_wildcard"),
            ("com", "pattern_public_suffix"),
            ("co.uk", "pattern_public_suffix"),
            ("http:///x", "pattern_public_suffix"),
            ("/path", "invalid_pattern"),
            ("evil.com/login", "invalid_pattern"),
            ("a..com", "invalid_pattern"),
        ] {
            jail.create_file("b.toml", &format!("[links]\nblocklist = [\"evil.example\", {entry:?}]\n"))?;
            let err = format!("{:#}", Config::load(Some(std::path::Path::new("b.toml")), &FlagOverrides::default()).expect_err(entry));
            assert!(err.starts_with(&format!("links.blocklist entry {entry:?} ({code}): ")), "{entry}: {err}");
        }
        // What the admin API accepts is accepted (any spelling of one host or address).
        jail.create_file("ok.toml", "[links]\nblocklist = [\"https://Evil.Example:8443/x\", \"pages.github.io\", \"10.0.0.1\", \"::ffff:10.0.0.2\"]\n")?;
        Config::load(Some(std::path::Path::new("ok.toml")), &FlagOverrides::default()).expect("valid blocklist");
        Ok(())
    });
}

#[test]
fn secret_debug_is_redacted_and_parses() {
    let s = Secret("ab".repeat(32));
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(parse_secret(&s.0).expect("hex"), [0xab; 32]);
    assert!(parse_secret("abcd").is_err());
    assert!(parse_secret(&"zz".repeat(32)).is_err());
}

#[test]
fn load_errors_name_the_key_as_written_in_the_file_or_the_env_var() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[server]\nlisten = \"nope\"\n")?;
        let err = Config::load(Some(Path::new("bad.toml")), &FlagOverrides::default()).expect_err("bad file").to_string();
        let file = std::fs::canonicalize("bad.toml").expect("abs").display().to_string();
        assert_eq!(err, format!("invalid configuration: server.listen in {file}: invalid socket address syntax"));
        jail.create_file("typo.toml", "[links]\ncode-lenght = 8\n")?;
        let err = Config::load(Some(Path::new("typo.toml")), &FlagOverrides::default()).expect_err("unknown key").to_string();
        let file = std::fs::canonicalize("typo.toml").expect("abs").display().to_string();
        assert_eq!(
            err,
            format!(
                "invalid configuration: links.code-lenght in {file}: unknown field: found `code-lenght`, expected one of `code-length`, `max-url-bytes`, `blocklist`, `append-query`, `permanent-max-age`"
            )
        );
        jail.set_env("SLUICE__LINKS__CODE_LENGHT", "8");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("unknown env key").to_string();
        assert!(err.starts_with("invalid configuration: SLUICE__LINKS__CODE_LENGHT (environment variable): unknown field: found `code-lenght`"), "{err}");
        jail.clear_env();
        // an unknown value lists the accepted ones, each in one pair of backticks
        jail.set_env("SLUICE__VISITOR__SALT_PERIOD", "2d");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("unknown value").to_string();
        assert_eq!(
            err,
            "invalid configuration: SLUICE__VISITOR__SALT_PERIOD (environment variable): unknown value: found `2d`, expected one of `1d`, `7d`, `30d`, `never`"
        );
        jail.clear_env();
        jail.set_env("SLUICE__SERVER__LISTEN", "nope");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("bad env").to_string();
        assert_eq!(err, "invalid configuration: SLUICE__SERVER__LISTEN (environment variable): invalid socket address syntax");
        jail.set_env("SLUICE__SERVER__LISTEN", "127.0.0.1:1");
        jail.set_env("SLUICE__REDIRECT__CACHE_TTL_JITTER", "lots");
        let err = Config::load(None, &FlagOverrides::default()).expect_err("bad env").to_string();
        assert!(err.starts_with("invalid configuration: SLUICE__REDIRECT__CACHE_TTL_JITTER (environment variable): invalid type: "), "{err}");
        assert!(!err.contains("default."), "{err}");
        Ok(())
    });
}

#[test]
fn a_config_path_that_is_a_directory_or_missing_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Config::load(Some(dir.path()), &FlagOverrides::default()).expect_err("a directory").to_string();
    assert_eq!(err, format!("config file \"{}\" is a directory, not a TOML file", dir.path().display()));
    let missing = dir.path().join("nope.toml");
    let err = Config::load(Some(&missing), &FlagOverrides::default()).expect_err("missing").to_string();
    assert_eq!(err, format!("config file \"{}\" does not exist", missing.display()));
}

#[test]
fn base_url_refuses_credentials_without_echoing_them_and_drops_a_trailing_dot() {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    for (raw, want) in
        [("https://SHO.RT.", "https://sho.rt/"), ("http://sho.rt.:8080/", "http://sho.rt:8080/"), ("http://127.0.0.1:9000", "http://127.0.0.1:9000/")]
    {
        cfg.server.base_url = Some(raw.into());
        assert_eq!(cfg.base_url().expect(raw).as_str(), want, "{raw}");
    }
    for raw in ["https://u:hunter2@sho.rt", "https://u@sho.rt", "https://:hunter2@sho.rt/"] {
        cfg.server.base_url = Some(raw.into());
        let e = cfg.base_url().expect_err(raw).to_string();
        assert_eq!(
            e,
            "server.base-url \"https://sho.rt/\" (credentials removed here) must not contain user:password@ credentials: short URLs would not carry them"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn short_domains_must_be_bare_host_names() {
    for ok in ["sho.rt", "kurz.example", "xn--bcher-kva.example", "bücher.example", "127.0.0.1", "[::1]", "localhost"] {
        assert_eq!(check_short_domain(ok), Ok(ok.to_owned()), "{ok}");
    }
    let hint = "give a bare host name such as sho.rt.example";
    assert_eq!(check_short_domain(""), Err(format!("\"\" is empty: {hint}")));
    assert_eq!(check_short_domain("  "), Err(format!("\"  \" is empty: {hint}")));
    assert_eq!(check_short_domain("a b"), Err(format!("\"a b\" is not a host name (invalid international domain name): {hint}")));
    for bad in ["sho.rt:8080", "https://sho.rt", "sho.rt/x", "u@sho.rt", "sho.rt?q", "[::1]:80"] {
        assert_eq!(check_short_domain(bad), Err(format!("{bad:?} is not a host name (no scheme, port, path or userinfo): {hint}")), "{bad}");
    }
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.short_domains = vec!["ok.example".into(), "a b".into()];
    let e = cfg.validate().expect_err("a b");
    assert_eq!(e.to_string(), format!("server.short-domains entry \"a b\" is not a host name (invalid international domain name): {hint}"));
}

#[test]
fn drain_timeout_has_a_floor() {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    for (given, shown) in [(Duration::ZERO, "0ns"), (Duration::from_millis(999), "999ms")] {
        cfg.server.drain_timeout = given;
        assert_eq!(
            cfg.validate().expect_err("too short").to_string(),
            format!("server.drain-timeout must be at least 1s (the stop drains the click log and writes the dataflow checkpoint in it), got {shown}")
        );
    }
    cfg.server.drain_timeout = Duration::from_secs(1);
    cfg.validate().expect("1 s is enough");
}

#[test]
fn store_timeouts_must_be_more_than_zero() {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("default.toml parses");
    cfg.store.acquire_timeout = Duration::ZERO;
    assert_eq!(cfg.validate().expect_err("zero").to_string(), "store.acquire-timeout must be more than 0, e.g. \"3s\"");
    cfg.store.acquire_timeout = Duration::from_millis(1500);
    cfg.validate().expect("1.5 s");
    assert_eq!(cfg.store.timeouts().acquire, Duration::from_millis(1500));
    cfg.store.connect_timeout = Duration::ZERO;
    assert_eq!(cfg.validate().expect_err("zero").to_string(), "store.connect-timeout must be more than 0, e.g. \"10s\"");
}

/// Attack of session 53: a bad `[kafka]` value was found only when Kafka mode started, as
/// `invalid [kafka] configuration: invalid configuration: kafka.partitions: …`, without the
/// file. It is checked with the rest of the configuration, once, naming the file.
#[test]
fn a_bad_kafka_value_is_refused_at_load_naming_the_key_and_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("k.toml", "[kafka]\nbrokers = \"127.0.0.1:9092\"\npartitions = 0\n")?;
        let err = Config::load(Some(Path::new("k.toml")), &FlagOverrides::default()).expect_err("partitions 0");
        assert_eq!(
            format!("{err:#}"),
            "invalid configuration: kafka.partitions: 0 is outside 1..=32767 (configuration from \"k.toml\", SLUICE__* variables and flags)"
        );
        Ok(())
    });
}
