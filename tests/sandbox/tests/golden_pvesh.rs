//! Golden-output tests for `pvesh get` (no root or LXC needed).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Sandbox, Transcript, CT101, CT102};

#[test]
fn pvesh_get() {
    let sb = Sandbox::new();
    let mut t = Transcript::new("pvesh_get", &sb);
    t.step(&sb, &["pvesh", "get", "/cluster/nextid"]);
    sb.write_conf(100, CT102.replace("102", "100").as_str());
    sb.write_conf(101, CT101);
    t.step(&sb, &["pvesh", "get", "/cluster/nextid"]);
    t.step(
        &sb,
        &["pvesh", "get", "/cluster/nextid", "--output-format", "json"],
    );
    t.step(&sb, &["pvesh", "get", "/cluster/nextid", "--vmid", "105"]);
    t.step(
        &sb,
        &[
            "pvesh",
            "get",
            "/cluster/nextid",
            "--vmid",
            "150",
            "--output-format",
            "json",
        ],
    );
    t.step(
        &sb,
        &[
            "pvesh",
            "get",
            "/cluster/resources",
            "--type",
            "vm",
            "--output-format",
            "json",
        ],
    );
    t.step(
        &sb,
        &[
            "pvesh",
            "get",
            "/nodes/pve/lxc/101/status/current",
            "--output-format",
            "json",
        ],
    );
    t.step(
        &sb,
        &[
            "pvesh",
            "get",
            "/nodes/pve/lxc/101/interfaces",
            "--output-format",
            "json",
        ],
    );
    t.step(&sb, &["pvesh", "get", "/nodes/pve/lxc/101/interfaces"]);
    t.step(
        &sb,
        &[
            "pvesh",
            "get",
            "/nodes/pve/lxc/999/status/current",
            "--output-format",
            "json",
        ],
    );
    t.step(
        &sb,
        &["pvesh", "get", "/version", "--output-format", "json"],
    );
    t.step(&sb, &["pvesh", "get", "/nodes/pve/bogus"]);
    t.step(
        &sb,
        &["pvesh", "get", "/cluster/nextid", "--output-format", "xml"],
    );
    t.step(&sb, &["pvesh", "set", "/cluster/nextid"]);
    t.check();
}
