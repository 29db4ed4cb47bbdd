//! Drift: differences between a container's configuration and the spec
//! its deployment recorded.
//!
//! Invariant: [`compare`] is pure; it reports cores, memory, swap, onboot,
//! tags (as sets, normalised) and `net0` (bridge and addresses), each as
//! one [`Drift`] naming the field, the recorded and the actual value.

use crate::api::Drift;
use crate::pve::parse::pct_config::CtConfig;
use crate::store::StoredSpec;

/// The drift entry for a container that is gone.
pub fn gone() -> Drift {
    Drift {
        field: "container".into(),
        expected: "present".into(),
        actual: "missing".into(),
    }
}

fn d(field: &str, expected: impl ToString, actual: impl ToString) -> Drift {
    Drift {
        field: field.into(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

/// Compares `cfg` with `spec`.
pub fn compare(spec: &StoredSpec, cfg: &CtConfig) -> Vec<Drift> {
    let r = &spec.resources;
    let mut out = Vec::new();
    let opt = |v: Option<u64>| v.map_or("unset".to_string(), |v| v.to_string());
    if cfg.cores != Some(r.cores) {
        out.push(d(
            "cores",
            r.cores,
            cfg.cores.map_or("unset".into(), |c| c.to_string()),
        ));
    }
    if cfg.memory != Some(u64::from(r.memory)) {
        out.push(d("memory", r.memory, opt(cfg.memory)));
    }
    if cfg.swap.unwrap_or(512) != u64::from(r.swap) {
        out.push(d("swap", r.swap, opt(cfg.swap)));
    }
    if cfg.onboot != r.onboot {
        out.push(d("onboot", r.onboot, cfg.onboot));
    }
    let mut want: Vec<String> = spec.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
    let mut have: Vec<String> = cfg.tags.iter().map(|t| t.to_ascii_lowercase()).collect();
    want.sort();
    want.dedup();
    have.sort();
    have.dedup();
    if want != have {
        out.push(d("tags", want.join(";"), have.join(";")));
    }
    let expected = super::spec::net0(r);
    match cfg.net.get(&0) {
        Some(actual) if expected.is_satisfied_by(actual) => {}
        Some(actual) => out.push(d(
            "net0",
            expected.to_property_string(),
            actual.to_property_string(),
        )),
        None => out.push(d("net0", expected.to_property_string(), "missing")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Resources;
    use crate::pve::parse::pct_config::parse_pct_config;

    #[test]
    fn reports_each_field() {
        let spec = StoredSpec {
            resources: Resources {
                cores: 2,
                memory: 2048,
                swap: 512,
                disk: 8,
                storage: "local-lvm".into(),
                bridge: "vmbr0".into(),
                ip: "dhcp".into(),
                gw: None,
                ip6: "auto".into(),
                onboot: true,
            },
            tags: vec!["1ld".into(), "1ld-netbox-agent".into()],
            settings: Default::default(),
            secret_keys: vec![],
            supervise: Default::default(),
            backup: Default::default(),
        };
        let same = parse_pct_config("arch: amd64\ncores: 2\nhostname: nb\nmemory: 2048\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,ip6=auto,type=veth\nonboot: 1\nostype: debian\nrootfs: local-lvm:vm-140-disk-0,size=8G\nswap: 512\ntags: 1ld;1ld-netbox-agent\nunprivileged: 1\n").unwrap();
        assert_eq!(compare(&spec, &same), vec![]);
        let changed = parse_pct_config("arch: amd64\ncores: 4\nhostname: nb\nmemory: 2048\nnet0: name=eth0,bridge=vmbr1,ip=dhcp,ip6=auto,type=veth\nostype: debian\nswap: 512\ntags: 1ld\nunprivileged: 1\n").unwrap();
        let fields: Vec<String> = compare(&spec, &changed)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(fields, vec!["cores", "onboot", "tags", "net0"]);
    }
}
