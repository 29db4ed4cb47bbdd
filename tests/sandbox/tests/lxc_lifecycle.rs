//! Root-only end-to-end test with real LXC: create → start → DHCP lease →
//! exec (exit code, stdin) → push/pull → snapshot/rollback → stop → destroy.
//!
//! Runs only with `PVE_SANDBOX_E2E=1` (set by `make test`); then it FAILS
//! (does not skip) when not root or when the template is missing. It uses a
//! private root in a temp dir, its own bridge (`sbxe2e0`) and subnet
//! (`10.213.77.0/24`), so it can run next to a live sandbox.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, LiveNode, E2E_TEMPLATE as TEMPLATE};

#[test]
fn lxc_lifecycle() {
    if !common::e2e_requested("lxc_lifecycle") {
        return;
    }
    let template = std::path::Path::new(&common::e2e_mirror())
        .join("system")
        .join(TEMPLATE);
    assert!(
        template.is_file(),
        "template {} missing: run tests/sandbox/template/build-template.sh (make builds it first)",
        template.display()
    );

    let n = LiveNode::up("sbx-e2e", "sbxe2e0", "10.213.77.0/24");

    let t = Instant::now();
    let out = n.ok(&[
        "pct",
        "create",
        "9101",
        template.to_str().unwrap(),
        "--hostname",
        "e2e",
        "--net0",
        "name=eth0,bridge=sbxe2e0,ip=dhcp",
        "--unprivileged",
        "1",
        "--features",
        "nesting=1",
        "--rootfs",
        "local-lvm:2",
    ]);
    eprintln!("TIME create: {:?}", t.elapsed());
    assert!(out.contains("extracting archive"), "{out}");
    assert!(out.contains("Total bytes read: "), "{out}");
    assert!(
        out.contains("Detected container architecture: amd64"),
        "{out}"
    );

    let t = Instant::now();
    n.ok(&["pct", "start", "9101"]);
    assert_eq!(n.ok(&["pct", "status", "9101"]), "status: running\n");
    let mac = n.mac_of("9101");
    let leases = n.root.join("run/dnsmasq.leases");
    wait_for("DHCP lease", Duration::from_secs(20), || {
        std::fs::read_to_string(&leases)
            .ok()
            .filter(|l| l.contains(&mac))
    });
    eprintln!("TIME start->lease: {:?}", t.elapsed());
    let ifs = n.ok(&[
        "pvesh",
        "get",
        "/nodes/pve/lxc/9101/interfaces",
        "--output-format",
        "json",
    ]);
    assert!(ifs.contains("10.213.77."), "{ifs}");

    // exec: exit code and stdin pass through
    let o = n.pve(&["pct", "exec", "9101", "--", "sh", "-c", "exit 42"]);
    assert_eq!(o.status.code(), Some(42));
    let o = n.exec_stdin("9101", &["cat"], b"via stdin\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "via stdin\n");

    // push/pull with owner and mode
    let src = n.root.join("push-src");
    std::fs::write(&src, "pushed\n").unwrap();
    n.ok(&[
        "pct",
        "push",
        "9101",
        src.to_str().unwrap(),
        "/root/p.txt",
        "--perms",
        "640",
        "--user",
        "nobody",
    ]);
    let ls = n.ok(&[
        "pct",
        "exec",
        "9101",
        "--",
        "stat",
        "-c",
        "%U:%G %a",
        "/root/p.txt",
    ]);
    assert_eq!(ls, "nobody:root 640\n");
    let o = n.pve(&[
        "pct",
        "push",
        "9101",
        src.to_str().unwrap(),
        "/no/such/dir/x",
    ]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "failed to create file: /no/such/dir/x: No such file or directory\n"
    );
    let dst = n.root.join("pulled");
    n.ok(&[
        "pct",
        "pull",
        "9101",
        "/etc/hostname",
        dst.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "e2e\n");

    // snapshot / rollback
    n.ok(&[
        "pct",
        "snapshot",
        "9101",
        "s1",
        "--description",
        "before rm",
    ]);
    n.ok(&["pct", "exec", "9101", "--", "rm", "/root/p.txt"]);
    let tree = n.ok(&["pct", "listsnapshot", "9101"]);
    assert!(tree.starts_with("`-> s1 "), "{tree}");
    n.ok(&["pct", "rollback", "9101", "s1", "--start"]);
    assert_eq!(
        n.ok(&["pct", "exec", "9101", "--", "cat", "/root/p.txt"]),
        "pushed\n"
    );
    n.ok(&["pct", "delsnapshot", "9101", "s1"]);

    // stop / destroy
    n.ok(&["pct", "stop", "9101"]);
    assert_eq!(n.ok(&["pct", "status", "9101"]), "status: stopped\n");
    let o = n.pve(&["pct", "exec", "9101", "--", "true"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "container '9101' not running!\n"
    );
    n.ok(&["pct", "destroy", "9101"]);
    assert_eq!(n.ok(&["pct", "list"]), "");
    assert!(!n.root.join("data/local-lvm/vm-9101-disk-0").exists());
}
