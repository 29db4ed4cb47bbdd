//! Golden-output tests for `pct` commands that need neither root nor LXC.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Sandbox, Transcript, CT101, CT102};

#[test]
fn list_config_status() {
    let sb = Sandbox::new();
    let mut t = Transcript::new("pct_list_config_status", &sb);
    t.step(&sb, &["pct", "list"]);
    sb.write_conf(101, CT101);
    sb.write_conf(102, CT102);
    t.step(&sb, &["pct", "list"]);
    t.step(&sb, &["pct", "config", "101"]);
    t.step(&sb, &["pct", "config", "102"]);
    t.step(&sb, &["pct", "config", "102", "--current"]);
    t.step(&sb, &["pct", "config", "102", "--snapshot", "before"]);
    t.step(&sb, &["pct", "config", "102", "--snapshot", "nope"]);
    t.step(
        &sb,
        &["pct", "config", "102", "--snapshot", "before", "--current"],
    );
    t.step(&sb, &["pct", "pending", "102"]);
    t.step(&sb, &["pct", "status", "101"]);
    t.step(&sb, &["pct", "status", "101", "--verbose"]);
    t.step(&sb, &["pct", "status", "999"]);
    t.step(&sb, &["pct", "status", "106"]);
    t.step(&sb, &["pct", "listsnapshot", "102"]);
    t.step(&sb, &["pct", "listsnapshot", "101"]);
    t.check();
}

#[test]
fn set_tags_locks() {
    let sb = Sandbox::new();
    sb.write_conf(101, CT101);
    let mut t = Transcript::new("pct_set_tags_locks", &sb);
    t.step(
        &sb,
        &[
            "pct",
            "set",
            "101",
            "--tags",
            "Web,prod web zeta",
            "--description",
            "new: text\nsecond",
        ],
    );
    t.step(
        &sb,
        &[
            "pct",
            "set",
            "101",
            "-cores=4",
            "--onboot",
            "0",
            "--startup",
            "up=30,2",
        ],
    );
    t.step(
        &sb,
        &["pct", "set", "101", "--delete", "cores,searchdomain"],
    );
    t.step(&sb, &["pct", "set", "101", "--delete", "memory"]);
    t.step(
        &sb,
        &["pct", "set", "101", "--swap", "256", "--delete", "swap"],
    );
    t.step(&sb, &["pct", "set", "101", "--tags", "bad!tag"]);
    t.step(&sb, &["pct", "set", "101"]);
    t.step(&sb, &["pct", "set", "101", "--unprivileged", "0"]);
    t.note("101.conf", &sb.read_conf(101));
    t.step(&sb, &["pct", "config", "101"]);
    t.step(&sb, &["pct", "set", "101", "--lock", "backup"]);
    t.step(&sb, &["pct", "list"]);
    t.step(&sb, &["pct", "set", "101", "--memory", "2048"]);
    t.step(&sb, &["pct", "start", "101"]);
    t.step(&sb, &["pct", "destroy", "101"]);
    t.step(&sb, &["pct", "snapshot", "101", "s1"]);
    t.step(&sb, &["pct", "exec", "101", "--", "true"]);
    t.step(&sb, &["pct", "unlock", "101"]);
    t.step(&sb, &["pct", "unlock", "101"]);
    t.step(&sb, &["pct", "set", "101", "--protection", "1"]);
    t.step(&sb, &["pct", "destroy", "101"]);
    t.check();
}

#[test]
fn params_and_prechecks() {
    let sb = Sandbox::new();
    sb.write_conf(101, CT101);
    sb.write_conf(102, CT102);
    let tmpl = "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst";
    let mut t = Transcript::new("pct_params", &sb);
    t.step(&sb, &["pct"]);
    t.step(&sb, &["pct", "frobnicate"]);
    t.step(&sb, &["pct", "start"]);
    t.step(&sb, &["pct", "start", "101", "102"]);
    t.step(&sb, &["pct", "start", "abc"]);
    t.step(&sb, &["pct", "start", "101", "--bogus"]);
    t.step(&sb, &["pct", "destroy", "--purge", "101"]);
    t.step(&sb, &["pct", "status", "-verb", "101"]);
    t.step(&sb, &["pct", "exec", "101", "ls", "-la"]);
    t.step(&sb, &["pct", "create", "101", tmpl]);
    t.step(&sb, &["pct", "create", "105", tmpl]);
    t.step(&sb, &["pct", "create", "106", tmpl]);
    t.step(&sb, &["pct", "create", "110", tmpl, "--storage", "nope"]);
    t.step(&sb, &["pct", "create", "110", tmpl, "--storage", "local"]);
    t.step(&sb, &["pct", "create", "110", tmpl, "--rootfs", "off:4"]);
    t.step(
        &sb,
        &[
            "pct",
            "create",
            "110",
            tmpl,
            "--memory",
            "8",
            "--hostname",
            "bad_name",
            "--net0",
            "bridge=vmbr0,foo=1",
        ],
    );
    t.step(
        &sb,
        &["pct", "create", "110", tmpl, "--rootfs", "local-lvm:1"],
    );
    t.step(&sb, &["pct", "list"]);
    t.step(&sb, &["pct", "exec", "101", "--", "true"]);
    t.step(&sb, &["pct", "exec", "101"]);
    t.step(&sb, &["pct", "push", "101", "/etc/hostname", "/tmp/x"]);
    t.step(&sb, &["pct", "pull", "101", "/etc/hostname", "/tmp/x"]);
    t.step(&sb, &["pct", "stop", "101"]);
    t.step(&sb, &["pct", "shutdown", "101"]);
    t.step(&sb, &["pct", "reboot", "101"]);
    t.step(&sb, &["pct", "snapshot", "101", "current"]);
    t.step(&sb, &["pct", "snapshot", "102", "after"]);
    t.step(&sb, &["pct", "snapshot", "102", "new1"]);
    t.step(&sb, &["pct", "rollback", "102", "nope"]);
    t.step(&sb, &["pct", "delsnapshot", "102", "nope"]);
    t.check();
}

#[test]
fn pve9_differences() {
    let sb = Sandbox::new();
    sb.write_conf(101, CT101);
    let mut t = Transcript::new("pct_pve9", &sb);
    let pve9 = [("PVE_SANDBOX_PVE_MAJOR", "9")];
    // host-managed is a PVE 9 key: accepted there, refused on PVE 8
    let set_net0 = [
        "pct",
        "set",
        "101",
        "--net0",
        "name=eth0,bridge=vmbr0,host-managed=1,hwaddr=BC:24:11:00:00:01",
    ];
    t.step_env(&sb, &set_net0, &pve9);
    t.step(&sb, &set_net0);
    t.step_env(&sb, &["pct", "config", "101"], &pve9);
    t.check();
}
