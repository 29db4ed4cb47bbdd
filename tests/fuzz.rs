//! Bounded fuzzing of every text 1ld parses from outside (issue 11, "Bad
//! input"): the Proxmox tools' output, app manifests, the daemon's config,
//! spec files, calendar expressions, API request bodies (serde + the
//! deployment validation behind them) and, through the whole router
//! in-process, HTTP requests with hostile paths, queries and bodies.
//!
//! The property is always the same: no panic, and a rejection is a typed
//! error (for HTTP: a non-5xx status with the `{"error":{code,message}}`
//! body). Inputs are arbitrary bytes plus structure-aware mutations of real
//! samples (`tests/fixtures/pve`, the built-in manifests, `packaging/1ld.toml`).
//!
//! Cases per target: `PROPTEST_CASES` (default 64 here, so the fast tier
//! stays quick); `make fuzz` runs with thousands. cargo-fuzz is not used:
//! it needs a nightly toolchain and this project pins stable.

use std::collections::{BTreeMap, BTreeSet};

#[path = "daemon/mod.rs"]
#[allow(unused_imports, unreachable_pub)]
mod daemon;

use oneld::api::{
    AdoptRequest, ApplyRequest, BackupPolicy, BackupRequest, DeployRequest, NotifyTestRequest,
    RestoreRequest, SecretValue, SuperviseOverrides, TemplateRequest, UpgradeRequest,
};
use oneld::apps::{manifest, render, settings, Catalog};
use oneld::pve::error::classify;
use oneld::pve::parse::{
    pct_config, pct_list, pct_snapshot, pct_status, pveam, pvesh, pvesm, pveversion, vzdump,
};
use oneld::pve::types::{decode_description, normalize_tags, Features, MountVolume, NetSpec};
use oneld::schedule::CalendarEvent;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::{json, Value};

// ---- harness ---------------------------------------------------------------

