//! The 1ld manifest (`src/apps/builtin/netbox-agent.toml`) renders config
//! and secrets files this agent accepts (`deny_unknown_fields`, then its own
//! validation): with only the required settings (every source off, optional
//! secrets unset) and with every source switched on. The rendering mimics
//! 1ld's template filters: `{{ x }}` the value as TOML, `| raw` plain text,
//! `| secs` a duration in seconds; an unset setting renders as nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeMap;

use netbox_agent::config::{Config, Secrets};

fn manifest() -> toml::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../src/apps/builtin/netbox-agent.toml"
    );
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn secs(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.len() - 1);
    n.parse::<u64>().unwrap()
        * match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            other => panic!("unit {other}"),
        }
}

fn render(template: &str, vars: &BTreeMap<String, toml::Value>) -> String {
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
        if let Some(v) = vars.get(name) {
            match filter {
                Some("raw") => out.push_str(v.as_str().unwrap()),
                Some("secs") => out.push_str(&secs(v.as_str().unwrap()).to_string()),
                _ => out.push_str(&v.to_string()),
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

fn vars(m: &toml::Value, given: &[(&str, toml::Value)]) -> BTreeMap<String, toml::Value> {
    let mut v: BTreeMap<String, toml::Value> = m["settings"]
        .as_table()
        .unwrap()
        .iter()
        .filter_map(|(k, d)| Some((k.clone(), d.get("default")?.clone())))
        .collect();
    for (k, val) in [
        ("name", "nb"),
        ("app", "netbox-agent"),
        ("app_version", "0.1.0"),
    ] {
        v.insert(k.into(), toml::Value::String(val.into()));
    }
    for (k, val) in given {
        assert!(
            m["settings"].get(*k).is_some() || *k == "name",
            "no setting {k}"
        );
        v.insert((*k).to_string(), val.clone());
    }
    v
}

fn accepted(v: &BTreeMap<String, toml::Value>) -> (Config, Secrets) {
    let m = manifest();
    let config = render(&template(&m, "/etc/netbox-agent/config.toml"), v);
    let cfg: Config = toml::from_str(&config).unwrap_or_else(|e| panic!("{e}\n{config}"));
    cfg.validate().unwrap_or_else(|e| panic!("{e}\n{config}"));
    let secrets = render(&template(&m, "/etc/netbox-agent/secrets.toml"), v);
    let sec: Secrets = toml::from_str(&secrets).unwrap_or_else(|e| panic!("{e}\n{secrets}"));
    (cfg, sec)
}

fn s(x: &str) -> toml::Value {
    toml::Value::String(x.into())
}

#[test]
fn required_settings_only() {
    let m = manifest();
    let v = vars(
        &m,
        &[
            ("netbox_url", s("http://netbox.lan:8000")),
            ("netbox_token", s("nbt_abc.def")),
        ],
    );
    let (cfg, sec) = accepted(&v);
    assert!(
        !cfg.sources.network_scan.enabled
            && !cfg.sources.proxmox.enabled
            && !cfg.sources.inventory.enabled
    );
    assert!(
        cfg.sources.network_scan.cidrs.is_empty(),
        "the default scans nothing"
    );
    assert!(
        sec.proxmox_token_secret.is_none()
            && sec.home_assistant_token.is_none()
            && sec.truenas_api_key.is_none()
    );
    assert_eq!(cfg.sync.full_sync_interval_s, 3600);
}

#[test]
fn every_source_on() {
    let m = manifest();
    let t = toml::Value::Boolean(true);
    let v = vars(
        &m,
        &[
            ("netbox_url", s("https://netbox.lan")),
            ("netbox_token", s("nbt_abc.def")),
            ("scan_enabled", t.clone()),
            ("scan_cidrs", toml::Value::Array(vec![s("192.168.1.0/24")])),
            (
                "scan_exclude",
                toml::Value::Array(vec![s("192.168.1.1/32")]),
            ),
            ("inventory_enabled", t.clone()),
            ("proxmox_enabled", t.clone()),
            ("proxmox_url", s("https://pve.lan:8006")),
            ("proxmox_token_id", s("netbox@pve!agent")),
            (
                "proxmox_token_secret",
                s("0b6e6a37-5c1b-4d54-9e3e-6c1d1b0b0c11"),
            ),
            ("home_assistant_enabled", t.clone()),
            ("home_assistant_url", s("http://ha.lan:8123")),
            ("home_assistant_token", s("eyJ.x.y")),
            ("truenas_enabled", t),
            ("truenas_url", s("https://truenas.lan")),
            ("truenas_api_key", s("1-abc")),
            ("adopt_existing", toml::Value::Boolean(true)),
            ("prune_after_days", toml::Value::Integer(3)),
        ],
    );
    let (cfg, sec) = accepted(&v);
    assert_eq!(cfg.sources.network_scan.cidrs, ["192.168.1.0/24"]);
    assert_eq!(cfg.sources.proxmox.token_id, "netbox@pve!agent");
    assert!(cfg.sync.adopt_existing);
    assert_eq!(cfg.sync.prune_after_days, 3);
    assert_eq!(
        sec.proxmox_token_secret.unwrap().expose(),
        "0b6e6a37-5c1b-4d54-9e3e-6c1d1b0b0c11"
    );
    assert_eq!(sec.truenas_api_key.unwrap().expose(), "1-abc");
}
