//! The server's TOML config: the example in README.md parses into what it says, and unknown
//! values are refused.

use quipu::server::ServerConfig;

fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("README has a TOML example") + 8;
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

#[test]
fn the_readme_example_parses_and_validates() {
    let config: ServerConfig = toml::from_str(&readme_example()).unwrap();
    config.validate().unwrap();
    assert_eq!(config.port, 7379);
    assert_eq!(config.password.as_deref(), Some("cambia-esto"));
    assert_eq!(config.timeout_secs, 300);
    assert_eq!(config.namespaces[0].prefix, "session:");
    assert_eq!(config.namespaces[0].ttl_secs, Some(1800));
    assert!(config.namespaces[0].critical);
    assert_eq!(config.save_secs, 300);
    assert_eq!(config.users[0].keys, vec!["delivery:42:*"]);
    assert_eq!(config.tls.as_ref().unwrap().port, 7390);
    assert_eq!(config.durable_channels, vec!["delivery.*"]);
    assert_eq!(config.tokens[0].subscribe, vec!["delivery.42.*"]);
    assert!(config.stream_durability().is_ok());
}

#[test]
fn two_rules_that_give_one_namespace_different_settings_are_refused() {
    let rules = |second: &str| -> Result<(), String> {
        let text = format!(
            "[[namespaces]]\nprefix = \"s:\"\nname = \"sessions\"\ncritical = true\n\
             [[namespaces]]\nprefix = \"t:\"\nname = \"sessions\"\n{second}"
        );
        let config: ServerConfig = toml::from_str(&text).unwrap();
        config.validate().map_err(|e| e.to_string())
    };
    assert!(
        rules("critical = true\n").is_ok(),
        "the same settings: one namespace"
    );
    let e = rules("").unwrap_err();
    assert!(
        e.contains("sessions") && e.contains("different settings"),
        "{e}"
    );
    let e = rules("critical = true\nttl_secs = 5\n").unwrap_err();
    assert!(e.contains("different settings"), "{e}");
    let config: ServerConfig =
        toml::from_str("[[namespaces]]\nprefix = \"s:\"\nname = \"default\"\ncritical = true\n")
            .unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("default namespace"), "{e}");
}

#[test]
fn a_bad_value_is_an_error_not_a_default() {
    let bad: Result<ServerConfig, _> = toml::from_str("port = \"seven\"");
    assert!(bad.is_err());
    let config: ServerConfig = toml::from_str("appendfsync = \"sometimes\"").unwrap();
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("appendfsync")
    );
    for bad in [
        "max_http_clients = 0",
        "max_clients = 0",
        "max_http_clients = 100000000000",
        "busy_poll_us = 10001",
    ] {
        let config: ServerConfig = toml::from_str(bad).unwrap();
        let field = bad.split(' ').next().unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
    let config: ServerConfig = toml::from_str("max_http_clients = 50").unwrap();
    assert_eq!(config.max_http_clients, 50);
    config.validate().unwrap();
    for ok in ["busy_poll_us = 0", "busy_poll_us = 10000"] {
        let config: ServerConfig = toml::from_str(ok).unwrap();
        config.validate().unwrap();
    }
    let defaults: ServerConfig = toml::from_str("").unwrap();
    assert_eq!(defaults, ServerConfig::default());
}
