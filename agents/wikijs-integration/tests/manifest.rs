//! The 1ld manifest (`src/apps/builtin/wikijs-integration.toml`) renders
//! config and secrets files this agent accepts: every key it writes is one
//! the agent knows (`deny_unknown_fields`), with the settings given and with
//! the optional ones left unset. The rendering mimics 1ld's template
//! filters (`{{ x }}` TOML value, `| raw` text, `| secs` seconds; an unset
//! setting renders as nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::collections::BTreeMap;

use wikijs_integration::config::{Config, Secrets};

fn manifest() -> toml::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../src/apps/builtin/wikijs-integration.toml"
    );
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn render(template: &str, vars: &BTreeMap<&str, (&str, u64)>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start;
        let inner = rest[start + 2..end].trim();
        let (name, filter) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner, None),
        };
        if let Some((text, secs)) = vars.get(name) {
            match filter {
                Some("raw") => out.push_str(text),
                Some("secs") => out.push_str(&secs.to_string()),
                _ => out.push_str(&toml::Value::String((*text).to_string()).to_string()),
            }
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn template(m: &toml::Value, path: &str) -> String {
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
        .unwrap()["template"]
        .as_str()
        .unwrap()
        .to_string()
}

fn defaults(m: &toml::Value) -> BTreeMap<String, String> {
    m["settings"]
        .as_table()
        .unwrap()
        .iter()
        .filter_map(|(k, d)| Some((k.clone(), d.get("default")?.as_str()?.to_string())))
        .collect()
}

#[test]
fn rendered_files_are_accepted() {
    let m = manifest();
    let d = defaults(&m);
    let mut vars: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for (k, v) in &d {
        vars.insert(k, (v, 300));
    }
    for (k, v) in [
        ("name", "wiki"),
        ("app", "wikijs-integration"),
        ("app_version", "0.1.0"),
        ("wikijs_url", "http://wiki.lan:3000"),
    ] {
        vars.insert(k, (v, 0));
    }
    vars.insert("wikijs_timeout", ("10s", 10));
    vars.insert("wikijs_api_key", ("eyJ.a\"b'c.d", 0));

    // Only the required settings: no repository (Wiki.js check only), no
    // optional secrets.
    let config = render(&template(&m, "/etc/wikijs-integration/config.toml"), &vars);
    let cfg: Config = toml::from_str(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    cfg.validate().unwrap();
    assert!(cfg.source().is_none());
    let secrets = render(&template(&m, "/etc/wikijs-integration/secrets.toml"), &vars);
    let s: Secrets = toml::from_str(&secrets).unwrap_or_else(|e| panic!("{e}\n{secrets}"));
    assert_eq!(s.wikijs_api_key.expose(), "eyJ.a\"b'c.d");
    assert!(s.webhook_secret.unwrap().is_blank());

    // Everything set, secrets with quotes and backslashes.
    vars.insert("repository", ("https://git.lan/team/project.git", 0));
    vars.insert("subfolder", ("docs", 0));
    vars.insert("on_delete", ("unpublish", 0));
    vars.insert("webhook_secret", ("s3\"c\\r'et", 0));
    vars.insert("git_token", ("glpat-xyz", 0));
    vars.insert("sync_token", ("tok", 0));
    let config = render(&template(&m, "/etc/wikijs-integration/config.toml"), &vars);
    let cfg: Config = toml::from_str(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    cfg.validate().unwrap();
    let src = cfg.source().unwrap();
    assert_eq!(
        (src.branch.as_str(), src.subfolder.as_str()),
        ("main", "docs")
    );
    assert_eq!(cfg.wikijs.prefix, "docs");
    let secrets = render(&template(&m, "/etc/wikijs-integration/secrets.toml"), &vars);
    let s: Secrets = toml::from_str(&secrets).unwrap_or_else(|e| panic!("{e}\n{secrets}"));
    assert_eq!(s.webhook_secret.unwrap().expose(), "s3\"c\\r'et");
    assert_eq!(s.git_token.unwrap().expose(), "glpat-xyz");

    // The pre-backup hook is this binary's --backup-db.
    let hook: Vec<&str> = m["data"]["pre_backup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(hook[0], "/usr/local/bin/wikijs-integration");
    assert_eq!(hook[1], "--backup-db");
}