/// Cases per target: `PROPTEST_CASES`, else a small default.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Runs `test` on `cases()` values of `strategy`; prints the count (for
/// `make fuzz`), fails with the minimal input on a panic or a violation.
fn fuzz<S: Strategy>(target: &str, strategy: S, scale: u32, test: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let n = (cases() / scale).max(8);
    let mut runner = TestRunner::new(PtConfig {
        cases: n,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let result = runner.run(&strategy, |v| {
        test(v);
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzz target {target}: {e}");
    }
    println!("fuzz {target}: {n} cases, 0 panics");
}

/// Every fixture of `tests/fixtures/pve`, by name.
const FIXTURES: &[(&str, &str)] = &{
    macro_rules! f {
        ($($n:literal),* $(,)?) => {
            [$(($n, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pve/", $n)))),*]
        };
    }
    f!(
        "pct-config-escaped.txt",
        "pct-config.txt",
        "pct-list-empty.txt",
        "pct-list-long.txt",
        "pct-list.txt",
        "pct-listsnapshot-tree.txt",
        "pct-listsnapshot.txt",
        "pct-status-verbose-pve8.txt",
        "pct-status-verbose-pve9-running.txt",
        "pct-status.txt",
        "pveam-available-pve8.txt",
        "pveam-available-pve9.txt",
        "pveam-list.txt",
        "pvesh-interfaces-pve8-old.json",
        "pvesh-interfaces-pve9.json",
        "pvesh-interfaces-stopped.json",
        "pvesh-nextid-number.json",
        "pvesh-nextid-string.json",
        "pvesh-resources-vm.json",
        "pvesh-status-current-pve9.json",
        "pvesm-list-empty.txt",
        "pvesm-list-pve9.txt",
        "pvesm-list.txt",
        "pvesm-status-pve8.txt",
        "pvesm-status-pve9.txt",
        "pveversion-pve8.txt",
        "pveversion-pve9-beta.txt",
        "pveversion-pve9.txt",
        "vzdump-locked.txt",
        "vzdump-other-node.txt",
        "vzdump-snapshot-fallback.txt",
        "vzdump-success.txt",
    )
};

const MANIFESTS: &[&str] = &[
    include_str!("../src/apps/builtin/netbox-agent.toml"),
    include_str!("../src/apps/builtin/wikijs-integration.toml"),
];

const CONFIG: &str = include_str!("../packaging/1ld.toml");

/// Pieces that break parsers: separators, huge numbers, encodings, control
/// and confusable characters, shell metacharacters.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\0".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just("\t".to_string()),
        Just(" ".to_string()),
        Just(":".to_string()),
        Just("=".to_string()),
        Just(",".to_string()),
        Just(";".to_string()),
        Just("%".to_string()),
        Just("%ZZ".to_string()),
        Just("%C3".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("|".to_string()),
        Just("..".to_string()),
        Just("../".to_string()),
        Just("$(id)".to_string()),
        Just("`id`".to_string()),
        Just("-".to_string()),
        Just("--".to_string()),
        Just("~".to_string()),
        Just("*".to_string()),
        Just("/".to_string()),
        Just("N/A".to_string()),
        Just("null".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("4294967296".to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("1e400".to_string()),
        Just("NaN".to_string()),
        Just("é".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{200b}".to_string()),
        Just("\u{feff}".to_string()),
        Just("\u{0430}".to_string()), // Cyrillic a
        Just("ﬁ".to_string()),
        Just("𝕟".to_string()),
        "[0-9]{1,25}",
        "[a-z]{1,12}",
        "\\PC{0,8}",
    ]
}

/// Random bytes as the runner hands them to parsers (lossy UTF-8).
fn bytes_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..max)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A mutation of `text`, line or byte level.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertAt(usize, String),
    ReplaceToken(usize, String),
    DeleteRange(usize, usize),
    Truncate(usize),
    FlipByte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), hostile()).prop_map(|(a, s)| Mutation::InsertAt(a, s)),
        (any::<usize>(), hostile()).prop_map(|(a, s)| Mutation::ReplaceToken(a, s)),
        (any::<usize>(), 0usize..64).prop_map(|(a, n)| Mutation::DeleteRange(a, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::FlipByte(a, b)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in muts {
        let len = bytes.len().max(1);
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        let nl = lines.len().max(1);
        match m {
            Mutation::DeleteLine(i) => {
                if !lines.is_empty() {
                    lines.remove(i % nl);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::DuplicateLine(i) => {
                if !lines.is_empty() {
                    let l = lines[i % nl].clone();
                    lines.insert(i % nl, l);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::SwapLines(a, b) => {
                if !lines.is_empty() {
                    lines.swap(a % nl, b % nl);
                }
                bytes = lines.join(&b'\n');
            }
            Mutation::InsertAt(at, s) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
            Mutation::ReplaceToken(at, s) => {
                // The whitespace-delimited token around `at`.
                let at = at % len;
                if at < bytes.len() {
                    let ws = |b: &u8| b.is_ascii_whitespace();
                    let start = bytes[..at].iter().rposition(ws).map_or(0, |p| p + 1);
                    let end = bytes[at..]
                        .iter()
                        .position(ws)
                        .map_or(bytes.len(), |p| at + p);
                    bytes.splice(start..end, s.bytes());
                }
            }
            Mutation::DeleteRange(at, n) => {
                let at = at % (bytes.len() + 1);
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::FlipByte(at, b) => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] = *b;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `samples` mutated 1..=`max` times.
fn mutated(samples: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    (0..samples.len(), prop::collection::vec(mutation(), 1..=max))
        .prop_map(move |(i, m)| apply(samples[i], &m))
}

fn fixture_texts() -> &'static [&'static str] {
    static TEXTS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| FIXTURES.iter().map(|(_, t)| *t).collect())
}

// ---- PVE tool output -------------------------------------------------------

fn all_pve_parsers(s: &str) {
    let _ = pct_list::parse_pct_list(s);
    let _ = pct_status::parse_pct_status(s);
    let _ = pct_status::parse_pct_status_raw(s);
    let _ = pct_status::key_values("fuzz", s);
    let _ = pct_config::parse_pct_config(s);
    let _ = pct_snapshot::parse_listsnapshot(s);
    if let Ok(list) = pveam::parse_available(s) {
        let _ = pveam::newest_debian_standard(&list, 12, "amd64");
    }
    let _ = pveam::parse_list(s);
    let _ = pveam::parse_mb(s);
    let _ = pvesm::parse_list(s);
    let _ = pvesm::parse_status(s);
    let _ = pveversion::parse_pveversion(s);
    let _ = vzdump::parse_vzdump_log(s);
    let _ = pvesh::parse_nextid(s);
    let _ = pvesh::parse_cluster_resources(s);
    let _ = pvesh::parse_cluster_vmids(s);
    let _ = pvesh::parse_interfaces(s);
    let _ = pvesh::parse_status_current(s);
    for line in s.lines().take(8) {
        let _ = NetSpec::parse(line);
        let _ = Features::parse(line);
        let _ = MountVolume::parse(line);
        let _ = decode_description(line);
        let _ = normalize_tags(line);
    }
    let argv: Vec<String> = s.split_whitespace().take(6).map(str::to_string).collect();
    let _ = classify(&argv, Some(255), s, s);
    let _ = classify(&argv, Some(0), s, "");
    let _ = classify(&argv, None, "", s);
}

#[test]
fn pve_parsers_on_arbitrary_bytes() {
    fuzz("pve parsers / arbitrary bytes", bytes_text(600), 1, |s| {
        all_pve_parsers(&s)
    });
}

#[test]
fn pve_parsers_on_mutated_real_output() {
    fuzz(
        "pve parsers / mutated fixtures",
        mutated(fixture_texts(), 6),
        1,
        |s| all_pve_parsers(&s),
    );
}

/// The fixtures still parse (so the mutations start from accepted input).
#[test]
fn pve_fixtures_parse() {
    for (name, text) in FIXTURES {
        let p = |prefix: &str| name.starts_with(prefix);
        let ok = if p("pct-config") {
            pct_config::parse_pct_config(text).is_ok()
        } else if p("pct-listsnapshot") {
            pct_snapshot::parse_listsnapshot(text).is_ok()
        } else if p("pct-list") {
            pct_list::parse_pct_list(text).is_ok()
        } else if p("pct-status-verbose") {
            pct_status::parse_pct_status_raw(text).is_ok()
        } else if p("pct-status") {
            pct_status::parse_pct_status(text).is_ok()
        } else if p("pveam-available") {
            pveam::parse_available(text).is_ok()
        } else if p("pveam-list") {
            pveam::parse_list(text).is_ok()
        } else if p("pvesm-list") {
            pvesm::parse_list(text).is_ok()
        } else if p("pvesm-status") {
            pvesm::parse_status(text).is_ok()
        } else if p("pveversion") {
            pveversion::parse_pveversion(text).is_ok()
        } else if p("pvesh-nextid") {
            pvesh::parse_nextid(text).is_ok()
        } else if p("pvesh-resources") {
            pvesh::parse_cluster_resources(text).is_ok()
        } else if p("pvesh-interfaces") {
            pvesh::parse_interfaces(text).is_ok()
        } else if p("pvesh-status") {
            pvesh::parse_status_current(text).is_ok()
        } else {
            // vzdump logs are read leniently (no Result).
            let _ = vzdump::parse_vzdump_log(text);
            true
        };
        assert!(ok, "fixture {name} no longer parses");
    }
}

// ---- manifests, templates, config, spec files ------------------------------

fn manifest_and_templates(s: &str) {
    if let Ok(m) = manifest::parse(s) {
        let _ = m.tags();
        let _ = m.probe_text();
        let _ = m.proxy_upstream();
    }
    if let Ok(t) = render::Template::parse(s) {
        let vars: BTreeMap<String, settings::Setting> = t
            .vars()
            .into_iter()
            .map(|v| {
                (
                    v.to_string(),
                    settings::Setting::Text(s.chars().take(40).collect()),
                )
            })
            .collect();
        let _ = t.render(&vars);
    }
    let _ = render::toml_string(s);
    let _ = settings::parse_duration(s);
    let _ = settings::check_url(s);
    let _ = manifest::parse_mode(s);
    let _ = manifest::is_safe_abs_path(s);
    let _ = manifest::line_of(s, "name");
}

#[test]
fn manifests_on_arbitrary_text() {
    fuzz("manifest / arbitrary bytes", bytes_text(400), 1, |s| {
        manifest_and_templates(&s)
    });
}

#[test]
fn manifests_mutated_builtins() {
    fuzz(
        "manifest / mutated built-ins",
        mutated(MANIFESTS, 6),
        1,
        |s| {
            manifest_and_templates(&s);
            // A manifest that parses still satisfies what the catalog needs.
            if let Ok(m) = manifest::parse(&s) {
                assert!(
                    manifest::is_dns_label(&m.name),
                    "accepted name {:?}",
                    m.name
                );
            }
        },
    );
}

#[test]
fn builtin_manifests_parse() {
    for m in MANIFESTS {
        manifest::parse(m).expect("a built-in manifest parses");
    }
}

#[test]
fn daemon_config_mutated() {
    const SAMPLES: &[&str] = &[CONFIG];
    let path = std::path::Path::new("/etc/1ld/1ld.toml");
    oneld::config::Config::parse(CONFIG, path).expect("packaging/1ld.toml parses");
    fuzz("config / mutated 1ld.toml", mutated(SAMPLES, 4), 1, |s| {
        if let Err(e) = oneld::config::Config::parse(&s, path) {
            assert!(!e.to_string().is_empty());
        }
    });
    fuzz("config / arbitrary bytes", bytes_text(300), 2, |s| {
        let _ = oneld::config::Config::parse(&s, path);
    });
}

#[test]
fn spec_files_mutated() {
    const SAMPLES: &[&str] = &[
        "name = \"netbox\"\napp = \"netbox-agent\"\n[settings]\nnetbox_url = \"http://n:8000\"\n\
         [secrets]\nnetbox_token = \"literal\"\n[overrides]\nmemory = 1024\n",
        "[[deployment]]\nname = \"a\"\napp = \"netbox-agent\"\n[deployment.settings]\nx = 1\n\
         [[deployment]]\napp = \"wikijs-integration\"\n[deployment.secrets]\nk = \"@nofile\"\n",
    ];
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("spec.toml");
    fuzz("spec file / mutated", mutated(SAMPLES, 5), 1, |s| {
        std::fs::write(&path, s).expect("write spec");
        if let Ok(specs) = oneld::client::spec::load(&path) {
            for sp in &specs {
                let _ = oneld::client::spec::settings_json(sp);
            }
        }
    });
}

// ---- calendar expressions --------------------------------------------------

fn calendar_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("mon"),
            Just("tue..fri"),
            Just("sat,sun"),
            Just("daily"),
            Just("weekly"),
            Just("monthly"),
            Just("hourly"),
            Just("minutely"),
            Just("yearly"),
            Just("UTC"),
            Just(".."),
            Just(","),
            Just("-"),
            Just(":"),
            Just("/"),
            Just("*"),
            Just("~"),
            Just(" "),
            Just("0"),
            Just("02"),
            Just("2:30"),
            Just("*-*-01"),
            Just("2024-02-29"),
            Just("/15"),
            Just("31"),
            Just("60"),
            Just("2199"),
            Just("2200"),
            Just("18446744073709551616"),
            Just("\0"),
            Just("é"),
        ],
        0..14,
    )
    .prop_map(|p| p.concat())
}

fn calendar(s: &str) {
    match CalendarEvent::parse(s) {
        Ok(ev) => {
            // Canonical: its rendering parses back to itself.
            let shown = ev.to_string();
            let again = CalendarEvent::parse(&shown)
                .unwrap_or_else(|e| panic!("{s:?} renders as {shown:?}, which fails: {e}"));
            assert_eq!(again, ev, "{s:?} -> {shown:?}");
            for tz in ["UTC", "Europe/Berlin", "America/New_York"] {
                let base: jiff::Zoned =
                    format!("2024-03-10T01:59:59[{tz}]").parse().expect("zoned");
                if let Some(next) = ev.next_after(&base) {
                    assert!(next > base, "{s:?}: {next} not after {base}");
                }
            }
        }
        Err(e) => {
            assert!(
                e.position <= s.len(),
                "{s:?}: position {} past the end",
                e.position
            );
            let _ = e.caret_line();
            let _ = e.to_string();
        }
    }
}

#[test]
fn calendar_expressions() {
    fuzz("calendar / token soup", calendar_soup(), 1, |s| {
        calendar(&s)
    });
    fuzz("calendar / arbitrary bytes", bytes_text(60), 1, |s| {
        calendar(&s)
    });
}

// ---- API request bodies: serde + deployment validation ---------------------

/// A JSON leaf that breaks validators.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            Just(0.5f64),
            Just(-0.0),
            Just(1e300),
            Just(f64::MIN_POSITIVE)
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(99),
            Just(100),
            Just(65535),
            Just(u32::MAX)
        ]
        .prop_map(Value::from),
        hostile().prop_map(Value::from),
        prop_oneof![
            Just("netbox-agent"),
            Just("wikijs-integration"),
            Just("http://netbox.lan:8000"),
            Just("dhcp"),
            Just("10.0.0.5/24"),
            Just("auto"),
            Just("vmbr1ldt"),
            Just("ctdata"),
            Just("local"),
            Just("snapshot"),
            Just("daily"),
            Just("new"),
            Just("in_place"),
            Just("5m"),
        ]
        .prop_map(Value::from),
        Just(Value::from("x".repeat(10_000))),
    ]
}

/// A JSON value of any shape, with keys that requests use.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "app",
            "name",
            "settings",
            "secrets",
            "overrides",
            "backup",
            "dry_run",
            "keep_on_failure",
            "cores",
            "memory",
            "swap",
            "disk",
            "vmid",
            "storage",
            "bridge",
            "ip",
            "gw",
            "ip6",
            "onboot",
            "proxy",
            "supervise",
            "interval_secs",
            "timeout_secs",
            "jitter_secs",
            "healthy_after",
            "unhealthy_after",
            "mode",
            "keep_last",
            "keep_daily",
            "protected",
            "schedule",
            "verify_schedule",
            "policy",
            "to_version",
            "force",
            "target",
            "value",
            "template",
            "netbox_url",
            "netbox_token",
            "interval",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
    ]
}

/// A path into a JSON object and a value to put there (or remove it).
fn edits() -> impl Strategy<Value = Vec<(Vec<String>, Option<Value>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(key(), 1..3),
            prop::option::weighted(0.85, json_value()),
        ),
        1..5,
    )
}

/// A hostile string for a text field (names, URLs, storages, addresses).
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(hostile(), 0..4).prop_map(|v| v.concat()),
        1 => prop::sample::select(vec![
            "nb", "nb-2", "a", "netbox-agent", "wikijs-integration", "http://netbox.lan:8000",
            "https://[::1]:8443/x", "http://10.0.0.1", "dhcp", "auto", "none", "static",
            "10.0.0.5/24", "10.0.0.300/24", "10.0.0.1", "fd00::5/64", "vmbr1ldt", "vmbr0",
            "ctdata", "local", "5m", "1h", "0s", "soon", "daily", "mon..fri 02:30",
            "*-*-31 25:00", "snapshot", "stop", "suspend",
        ])
        .prop_map(str::to_string),
        1 => "[a-z0-9-]{1,70}",
    ]
}

