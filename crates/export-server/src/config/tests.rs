//! The configuration's own checks: defaults, files, environment, validation.
use super::*;

fn load_toml(text: &str) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path))
}

#[test]
fn a_missing_file_is_an_error_but_no_file_means_defaults() {
    assert!(Config::load(Some(Path::new("/nonexistent/export-center.toml"))).is_err());
    let config = Config::load(None).unwrap();
    assert!(config.tenants.contains_key("tenant-default"));
    assert_eq!(config.limits, Limits::default());
}

#[test]
fn database_url_takes_sqlite_and_postgres() {
    for url in [
        "sqlite:///var/lib/export/db",
        "postgres://app@db:5432/export",
        "postgresql://db/export",
    ] {
        let config = load_toml(&format!("[database]\nurl = \"{url}\"\n")).expect(url);
        assert_eq!(config.database_url(), url);
    }
}

#[test]
fn the_replay_cache_follows_the_database_unless_set() {
    let sqlite = load_toml("").unwrap();
    assert!(!sqlite.replay_cache_in_database());
    let postgres = load_toml("[database]\nurl = \"postgres://db/export\"\n").unwrap();
    assert!(postgres.replay_cache_in_database());
    let memory =
        load_toml("[database]\nurl = \"postgres://db/export\"\n[auth]\nreplay_cache = \"memory\"\n").unwrap();
    assert!(!memory.replay_cache_in_database());
    let shared = load_toml("[auth]\nreplay_cache = \"database\"\n").unwrap();
    assert!(shared.replay_cache_in_database());
    let err = load_toml("[auth]\nreplay_cache = \"redis\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.replay_cache"), "{err}");
}

// Authentication hardening (SPEC §17).
#[test]
fn nonce_secret_and_jwks_reload_settings_are_checked() {
    let defaults = load_toml("").unwrap();
    assert_eq!(defaults.auth.nonce_secret_file, None);
    assert_eq!(defaults.auth.jwks_reload_seconds, 10);
    let err = load_toml("[auth]\njwks_reload_seconds = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.jwks_reload_seconds"), "{err}");
    // Replicas on a shared database need one secret, or they refuse each other's nonces.
    let postgres = "[database]\nurl = \"postgres://db/export\"\n[auth]\nrequire_nonce = true\n";
    let err = load_toml(postgres).unwrap_err().to_string();
    assert!(err.contains("auth.nonce_secret_file"), "{err}");
    let shared = format!("{postgres}nonce_secret_file = \"/etc/export-center/nonce.key\"\n");
    assert!(load_toml(&shared).is_ok());
    assert!(
        load_toml("[auth]\nrequire_nonce = true\n").is_ok(),
        "one machine: the data dir's secret"
    );
}

#[test]
fn passwords_are_redacted_from_database_urls() {
    assert_eq!(
        redact_password("postgres://app:s3cr%40t@db:5432/export?sslmode=require"),
        "postgres://app:***@db:5432/export?sslmode=require"
    );
    assert_eq!(
        redact_password("postgres://app@db/export"),
        "postgres://app@db/export"
    );
    assert_eq!(
        redact_password("sqlite:///data/a:b@c.db"),
        "sqlite:///data/a:b@c.db"
    );
}

#[test]
fn errors_name_the_key() {
    let err = load_toml("[limits]\nmax_targets = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.max_targets"), "{err}");
    let err = load_toml("[server]\nlisten = \"nowhere\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.listen"), "{err}");
    let err = load_toml("[server]\nlisen = \"127.0.0.1:1\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lisen"), "{err}");
    let err = load_toml("[tenants.acme.profiles.daily]\ntargets = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.acme.profiles.daily.targets"), "{err}");
    let err = load_toml("[tenants.acme.profiles.daily]\ntargets = [\"bogus\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.acme.profiles.daily.targets"), "{err}");
    let err = load_toml("[tenants.Acme.profiles.daily]\ntargets = [\"vex\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tenants.Acme"), "{err}");
    let err = load_toml("[database]\nurl = \"mysql://app:hunter2@db/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database.url") && err.contains("postgres://"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the password stays out of messages: {err}"
    );
    for (toml, key) in [
            ("[distribution.oci]\nattempts = 0\n", "distribution.oci.attempts"),
            (
                "[distribution.oci.registries.\"r.local\"]\npassword = \"p\"\n",
                "distribution.oci.registries.\"r.local\"",
            ),
            ("egress_allowlist = [\"https://r.local\"]\n", "egress_allowlist[0]"),
            ("[auth]\nreplay_cache_capacity = 0\n", "auth.replay_cache_capacity"),
            ("[artifacts]\nurl = \"s3://bucket/p\"\n", "artifacts.s3"),
            (
                "[distribution.object]\nbucket = \"b\"\n[distribution.object.s3]\naccess_key_id = \"\"\nsecret_access_key = \"s\"\n",
                "distribution.object.s3",
            ),
        ] {
            let err = format!("{:#}", load_toml(toml).unwrap_err());
            assert!(err.contains(key), "{toml}: {err}");
        }
    let err = load_toml("sealed = true\n").unwrap_err().to_string();
    assert!(
        err.contains("auth.mode") && err.contains("sealed"),
        "dev auth is refused when sealed: {err}"
    );
    let sealed_url = "sealed = true\n[auth]\nmode = \"jwt\"\njwks_url = \"https://issuer/jwks\"\n";
    let err = load_toml(sealed_url).unwrap_err().to_string();
    assert!(err.contains("auth.jwks_url"), "{err}");
}

