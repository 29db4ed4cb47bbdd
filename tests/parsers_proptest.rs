//! Every parser of PVE tool output must return (Ok or Err), never panic, on any
//! input: arbitrary strings and structured garbage built from real-format pieces.

use oneld::pve::error::classify;
use oneld::pve::parse::{
    pct_config, pct_list, pct_snapshot, pct_status, pveam, pvesh, pvesm, pveversion, vzdump,
};
use oneld::pve::types::{decode_description, normalize_tags, Features, MountVolume, NetSpec};
use proptest::prelude::*;

/// Tokens that appear in real output, mixed with hostile ones.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("VMID".to_string()),
        Just("Name".to_string()),
        Just("Volid".to_string()),
        Just("NAME".to_string()),
        Just("SIZE".to_string()),
        Just("`->".to_string()),
        Just("running".to_string()),
        Just("N/A".to_string()),
        Just("~".to_string()),
        Just("-".to_string()),
        Just("%".to_string()),
        Just("%0A".to_string()),
        Just("%C3".to_string()),
        Just(":".to_string()),
        Just("=".to_string()),
        Just(",".to_string()),
        Just("/".to_string()),
        Just("é".to_string()),
        Just("MB".to_string()),
        Just("null".to_string()),
        Just("pve-manager/".to_string()),
        Just("INFO: creating vzdump archive '".to_string()),
        Just("2024-05-01 10:00:00".to_string()),
        Just("name=eth0".to_string()),
        Just("ip=".to_string()),
        Just("hwaddr=".to_string()),
        Just("net0:".to_string()),
        Just("status:".to_string()),
        "[0-9]{1,22}",
        "[0-9]{1,3}\\.[0-9]{1,3}",
        "[a-z]{1,8}",
        "[ \t]{1,40}",
        "\\PC{0,6}",
    ]
}

fn garbage() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![token(), Just("\n".to_string()), Just(" ".to_string())],
        0..60,
    )
    .prop_map(|v| v.concat())
}

fn json_garbage() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
        prop_oneof![Just("lxc"), Just("qemu"), Just("network"), Just("running")]
            .prop_map(serde_json::Value::from),
    ];
    let keys = prop_oneof![
        Just("type".to_string()),
        Just("vmid".to_string()),
        Just("name".to_string()),
        Just("status".to_string()),
        Just("ip-addresses".to_string()),
        Just("ip-address".to_string()),
        Just("prefix".to_string()),
        Just("inet".to_string()),
        Just("tags".to_string()),
        Just("mem".to_string()),
        Just("pressurecpusome".to_string()),
        "[a-z-]{1,10}",
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .prop_map(|v| v.to_string())
}

fn all_text_parsers(s: &str) {
    let _ = pct_list::parse_pct_list(s);
    let _ = pct_status::parse_pct_status(s);
    let _ = pct_status::parse_pct_status_raw(s);
    let _ = pct_config::parse_pct_config(s);
    let _ = pct_snapshot::parse_listsnapshot(s);
    let _ = pveam::parse_available(s);
    let _ = pveam::parse_list(s);
    let _ = pveam::parse_mb(s);
    let _ = pvesm::parse_list(s);
    let _ = pvesm::parse_status(s);
    let _ = pveversion::parse_pveversion(s);
    let _ = vzdump::parse_vzdump_log(s);
    let _ = pvesh::parse_nextid(s);
    let _ = pvesh::parse_cluster_resources(s);
    let _ = pvesh::parse_interfaces(s);
    let _ = pvesh::parse_status_current(s);
    let _ = NetSpec::parse(s);
    let _ = Features::parse(s);
    let _ = MountVolume::parse(s);
    let _ = decode_description(s);
    let _ = normalize_tags(s);
    let argv: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    let _ = classify(&argv, Some(255), s, s);
    let _ = classify(&argv, Some(0), s, s);
    let _ = classify(&argv, None, "", s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
        all_text_parsers(&s);
    }

    #[test]
    fn structured_garbage_never_panics(s in garbage()) {
        all_text_parsers(&s);
    }

    #[test]
    fn json_garbage_never_panics(s in json_garbage()) {
        all_text_parsers(&s);
    }

    #[test]
    fn pct_list_rows_roundtrip(
        rows in prop::collection::vec(
            (100u32..999_999_999, prop_oneof![Just("running"), Just("stopped")],
             prop::option::of(prop_oneof![Just("backup"), Just("snapshot-delete"), Just("mounted")]),
             "[a-z][a-z0-9.-]{0,40}"),
            0..8,
        )
    ) {
        let mut text = String::new();
        if !rows.is_empty() {
            text.push_str(&format!("{:<10} {:<10} {:<12} {:<20}\n", "VMID", "Status", "Lock", "Name"));
        }
        for (vmid, status, lock, name) in &rows {
            text.push_str(&format!("{:<10} {:<10} {:<12} {:<20}\n", vmid, status, lock.unwrap_or(""), name));
        }
        let parsed = pct_list::parse_pct_list(&text).unwrap();
        prop_assert_eq!(parsed.len(), rows.len());
        for (p, (vmid, _, lock, name)) in parsed.iter().zip(&rows) {
            prop_assert_eq!(p.vmid, *vmid);
            prop_assert_eq!(p.lock.as_deref(), *lock);
            prop_assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn description_decoding_roundtrips(s in "\\PC{0,80}") {
        // PVE's escaping: keep 0x20-0x24, 0x26-0x39, 0x3b-0x7e; escape all else.
        let escaped: String = s.bytes().map(|b| match b {
            0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        }).collect();
        prop_assert_eq!(decode_description(&escaped), s);
    }

    #[test]
    fn netspec_render_parse_roundtrip(
        name in "eth[0-9]", bridge in "vmbr[0-9]", tag in prop::option::of(1u16..4095),
        mtu in prop::option::of(576u16..9000), fw in prop::option::of(any::<bool>()),
        ip in prop::option::of((any::<[u8; 4]>(), 0u8..=32)),
    ) {
        let n = NetSpec {
            tag, mtu, firewall: fw,
            ip: ip.map(|(a, p)| oneld::pve::types::Ipv4Config::Static(
                oneld::pve::types::Ipv4Cidr { addr: a.into(), prefix: p })),
            ..NetSpec::new(name, bridge)
        };
        prop_assert_eq!(NetSpec::parse(&n.to_property_string()).unwrap(), n);
    }
}