/// A number for a numeric field, around every boundary.
fn number_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            0i64,
            1,
            2,
            15,
            16,
            99,
            100,
            101,
            140,
            141,
            142,
            200,
            512,
            513,
            3600,
            3601,
            65535,
            4194304,
            4194305,
            999_999_999,
            1_000_000_000,
            4_294_967_295,
            4_294_967_296,
            -1,
        ])
        .prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
    ]
}

/// Structure-aware edits of a deploy request: a known field (sometimes an
/// unknown one) set to a hostile value of its type (sometimes of another).
fn deploy_edits() -> impl Strategy<Value = Vec<(Vec<String>, Option<Value>)>> {
    const TEXT: &[&str] = &[
        "app",
        "name",
        "settings.netbox_url",
        "settings.interval",
        "settings.netbox_timeout",
        "secrets.netbox_token",
        "overrides.storage",
        "overrides.bridge",
        "overrides.ip",
        "overrides.gw",
        "overrides.ip6",
        "backup.storage",
        "backup.mode",
        "backup.schedule",
        "backup.verify_schedule",
    ];
    const NUM: &[&str] = &[
        "overrides.cores",
        "overrides.memory",
        "overrides.swap",
        "overrides.disk",
        "overrides.vmid",
        "overrides.supervise.interval_secs",
        "overrides.supervise.timeout_secs",
        "overrides.supervise.jitter_secs",
        "overrides.supervise.healthy_after",
        "overrides.supervise.unhealthy_after",
        "backup.keep_last",
        "backup.keep_daily",
        "backup.keep_weekly",
        "backup.keep_monthly",
        "backup.keep_yearly",
        "backup.keep_hourly",
    ];
    const BOOL: &[&str] = &[
        "overrides.onboot",
        "overrides.proxy",
        "backup.protected",
        "keep_on_failure",
    ];
    let split = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
    let one = prop_oneof![
        4 => (prop::sample::select(TEXT), text_value())
            .prop_map(move |(p, v)| (split(p), Some(Value::from(v)))),
        3 => (prop::sample::select(NUM), number_value()).prop_map(move |(p, v)| (split(p), Some(v))),
        1 => (prop::sample::select(BOOL), any::<bool>())
            .prop_map(move |(p, v)| (split(p), Some(Value::from(v)))),
        1 => prop::sample::select([TEXT, NUM, BOOL].concat())
            .prop_map(move |p| (split(p), None)),
        1 => (prop::sample::select([TEXT, NUM, BOOL].concat()), json_value())
            .prop_map(move |(p, v)| (split(p), Some(v))),
        1 => (prop::collection::vec(key(), 1..3), json_value()).prop_map(|(p, v)| (p, Some(v))),
    ];
    prop::collection::vec(one, 1..4)
}

