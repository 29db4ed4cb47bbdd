//! Golden-output tests for `pveam`, `pvesm`, `vzdump` and `pct restore`.
//!
//! Everything runs in a throw-away sandbox root with hand-placed files and a
//! private appliance mirror; containers are stopped (no LXC needed). Output
//! parts that depend on the machine (transfer rates, durations, random MACs)
//! are masked before comparing with `tests/golden/<name>.txt`
//! (`UPDATE_GOLDEN=1` rewrites them). The unprivileged round trip needs root
//! and `lxc-usernsexec`: it runs with `PVE_SANDBOX_E2E=1` and then fails (never
//! skips) when a prerequisite is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Sandbox;

/// Mask what varies between runs and machines.
fn mask(text: &str, sb: &Sandbox, extra: &[(&str, &str)]) -> String {
    let mut t = text.replace(&sb.root.display().to_string(), "<ROOT>");
    for (from, to) in extra {
        t = t.replace(from, to);
    }
    t.lines()
        .map(|l| {
            let mut l = l.to_string();
            // tar: "Total bytes written: 20480 (20KiB, 82MiB/s)"
            if l.contains("Total bytes") {
                if let (Some(a), Some(b)) = (l.rfind(", "), l.rfind("/s)")) {
                    if a < b {
                        l.replace_range(a + 2..b + 2, "<RATE>");
                    }
                }
            }
            // vzdump: "Finished Backup of VM 103 (00:00:00)"
            if l.contains("Finished Backup of VM") {
                if let Some(a) = l.rfind(" (") {
                    l.replace_range(a.., " (<DURATION>)");
                }
            }
            // wget-like: "2024-05-01 10:00:00 (95.3 MB/s) - '...' saved [n/n]"
            if let (Some(a), Some(b)) = (l.find(" ("), l.find(" MB/s)")) {
                if a < b {
                    l.replace_range(a + 2..b + 5, "<RATE>");
                }
            }
            // download temp files carry the pid: ".tmp_dwnl.12345"
            while let Some(i) = l.find(".tmp_dwnl.") {
                let start = i + ".tmp_dwnl.".len();
                let end = start
                    + l[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(l.len() - start);
                if end == start {
                    break;
                }
                l.replace_range(i..end, ".tmp_dwnl_<PID>");
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// A transcript with masking, compared against `tests/golden/<name>.txt`.
struct Golden<'a> {
    name: &'static str,
    sb: &'a Sandbox,
    env: Vec<(String, String)>,
    masks: Vec<(String, String)>,
    text: String,
}

impl<'a> Golden<'a> {
    fn new(name: &'static str, sb: &'a Sandbox) -> Self {
        Golden {
            name,
            sb,
            env: Vec::new(),
            masks: Vec::new(),
            text: String::new(),
        }
    }

    fn env(&mut self, k: &str, v: &str) {
        self.env.retain(|(a, _)| a != k);
        self.env.push((k.into(), v.into()));
    }

    fn mask_text(&self, s: &str) -> String {
        let m: Vec<(&str, &str)> = self
            .masks
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        mask(s, self.sb, &m)
    }

    fn run_with(&mut self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut c: Command = self.sb.cmd(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let cmdline = self.mask_text(&args.join(" "));
        let text = common::step_text(&cmdline, extra_env, &out, |s| self.mask_text(s));
        self.text.push_str(&text);
        out
    }

    fn step(&mut self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    fn note(&mut self, title: &str, body: &str) {
        let b = self.mask_text(body);
        self.text.push_str(&format!("### {title}\n{b}\n"));
    }

    fn check(self) {
        common::check_golden(self.name, &self.text);
    }
}

const TEMPLATE: &str = "debian-12-standard_12.12-1_amd64.tar.zst";

/// A private mirror with an index (two sections) and one fake template.
fn make_mirror(dir: &Path, template_body: &[u8]) -> PathBuf {
    let m = dir.join("mirror");
    std::fs::create_dir_all(m.join("system")).unwrap();
    std::fs::write(m.join("system").join(TEMPLATE), template_body).unwrap();
    let sha = sha512(&m.join("system").join(TEMPLATE));
    let index = format!(
        "Package: debian-12-standard\nVersion: 12.12-1\nType: lxc\nOS: debian-12\nSection: system\n\
         Maintainer: Proxmox Support Team <support@proxmox.com>\nArchitecture: amd64\n\
         Location: system/{TEMPLATE}\nsha512sum: {sha}\n\
         Infopage: https://pve.proxmox.com/wiki/Linux_Container\n\
         Description: Debian 12 Bookworm (standard)\n A small Debian Bookworm system.\n\n\
         Package: proxmox-mail-gateway\nVersion: 8.2-1\nType: lxc\nOS: debian-12\nSection: mail\n\
         Location: mail/proxmox-mail-gateway-8.2-standard_8.2-1_amd64.tar.zst\n\
         md5sum: 00000000000000000000000000000000\nInfopage: https://www.proxmox.com\n\
         Description: Proxmox Mailgateway 8.2\n"
    );
    std::fs::write(m.join("aplinfo-pve-8.dat"), index).unwrap();
    m
}

fn sha512(p: &Path) -> String {
    let o = Command::new("sha512sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn pveam() {
    let sb = Sandbox::new();
    let tmp = tempfile::tempdir().unwrap();
    let mirror = make_mirror(tmp.path(), b"not really a template\n");
    let mut g = Golden::new("pveam", &sb);
    g.env("PVE_SANDBOX_MIRROR", &mirror.display().to_string());
    g.env("PVE_SANDBOX_NOW", "1714557600");
    g.masks
        .push((mirror.display().to_string(), "<MIRROR>".into()));

    g.step(&["pveam", "available"]);
    g.step(&["pveam", "update"]);
    g.step(&["pveam", "available"]);
    g.step(&["pveam", "available", "--section", "system"]);
    g.run_with(&["pveam", "available"], &[("PVE_SANDBOX_PVE_MAJOR", "9")]);
    g.step(&["pveam", "available", "--section", "bogus"]);
    g.step(&["pveam", "list", "local"]);
    g.step(&["pveam", "list", "local-lvm"]);
    g.step(&["pveam", "download", "local", "nope.tar.zst"]);
    g.step(&["pveam", "download", "local-lvm", TEMPLATE]);
    let out = g.step(&["pveam", "download", "local", TEMPLATE]);
    assert_eq!(out.status.code(), Some(0));
    let dest = sb.root.join("var/lib/vz/template/cache").join(TEMPLATE);
    assert_eq!(std::fs::read(&dest).unwrap(), b"not really a template\n");
    g.step(&["pveam", "download", "local", TEMPLATE]);
    g.step(&["pveam", "list", "local"]);
    g.step(&["pvesm", "list", "local", "--content", "vztmpl"]);
    // A corrupted existing file: checksum mismatch, the task fails, exit 0.
    std::fs::write(&dest, b"corrupt").unwrap();
    let out = g.step(&["pveam", "download", "local", TEMPLATE]);
    assert_eq!(out.status.code(), Some(0));
    g.step(&["pveam", "remove", &format!("local:vztmpl/{TEMPLATE}")]);
    g.step(&["pveam", "list", "local"]);
    // The mirror file vanished: download fails (exit 0, error on stderr), no temp file left.
    std::fs::remove_file(mirror.join("system").join(TEMPLATE)).unwrap();
    let out = g.step(&["pveam", "download", "local", TEMPLATE]);
    assert_eq!(out.status.code(), Some(0));
    let leftovers: Vec<_> = std::fs::read_dir(sb.root.join("var/lib/vz/template/cache"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // The index vanished: update fails on stderr, still exit 0.
    std::fs::remove_file(mirror.join("aplinfo-pve-8.dat")).unwrap();
    g.step(&["pveam", "update"]);
    g.check();
}

/// Hand-placed backups: (name, protected, notes).
const BACKUPS: &[(&str, bool, bool)] = &[
    ("vzdump-lxc-101-2024_04_28-10_00_00.tar", false, false),
    ("vzdump-lxc-101-2024_05_01-10_00_00.tar", true, false),
    ("vzdump-lxc-101-2024_05_01-22_00_00.tar.zst", false, true),
    ("vzdump-lxc-101-2024_05_02-10_00_00.tar.gz", false, false),
    ("vzdump-lxc-101-2024_05_03-10_00_00.tar.lzo", false, false),
    ("vzdump-lxc-101-manual-copy.tar", false, false),
    ("vzdump-lxc-102-2024_05_02-10_00_00.tar", false, false),
    ("vzdump-qemu-105-2024_05_02-10_00_00.vma.zst", false, false),
];

fn place_backups(sb: &Sandbox) -> PathBuf {
    let dump = sb.root.join("var/lib/vz/dump");
    std::fs::create_dir_all(&dump).unwrap();
    for (i, (name, protected, notes)) in BACKUPS.iter().enumerate() {
        std::fs::write(dump.join(name), vec![b'x'; 100 * (i + 1)]).unwrap();
        if let Some(base) = name.split('.').next().filter(|_| name.contains("-20")) {
            std::fs::write(dump.join(format!("{base}.log")), "log\n").unwrap();
        }
        if *protected {
            std::fs::write(dump.join(format!("{name}.protected")), "").unwrap();
        }
        if *notes {
            std::fs::write(dump.join(format!("{name}.notes")), "nightly").unwrap();
        }
    }
    dump
}

#[test]
fn pvesm() {
    let sb = Sandbox::new();
    sb.write_conf(101, common::CT101);
    std::fs::create_dir_all(sb.root.join("data/local-lvm/vm-101-disk-0/etc")).unwrap();
    std::fs::create_dir_all(sb.root.join("var/lib/vz/template/cache")).unwrap();
    std::fs::write(
        sb.root.join("var/lib/vz/template/cache").join(TEMPLATE),
        vec![0u8; 4096],
    )
    .unwrap();
    let dump = place_backups(&sb);
    let mut g = Golden::new("pvesm", &sb);
    g.env("PVE_SANDBOX_NOW", "1714557600");

    g.step(&["pvesm", "list", "local"]);
    g.step(&["pvesm", "list", "local", "--vmid", "101"]);
    g.step(&["pvesm", "list", "local", "--content", "vztmpl"]);
    g.step(&["pvesm", "list", "local", "--content", "rootdir"]);
    g.step(&["pvesm", "list", "local-lvm"]);
    g.step(&["pvesm", "list", "off"]);
    g.step(&["pvesm", "list", "nope"]);
    g.step(&[
        "pvesm",
        "path",
        "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar",
    ]);
    g.step(&["pvesm", "path", "local-lvm:vm-101-disk-0"]);
    g.step(&["pvesm", "path", "nope:vm-101-disk-0"]);
    g.step(&["pvesm", "status", "--storage", "off"]);
    g.step(&["pvesm", "status", "--storage", "nope"]);
    for major in ["8", "9"] {
        let out =
            g.sb.cmd(&["pvesm", "status"])
                .env("PVE_SANDBOX_PVE_MAJOR", major)
                .output()
                .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header = lines.next().unwrap().to_string();
        g.note(&format!("pvesm status header (PVE {major})"), &header);
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 4, "{text}");
        for r in &rows {
            let f: Vec<&str> = r.split_whitespace().collect();
            assert_eq!(f.len(), 7, "{r}");
            if f[0] == "off" {
                assert_eq!(&f[2..], ["disabled", "0", "0", "0", "N/A"]);
            } else {
                assert_eq!(f[2], "active");
                assert!(f[6].ends_with('%'));
            }
        }
    }
    let out = sb
        .cmd(&["pvesm", "status", "--content", "backup", "--enabled"])
        .output()
        .unwrap();
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(names, ["backup", "local"]);
    g.step(&[
        "pvesm",
        "prune-backups",
        "local",
        "--keep-last",
        "2",
        "--dry-run",
    ]);
    g.step(&[
        "pvesm",
        "prune-backups",
        "local",
        "--keep-daily",
        "2",
        "--type",
        "lxc",
        "--vmid",
        "101",
        "--dry-run",
    ]);
    g.step(&[
        "pvesm",
        "prune-backups",
        "local",
        "--vmid",
        "999",
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    g.step(&["pvesm", "prune-backups", "local"]);
    g.step(&["pvesm", "prune-backups", "local-lvm", "--keep-last", "1"]);
    g.step(&["pvesm", "prune-backups", "local", "--keep-last", "x"]);
    g.step(&[
        "pvesm",
        "prune-backups",
        "local",
        "--keep-last",
        "1",
        "--vmid",
        "101",
    ]);
    g.note("dump dir after prune", &dump_listing(&dump));
    g.step(&[
        "pvesm",
        "free",
        "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar",
    ]);
    g.step(&[
        "pvesm",
        "free",
        "local:backup/vzdump-lxc-102-2024_05_02-10_00_00.tar",
    ]);
    assert!(!dump.join("vzdump-lxc-102-2024_05_02-10_00_00.log").exists());
    g.step(&["pvesm", "free", "local-lvm:vm-101-disk-0"]);
    g.step(&[
        "pvesm",
        "extractconfig",
        "local:backup/vzdump-lxc-101-manual-copy.tar",
    ]);
    g.step(&["pvesm", "bogus"]);
    g.check();
}

/// A privileged, stopped CT on local-lvm with a small rootfs.
const CT103: &str = "arch: amd64\nhostname: files01\nmemory: 256\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:BB:CC,ip=dhcp,type=veth\nostype: debian\nrootfs: local-lvm:vm-103-disk-0,size=2G\nswap: 0\n";

fn make_ct103(sb: &Sandbox) -> PathBuf {
    sb.write_conf(103, CT103);
    let r = sb.root.join("data/local-lvm/vm-103-disk-0");
    for d in ["etc", "root", "tmp", "var/tmp", "srv"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("etc/hostname"), "files01\n").unwrap();
    std::fs::write(r.join("srv/index.html"), "hello from 103\n").unwrap();
    std::fs::write(r.join("tmp/scratch"), "excluded\n").unwrap();
    r
}

fn tar_members(archive: &Path) -> String {
    let o = Command::new("tar").arg("tf").arg(archive).output().unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v.join("\n")
}

fn dump_listing(dump: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dump)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.join("\n")
}

#[test]
fn vzdump_and_restore() {
    let sb = Sandbox::new();
    make_ct103(&sb);
    let dump = sb.root.join("var/lib/vz/dump");
    let mut g = Golden::new("vzdump_restore", &sb);
    // 2024-05-01 10:00:00 UTC
    g.env("PVE_SANDBOX_NOW", "1714557600");

    let out = g.step(&[
        "vzdump",
        "103",
        "--storage",
        "local",
        "--compress",
        "zstd",
        "--notes-template",
        "{{guestname}} on {{node}} ({{vmid}})\\n{{cluster}}",
        "--prune-backups",
        "keep-last=3",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!sb.read_conf(103).contains("lock:"));
    g.note("dump dir", &dump_listing(&dump));
    let base = "vzdump-lxc-103-2024_05_01-10_00_00";
    g.note(
        "log file",
        &std::fs::read_to_string(dump.join(format!("{base}.log"))).unwrap(),
    );
    g.note(
        "notes file",
        &std::fs::read_to_string(dump.join(format!("{base}.tar.zst.notes"))).unwrap(),
    );
    g.note(
        "archive members",
        &tar_members(&dump.join(format!("{base}.tar.zst"))),
    );
    g.step(&[
        "pvesm",
        "extractconfig",
        &format!("local:backup/{base}.tar.zst"),
    ]);

    // Later days: prune keeps the daily newest, protected ones don't count.
    for (ts, extra) in [
        ("1714644000", vec!["--protected", "1"]),
        ("1714730400", vec![]),
        ("1714816800", vec![]),
    ] {
        let mut args = vec![
            "vzdump",
            "103",
            "--storage",
            "local",
            "--prune-backups",
            "keep-daily=2",
        ];
        args.extend(extra);
        g.run_with(&args, &[("PVE_SANDBOX_NOW", ts)]);
    }
    g.note("dump dir after pruning", &dump_listing(&dump));

    // The retention guard with --remove 0.
    g.step(&[
        "vzdump",
        "103",
        "--storage",
        "local",
        "--prune-backups",
        "keep-last=1",
        "--remove",
        "0",
    ]);
    // Unknown guest, guest on the other node, locked guest, bad parameters.
    g.step(&[
        "vzdump",
        "999",
        "103",
        "106",
        "--storage",
        "backup",
        "--mode",
        "stop",
    ]);
    g.step(&["vzdump", "106"]);
    let locked = CT103.replace("swap: 0\n", "lock: snapshot\nswap: 0\n");
    sb.write_conf(103, &locked);
    g.step(&["vzdump", "103", "--storage", "backup"]);
    assert!(sb.read_conf(103).contains("lock: snapshot"));
    sb.write_conf(103, CT103);
    g.step(&["vzdump", "103", "--storage", "off"]);
    g.step(&["vzdump", "103", "--storage", "nope", "--dumpdir", "/tmp"]);
    g.step(&["vzdump", "103", "--notes-template", "{{hostname}}"]);
    g.step(&["vzdump", "--mode", "stop"]);
    g.step(&["vzdump", "103", "--all"]);
    g.step(&["vzdump", "103", "--maxfiles", "1", "--storage", "backup"]);
    g.run_with(
        &["vzdump", "103", "--maxfiles", "1"],
        &[("PVE_SANDBOX_PVE_MAJOR", "9")],
    );
    g.run_with(
        &["vzdump", "103", "--notification-policy", "never"],
        &[("PVE_SANDBOX_PVE_MAJOR", "9")],
    );

    // A dump directory instead of a storage: `delete old backup` lines.
    let dd = sb.root.join("dumpdir");
    std::fs::create_dir_all(&dd).unwrap();
    for ts in ["1714557600", "1714644000"] {
        g.run_with(
            &[
                "vzdump",
                "103",
                "--dumpdir",
                &dd.display().to_string(),
                "--prune-backups",
                "keep-last=1",
                "--quiet",
            ],
            &[("PVE_SANDBOX_NOW", ts)],
        );
    }
    g.note("dumpdir", &dump_listing(&dd));

    // --stdout: the archive on stdout, the log on stderr.
    let out = sb
        .cmd(&["vzdump", "103", "--stdout"])
        .env("PVE_SANDBOX_NOW", "1714903200")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INFO: sending archive to stdout"),
        "{stderr}"
    );
    let tarfile = sb.root.join("stdout.tar");
    std::fs::write(&tarfile, &out.stdout).unwrap();
    let members = tar_members(&tarfile);
    assert!(members.contains("./etc/vzdump/pct.conf"), "{members}");
    assert!(members.contains("./srv/index.html"), "{members}");

    // Restore.
    // (the first, zstd, backup was pruned; the protected one of 05-02 stays)
    let volid = "local:backup/vzdump-lxc-103-2024_05_02-10_00_00.tar".to_string();
    g.step(&["pct", "restore", "110", &volid]);
    g.step(&[
        "pct",
        "restore",
        "110",
        &volid,
        "--storage",
        "local-lvm",
        "--memory",
        "1024",
    ]);
    g.note("110.conf", &sb.read_conf(110));
    let restored = sb.root.join("data/local-lvm/vm-110-disk-0");
    assert_eq!(
        std::fs::read_to_string(restored.join("srv/index.html")).unwrap(),
        "hello from 103\n"
    );
    assert!(!restored.join("etc/vzdump/pct.conf").exists());
    assert!(
        !restored.join("tmp/scratch").exists(),
        "stdexcludes not applied"
    );
    g.step(&["pct", "restore", "110", &volid, "--storage", "local-lvm"]);
    g.step(&["pct", "restore", "106", &volid, "--storage", "local-lvm"]);
    let out = g.step(&[
        "pct",
        "restore",
        "110",
        &volid,
        "--storage",
        "local-lvm",
        "--force",
        "--hostname",
        "again",
    ]);
    assert_exit0(&out);
    g.note("110.conf after --force", &sb.read_conf(110));
    assert!(!sb.root.join("data/local-lvm/vm-110-disk-0").exists());
    g.step(&[
        "pct",
        "restore",
        "111",
        "local:backup/vzdump-lxc-103-2030_01_01-00_00_00.tar",
        "--storage",
        "local-lvm",
    ]);
    assert!(!sb.root.join("etc/pve/lxc/111.conf").exists());
    assert!(!sb.root.join("data/local-lvm/vm-111-disk-0").exists());
    g.check();

    // --unique: a fresh MAC, everything else as backed up.
    let out = sb
        .cmd(&[
            "pct",
            "restore",
            "112",
            &volid,
            "--storage",
            "local-lvm",
            "--unique",
        ])
        .output()
        .unwrap();
    assert_exit0(&out);
    let conf = sb.read_conf(112);
    assert!(conf.contains("hostname: files01"), "{conf}");
    assert!(conf.contains("hwaddr=BC:24:11:"), "{conf}");
    assert!(!conf.contains("BC:24:11:AA:BB:CC"), "{conf}");
}

/// The command exited 0 (its stderr in the failure message).
fn assert_exit0(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fail loudly when the root tier was asked for but cannot run.
fn require_root_tier() -> bool {
    if std::env::var("PVE_SANDBOX_E2E").as_deref() != Ok("1") {
        return false;
    }
    assert_eq!(
        nix_geteuid(),
        0,
        "PVE_SANDBOX_E2E=1 but not running as root"
    );
    assert!(
        Command::new("lxc-usernsexec")
            .arg("--help")
            .output()
            .is_ok(),
        "PVE_SANDBOX_E2E=1 but lxc-usernsexec is missing (apt-get install lxc)"
    );
    true
}

fn nix_geteuid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// Unprivileged CT: the archive holds container ids, restore shifts them back.
#[test]
fn unprivileged_round_trip() {
    if !require_root_tier() {
        return;
    }
    let sb = Sandbox::new();
    // lxc-usernsexec's root must be able to walk down to the rootfs.
    let mut p = sb.root.clone();
    while p.parent().is_some() && p != Path::new("/tmp") && p != Path::new("/") {
        let _ = Command::new("chmod").arg("755").arg(&p).status();
        p = p.parent().unwrap().to_path_buf();
    }
    sb.write_conf(101, common::CT101);
    let r = sb.root.join("data/local-lvm/vm-101-disk-0");
    std::fs::create_dir_all(r.join("var/www")).unwrap();
    std::fs::write(r.join("var/www/index.html"), "shifted\n").unwrap();
    for (path, id) in [
        ("", "100000"),
        ("var", "100000"),
        ("var/www", "100033"),
        ("var/www/index.html", "100033"),
    ] {
        let st = Command::new("chown")
            .arg(format!("{id}:{id}"))
            .arg(r.join(path))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = sb
        .cmd(&["vzdump", "101", "--storage", "local"])
        .env("PVE_SANDBOX_NOW", "1714557600")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let archive = sb
        .root
        .join("var/lib/vz/dump/vzdump-lxc-101-2024_05_01-10_00_00.tar");
    let o = Command::new("tar")
        .args(["tvf"])
        .arg(&archive)
        .arg("--numeric-owner")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    let line = listing
        .lines()
        .find(|l| l.ends_with("./var/www/index.html"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains(" 33/33 "), "not in the CT's uid view: {line}");

    let out = sb
        .cmd(&[
            "pct",
            "restore",
            "120",
            "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar",
            "--storage",
            "local-lvm",
        ])
        .output()
        .unwrap();
    assert_exit0(&out);
    assert!(sb.read_conf(120).contains("unprivileged: 1"));
    let f = sb
        .root
        .join("data/local-lvm/vm-120-disk-0/var/www/index.html");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid()), (100_033, 100_033));
    assert_eq!(std::fs::read_to_string(f).unwrap(), "shifted\n");
}