#[test]
fn the_operator_listener_and_connection_limits_are_validated() {
    let config = load_toml("").unwrap();
    assert_eq!(config.server.admin_listen, "127.0.0.1:9090");
    for (toml, key) in [
        ("[server]\nadmin_listen = \"metrics\"\n", "server.admin_listen"),
        (
            "[server]\nadmin_listen = \"127.0.0.1:8080\"\n",
            "server.admin_listen",
        ),
        (
            "[server]\nheader_read_timeout_seconds = 0\n",
            "server.header_read_timeout_seconds",
        ),
        (
            "[server]\nidle_timeout_seconds = 15\n",
            "server.idle_timeout_seconds",
        ),
        (
            "[limits]\nsse_streams_per_tenant = 0\n",
            "limits.sse_streams_per_tenant",
        ),
        (
            "[server]\nstatus_cache_entries = 0\n",
            "server.status_cache_entries",
        ),
    ] {
        let err = format!("{:#}", load_toml(toml).unwrap_err());
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[test]
fn the_annotated_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../export-center.example.toml");
    let config = Config::load(Some(&path)).unwrap();
    assert!(!config.profiles().unwrap().is_empty());
}

#[test]
fn modes_are_one_of_their_names_and_a_wrong_one_names_the_key_and_the_choices() {
    let config =
        load_toml("[auth]\nmode = \"disabled\"\nreplay_cache = \"memory\"\n[logging]\nformat = \"json\"\n")
            .unwrap();
    assert_eq!(config.auth.mode, AuthMode::Disabled);
    assert_eq!(config.auth.replay_cache, Some(ReplayCacheKind::Memory));
    assert_eq!(config.logging.format, LogFormat::Json);
    for mode in [AuthMode::Dev, AuthMode::Jwt, AuthMode::Disabled] {
        assert_eq!(
            serde_json::to_value(mode).unwrap(),
            mode.name(),
            "messages name modes as configured"
        );
    }
    for (toml, key, choices) in [
        (
            "[auth]\nmode = \"oauth\"\n",
            "auth.mode",
            &["`dev`", "`jwt`", "`disabled`"][..],
        ),
        (
            "[logging]\nformat = \"yaml\"\n",
            "logging.format",
            &["`text`", "`json`"][..],
        ),
        (
            "[auth]\nreplay_cache = \"redis\"\n",
            "auth.replay_cache",
            &["`memory`", "`database`"][..],
        ),
    ] {
        let err = format!("{:#}", load_toml(toml).unwrap_err());
        assert!(
            err.contains(key) && choices.iter().all(|choice| err.contains(choice)),
            "{err}"
        );
    }
}

#[test]
fn configured_secrets_are_read_but_never_printed() {
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
    let config = load_toml(&format!(
        "[[url_signing.keys]]\nkid = \"k1\"\nsecret = \"{secret}\"\n\
         [artifacts]\nurl = \"s3://bucket\"\n\
         [artifacts.s3]\nendpoint = \"http://127.0.0.1:9000\"\naccess_key_id = \"id\"\n\
         secret_access_key = \"s3-secret-key\"\nallow_http = true\n\
         [distribution.oci.registries.\"r.local\"]\nusername = \"u\"\npassword = \"registry-password\"\n"
    ))
    .unwrap();
    let key = &config.url_signing.keys[0];
    assert_eq!(key.secret.as_ref().map(Secret::expose), Some(secret));
    let s3 = config.artifacts.s3.as_ref().expect("artifacts.s3");
    assert_eq!(s3.secret_access_key.expose(), "s3-secret-key");
    let registry = &config.distribution.oci.registries["r.local"];
    assert_eq!(
        registry.password.as_ref().map(Secret::expose),
        Some("registry-password")
    );
    let printed = format!("{config:?}");
    for secret in [secret, "s3-secret-key", "registry-password"] {
        assert!(!printed.contains(secret), "`{secret}` is printed: {printed}");
    }
    assert!(printed.contains("<redacted>"), "{printed}");
    let serialized = serde_json::to_string(&config).unwrap();
    for secret in [secret, "s3-secret-key", "registry-password"] {
        assert!(
            !serialized.contains(secret),
            "`{secret}` is serialized: {serialized}"
        );
    }
}