fn edit(base: &Value, edits: &[(Vec<String>, Option<Value>)]) -> Value {
    let mut v = base.clone();
    for (path, val) in edits {
        let mut cur = &mut v;
        for (i, k) in path.iter().enumerate() {
            if !cur.is_object() {
                *cur = json!({});
            }
            let obj = cur.as_object_mut().expect("object");
            if i + 1 == path.len() {
                match val {
                    Some(x) => {
                        obj.insert(k.clone(), x.clone());
                    }
                    None => {
                        obj.remove(k);
                    }
                }
                break;
            }
            cur = obj.entry(k.clone()).or_insert_with(|| json!({}));
        }
    }
    v
}

fn valid_deploy() -> Value {
    json!({
        "app": "netbox-agent",
        "name": "nb",
        "settings": {"netbox_url": "http://netbox.lan:8000"},
        "secrets": {"netbox_token": "tok"},
        "overrides": {"bridge": "vmbr1ldt", "supervise": {"interval_secs": 30}},
        "backup": {"storage": "local", "keep_last": 3, "schedule": "daily"},
        "dry_run": true,
    })
}

/// Host facts of a small node: storages `ctdata` (rootdir) and `local`
/// (vztmpl), bridge `vmbr1ldt`, a few guests and a recorded deployment.
fn facts() -> oneld::deploy::facts::HostFacts {
    let st = |text: &str| {
        pvesm::parse_status(&format!(
            "Name Type Status Total Used Available %\n{text}\n"
        ))
        .expect("pvesm status")
    };
    oneld::deploy::facts::HostFacts {
        node: "pve".into(),
        rootdir_storages: st("ctdata dir active 100000000 1000 99999000 0.00%"),
        vztmpl_storages: st("local dir active 100000000 1000 99999000 0.00%"),
        templates: vec!["local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst".into()],
        available: vec!["debian-12-standard_12.12-1_amd64.tar.zst".into()],
        bridges: vec!["vmbr1ldt".into()],
        guests: BTreeSet::from([100, 140, 141]),
        held: BTreeSet::from([142]),
        names: BTreeSet::from(["taken".to_string()]),
    }
}

