//! Golden-output tests for `pvesh get` (no root or LXC needed).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Sandbox, Transcript, CT101, CT102};

/// `pvesh get <path>` with `opts`.
fn get<'a>(path: &'a str, opts: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["pvesh", "get", path];
    v.extend_from_slice(opts);
    v
}

const JSON: &[&str] = &["--output-format", "json"];

#[test]
fn pvesh_get() {
    let sb = Sandbox::new();
    let mut t = Transcript::new("pvesh_get", &sb);
    t.step(&sb, &get("/cluster/nextid", &[]));
    sb.write_conf(100, CT102.replace("102", "100").as_str());
    sb.write_conf(101, CT101);
    t.step(&sb, &get("/cluster/nextid", &[]));
    t.step(&sb, &get("/cluster/nextid", JSON));
    t.step(&sb, &get("/cluster/nextid", &["--vmid", "105"]));
    t.step(
        &sb,
        &get(
            "/cluster/nextid",
            &["--vmid", "150", "--output-format", "json"],
        ),
    );
    t.step(
        &sb,
        &get(
            "/cluster/resources",
            &["--type", "vm", "--output-format", "json"],
        ),
    );
    t.step(&sb, &get("/nodes/pve/lxc/101/status/current", JSON));
    t.step(&sb, &get("/nodes/pve/lxc/101/interfaces", JSON));
    t.step(&sb, &get("/nodes/pve/lxc/101/interfaces", &[]));
    t.step(&sb, &get("/nodes/pve/lxc/999/status/current", JSON));
    t.step(&sb, &get("/version", JSON));
    t.step(&sb, &get("/nodes/pve/bogus", &[]));
    t.step(&sb, &get("/cluster/nextid", &["--output-format", "xml"]));
    t.step(&sb, &["pvesh", "set", "/cluster/nextid"]);
    t.check();
}