/// How many fuzzed deploy bodies reached `spec::build`, and how many it
/// accepted (a target that never reaches the code proves nothing).
static BUILT: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
];

fn deploy_validation(
    body: &Value,
    catalog: &Catalog,
    facts: &oneld::deploy::facts::HostFacts,
    cfg: &oneld::config::AppsConfig,
) {
    let text = body.to_string();
    let Ok(req) = serde_json::from_str::<DeployRequest>(&text) else {
        return;
    };
    let Some(app) = catalog.get(&req.app) else {
        return;
    };
    BUILT[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match oneld::deploy::spec::build(app, &req, facts, cfg) {
        Ok(spec) => {
            BUILT[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = spec.plan(9);
            let _ = spec.create_spec(spec.vmid_hint, "op-1");
            // A secret never reaches the plan: the same request with each
            // secret replaced by a unique marker shows no marker (a fuzzed
            // secret may equal public text, e.g. the app's name).
            let mut marked = req.clone();
            for (i, v) in marked.secrets.values_mut().enumerate() {
                *v = format!("S3CRET-MARKER-{i}-q7");
            }
            if let Ok(spec) = oneld::deploy::spec::build(app, &marked, facts, cfg) {
                let shown = serde_json::to_string(&spec.plan(9)).expect("plan json");
                let created = format!("{:?}", spec.create_spec(spec.vmid_hint, "op-1"));
                assert!(
                    !shown.contains("S3CRET-MARKER") && !created.contains("S3CRET-MARKER"),
                    "a secret in the plan or the pct create spec: {shown}"
                );
            }
        }
        Err(errs) => {
            assert!(!errs.is_empty());
            for e in errs {
                assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
            }
        }
    }
}

#[test]
fn request_bodies_of_every_type() {
    fn all(text: &str) {
        let _ = serde_json::from_str::<DeployRequest>(text);
        let _ = serde_json::from_str::<ApplyRequest>(text);
        let _ = serde_json::from_str::<AdoptRequest>(text);
        let _ = serde_json::from_str::<BackupRequest>(text);
        let _ = serde_json::from_str::<BackupPolicy>(text);
        let _ = serde_json::from_str::<RestoreRequest>(text);
        let _ = serde_json::from_str::<UpgradeRequest>(text);
        let _ = serde_json::from_str::<NotifyTestRequest>(text);
        let _ = serde_json::from_str::<SecretValue>(text);
        let _ = serde_json::from_str::<TemplateRequest>(text);
        if let Ok(s) = serde_json::from_str::<SuperviseOverrides>(text) {
            let _ = s.problems("overrides.supervise");
        }
        if let Ok(b) = serde_json::from_str::<BackupPolicy>(text) {
            let _ = b.problems("backup");
            let _ = b.or(&BackupPolicy::default()).keeps();
        }
    }
    fuzz(
        "request bodies / arbitrary bytes",
        bytes_text(300),
        1,
        |s| all(&s),
    );
    fuzz("request bodies / JSON shapes", json_value(), 1, |v| {
        all(&v.to_string())
    });
}

#[test]
fn deploy_requests_validate_without_panic() {
    let catalog = Catalog::builtin();
    let facts = facts();
    // The agents the built-in apps push (content irrelevant here).
    let agents = tempfile::tempdir().expect("tmp");
    for a in ["netbox-agent", "wikijs-integration"] {
        std::fs::write(agents.path().join(a), b"#!/bin/false\n").expect("agent");
    }
    let cfg = oneld::config::AppsConfig {
        storage: "ctdata".into(),
        agents_dir: agents.path().to_path_buf(),
        ..oneld::config::AppsConfig::default()
    };
    // The base request is valid: mutations start from accepted input.
    let req: DeployRequest = serde_json::from_value(valid_deploy()).expect("valid");
    let app = catalog.get("netbox-agent").expect("built-in");
    if let Err(e) = oneld::deploy::spec::build(app, &req, &facts, &cfg) {
        panic!("the base request is refused: {e:?}");
    }
    let base = valid_deploy();
    fuzz(
        "deploy request / mutated valid body",
        deploy_edits(),
        1,
        |e| deploy_validation(&edit(&base, &e), &catalog, &facts, &cfg),
    );
    let (reached, accepted) = (
        BUILT[0].load(std::sync::atomic::Ordering::Relaxed),
        BUILT[1].load(std::sync::atomic::Ordering::Relaxed),
    );
    println!("fuzz deploy request: {reached} reached validation, {accepted} accepted");
    let n = cases().max(8) as usize;
    assert!(
        reached * 4 >= n && accepted > 0,
        "only {reached} of {n} mutated bodies reached spec::build, {accepted} accepted"
    );
}

// ---- HTTP requests through the whole router, in-process --------------------

/// Route templates and a valid body for each (the fuzzer edits it).
const ROUTES: &[(&str, &str)] = &[
    ("/", ""),
    ("/metrics", ""),
    ("/v1/host", ""),
    ("/v1/apps", ""),
    ("/v1/apps/{}", ""),
    ("/v1/operations", ""),
    ("/v1/operations/{}", ""),
    ("/v1/operations/{}/log", ""),
    ("/v1/operations/{}/wait", ""),
    (
        "/v1/templates",
        r#"{"storage":"local","template":"tiny-1ldt_1.0-1_amd64.tar.zst"}"#,
    ),
    (
        "/v1/deployments",
        r#"{"app":"netbox-agent","dry_run":true,"settings":{"netbox_url":"http://n"},"secrets":{"netbox_token":"t"},"overrides":{"disk":1}}"#,
    ),
    ("/v1/deployments/unmanaged", ""),
    (
        "/v1/deployments/adopt",
        r#"{"vmid":150,"app":"netbox-agent","name":"nb"}"#,
    ),
    (
        "/v1/deployments/{}",
        r#"{"app":"netbox-agent","dry_run":true}"#,
    ),
    ("/v1/deployments/{}/start", ""),
    ("/v1/deployments/{}/stop", ""),
    ("/v1/deployments/{}/restart", ""),
    ("/v1/deployments/{}/health", ""),
    (
        "/v1/deployments/{}/backups",
        r#"{"policy":{"storage":"local"}}"#,
    ),
    ("/v1/deployments/{}/upgrade", r#"{"dry_run":true}"#),
    ("/v1/backups", ""),
    ("/v1/backups/{}/restore", r#"{"mode":"new","name":"r"}"#),
    ("/v1/backups/{}/verify", ""),
    ("/v1/events", ""),
    ("/v1/notifications", ""),
    ("/v1/notifications/test", r#"{"target":"t"}"#),
    ("/v1/notifications/targets/{}/secret", r#"{"value":"s"}"#),
    ("/v1/openapi.json", ""),
    ("/v1/nope/{}", ""),
];

/// One fuzzed HTTP request.
#[derive(Debug, Clone)]
struct HttpCase {
    method: &'static str,
    route: usize,
    segment: String,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    json_type: bool,
    admin: bool,
}

fn http_case() -> impl Strategy<Value = HttpCase> {
    let query_key = prop_oneof![
        prop::sample::select(vec![
            "limit",
            "status",
            "kind",
            "target",
            "offset",
            "timeout",
            "after",
            "type",
            "follow",
            "purge",
            "lines",
            "since",
            "deployment",
            "before",
        ])
        .prop_map(str::to_string),
        hostile(),
    ];
    let body = prop_oneof![
        2 => edits().prop_map(Some),
        1 => Just(None),
    ];
    let any_method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
    ]);
    (
        prop::option::weighted(0.3, any_method),
        0..ROUTES.len(),
        text_value(),
        prop::collection::vec((query_key, text_value()), 0..3),
        body,
        prop::option::weighted(0.2, bytes_text(200)),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(method, route, segment, query, edits, raw, json_type, admin)| {
                // Mostly the route's own method, so requests reach handlers.
                let method = method.unwrap_or(if ROUTES[route].1.is_empty() {
                    "GET"
                } else if ROUTES[route].0 == "/v1/deployments/{}"
                    || ROUTES[route].0.ends_with("/secret")
                {
                    "PUT"
                } else {
                    "POST"
                });
                let body = match (raw, edits) {
                    (Some(r), _) => Some(r.into_bytes()),
                    (None, Some(e)) => {
                        let base: Value =
                            serde_json::from_str(ROUTES[route].1).unwrap_or_else(|_| json!({}));
                        Some(edit(&base, &e).to_string().into_bytes())
                    }
                    (None, None) if !ROUTES[route].1.is_empty() => {
                        Some(ROUTES[route].1.as_bytes().to_vec())
                    }
                    (None, None) => None,
                };
                HttpCase {
                    method,
                    route,
                    segment,
                    query,
                    body,
                    json_type,
                    admin,
                }
            },
        )
}

/// `s` percent-encoded for a path segment or query value.
fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every request gets an answer that is not a 500, and every refusal
/// carries the error body; the daemon's state stays usable.
#[test]
fn http_requests_through_the_router() {
    use tower::ServiceExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let tools = daemon::SandboxTools::new(dir.path());
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).expect("agents");
    for a in ["netbox-agent", "wikijs-integration"] {
        std::fs::write(agents.join(a), b"#!/bin/false\n").expect("agent");
    }
    let mut cfg = oneld::config::Config {
        state_dir: dir.path().join("state"),
        ..oneld::config::Config::default()
    };
    cfg.pve.bin_dir = Some(tools.bin_dir.clone());
    cfg.pve.node = Some("pve".into());
    cfg.apps.agents_dir = agents;
    cfg.apps.storage = "ctdata".into();
    cfg.apps.dir = dir.path().join("apps.d");
    let app = rt.block_on(async {
        let (state, _ops) = daemon::build_state(cfg).await.expect("state");
        oneld::server::router(state)
    });
    let statuses = std::sync::Mutex::new(BTreeMap::<u16, usize>::new());
    fuzz("http / router", http_case(), 1, |case| {
        let mut uri = ROUTES[case.route]
            .0
            .replace("{}", &pct_encode(&case.segment));
        if !case.query.is_empty() {
            uri.push('?');
            let q: Vec<String> = case
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
                .collect();
            uri.push_str(&q.join("&"));
        }
        let mut req = axum::http::Request::builder().method(case.method).uri(&uri);
        if case.json_type && case.body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let peer = oneld::server::Peer {
            uid: if case.admin { 0 } else { 65534 },
            gid: if case.admin { 0 } else { 65534 },
            pid: 1,
        };
        let mut req = req
            .body(axum::body::Body::from(
                case.body.clone().unwrap_or_default(),
            ))
            .expect("request");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(oneld::server::PeerInfo(Some(
                peer,
            ))));
        let streaming = uri.starts_with("/v1/events") || uri.contains("/logs");
        let (status, body) = rt.block_on(async {
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(30), app.clone().oneshot(req))
                    .await
                    .unwrap_or_else(|_| panic!("no answer to {} {uri} within 30 s", case.method))
                    .expect("infallible");
            let status = resp.status();
            let body = if streaming && status.is_success() {
                Vec::new()
            } else {
                use http_body_util::BodyExt;
                tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    resp.into_body().collect(),
                )
                .await
                .unwrap_or_else(|_| panic!("body of {} {uri} not complete", case.method))
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default()
            };
            (status, body)
        });
        *statuses
            .lock()
            .expect("statuses")
            .entry(status.as_u16())
            .or_default() += 1;
        assert!(
            status != 500 && status.as_u16() < 600,
            "{} {uri} ({:?}): {status} {}",
            case.method,
            case.body.as_deref().map(String::from_utf8_lossy),
            String::from_utf8_lossy(&body)
        );
        if !status.is_success() && case.method != "HEAD" {
            let e: oneld::api::ApiErrorBody = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "{} {uri}: {status} without the error body ({e}): {}",
                    case.method,
                    String::from_utf8_lossy(&body)
                )
            });
            assert!(!e.error.code.is_empty() && !e.error.message.is_empty());
        }
    });
    let statuses = statuses.into_inner().expect("statuses");
    println!("fuzz http / router: statuses {statuses:?}");
    // Not vacuous: requests got past the router and the role layer to
    // the handlers.
    assert!(
        statuses.keys().any(|s| ![403, 404, 405].contains(s)),
        "{statuses:?}"
    );
}
