//! `pvesh get <path>` for the API paths the daemon uses.
//!
//! Paths: `/version`, `/cluster/nextid [--vmid N]`, `/cluster/resources
//! [--type vm|storage|node|sdn]`, `/nodes`, `/nodes/<node>/lxc`,
//! `/nodes/<node>/lxc/<vmid>/status/current`, `/nodes/<node>/lxc/<vmid>/config`,
//! `/nodes/<node>/lxc/<vmid>/interfaces`. Output: `--output-format
//! text|json|json-pretty` (json = one line, sorted keys). In text mode
//! scalars print bare; structured results print as pretty JSON (PVE draws
//! bordered tables; the daemon uses json). Other verbs and paths fail with
//! `no '<verb>' handler for '<path>'`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cli::{Args, CmdDef, OptDef, OptType};
use crate::conf;
use crate::error::{PveError, Result};
use crate::lxc;
use crate::node::Node;
use crate::pct::ct_status;
use crate::storage::{self, StorageCfg};

const FORMATS: &[&str] = &["json", "json-pretty", "text", "yaml"];

/// Entry point.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let Some(verb) = args.first() else {
        return Err(PveError::bad_subcommand("pvesh", None));
    };
    let rest = &args[1..];
    if !matches!(
        verb.as_str(),
        "get" | "set" | "create" | "delete" | "ls" | "usage"
    ) {
        return Err(PveError::bad_subcommand("pvesh", Some(verb)));
    }
    let usage = format!("pvesh {verb} <api_path> [OPTIONS] [FORMAT_OPTIONS]");
    let opts = [
        OptDef::new("output-format", OptType::Enum(FORMATS)),
        OptDef::new("noborder", OptType::Bool),
        OptDef::new("noheader", OptType::Bool),
        OptDef::new("quiet", OptType::Bool),
        OptDef::new("noproxy", OptType::Bool),
        OptDef::new("human-readable", OptType::Bool),
        OptDef::new("type", OptType::Enum(&["vm", "storage", "node", "sdn"])),
        OptDef::new("vmid", OptType::Int(1, 999_999_999)),
    ];
    let a = CmdDef {
        usage: &usage,
        args: &[("api_path", OptType::Str)],
        opts: &opts,
        extra_args: false,
    }
    .parse(rest)?;
    let path = a.arg("api_path").trim_end_matches('/').to_string();
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    if verb != "get" {
        return Err(PveError::die(format!("no '{verb}' handler for '{path}'")));
    }
    let v = get(node, &path, &a).map_err(|e| e.with_usage(&usage))?;
    if a.flag("quiet") {
        return Ok(());
    }
    print_value(&v, a.opt("output-format").unwrap_or("text"));
    Ok(())
}

fn print_value(v: &Value, fmt: &str) {
    match fmt {
        "json" => println!("{}", v),
        "json-pretty" | "yaml" => {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default())
        }
        _ => match v {
            Value::Null => {}
            Value::String(s) => println!("{s}"),
            Value::Number(n) => println!("{n}"),
            Value::Bool(b) => println!("{}", u8::from(*b)),
            other => println!(
                "{}",
                serde_json::to_string_pretty(other).unwrap_or_default()
            ),
        },
    }
}

fn no_handler(path: &str) -> PveError {
    PveError::die(format!("no 'get' handler for '{path}'"))
}

fn get(node: &Node, path: &str, a: &Args) -> Result<Value> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["version"] => {
            let (ver, repoid) = crate::node::manager_version(node.pve_major());
            let release = ver.rsplit_once('.').map(|(r, _)| r).unwrap_or(ver);
            Ok(json!({"release": release, "repoid": repoid, "version": ver}))
        }
        ["cluster", "nextid"] => nextid(node, a.int("vmid")),
        ["cluster", "resources"] => resources(node, a.opt("type")),
        ["nodes"] => Ok(Value::Array(vec![node_entry(node)])),
        ["nodes", n] if *n == node.name() => Ok(json!([
            {"name": "lxc"}, {"name": "status"}, {"name": "storage"}, {"name": "version"}
        ])),
        ["nodes", n, "lxc"] => {
            check_node(node, n)?;
            let mut out = Vec::new();
            for id in node.local_vmids()? {
                if let Ok(c) = conf::load(node, id) {
                    let mut st = ct_status(node, id, &c)?;
                    st.insert("vmid".into(), json!(id));
                    out.push(Value::Object(st.into_iter().collect()));
                }
            }
            Ok(Value::Array(out))
        }
        ["nodes", n, "lxc", vmid, rest @ ..] => {
            check_node(node, n)?;
            let id: u32 = vmid.parse().map_err(|_| {
                PveError::param(
                    "vmid",
                    "invalid format - value does not look like a valid VM ID",
                )
            })?;
            match rest {
                ["status", "current"] => {
                    let c = conf::load(node, id)?;
                    let mut st = ct_status(node, id, &c)?;
                    st.insert("ha".into(), json!({"managed": 0}));
                    Ok(Value::Object(st.into_iter().collect()))
                }
                ["config"] => {
                    let c = conf::load(node, id)?;
                    let sec = c.current(false);
                    let mut m: BTreeMap<String, Value> = BTreeMap::new();
                    for (k, v) in &sec.props {
                        let num = v.parse::<i64>().ok().filter(|_| is_numeric_key(k));
                        m.insert(k.clone(), num.map(Value::from).unwrap_or_else(|| json!(v)));
                    }
                    let raw = std::fs::read(node.conf_path(id)).unwrap_or_default();
                    m.insert("digest".into(), json!(sha1(&raw)));
                    if !sec.lxc.is_empty() {
                        m.insert(
                            "lxc".into(),
                            json!(sec
                                .lxc
                                .iter()
                                .map(|(k, v)| vec![k.clone(), v.clone()])
                                .collect::<Vec<_>>()),
                        );
                    }
                    Ok(Value::Object(m.into_iter().collect()))
                }
                ["interfaces"] => {
                    conf::load(node, id)?;
                    interfaces(node, id)
                }
                _ => Err(no_handler(path)),
            }
        }
        _ => Err(no_handler(path)),
    }
}

fn is_numeric_key(k: &str) -> bool {
    matches!(
        k,
        "cores"
            | "cpuunits"
            | "memory"
            | "swap"
            | "onboot"
            | "protection"
            | "template"
            | "unprivileged"
            | "tty"
            | "console"
    )
}

fn sha1(data: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        return String::new();
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(data);
    }
    child
        .wait_with_output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn check_node(node: &Node, n: &str) -> Result<()> {
    if n == node.name() {
        return Ok(());
    }
    let known = node.other_guests()?.iter().any(|g| g.node == n);
    if known {
        return Err(PveError::die(format!(
            "proxying to node '{n}' is not emulated by the sandbox"
        )));
    }
    Err(PveError::die(format!(
        "hostname lookup '{n}' failed - failed to get address info for: {n}: Name or service not known"
    )))
}

fn nextid(node: &Node, want: Option<i64>) -> Result<Value> {
    let mut used: Vec<u32> = node.local_vmids()?;
    used.extend(node.other_guests()?.iter().map(|g| g.vmid));
    if let Some(v) = want {
        let v = u32::try_from(v).unwrap_or(0);
        if used.contains(&v) {
            return Err(PveError::param("vmid", format!("VM {v} already exists")));
        }
        return Ok(json!(v.to_string()));
    }
    let mut id = 100u32;
    while used.contains(&id) {
        id += 1;
    }
    if id >= 1_000_000 {
        return Err(PveError::die(
            "unable to get any free VMID in range [100, 999999]",
        ));
    }
    Ok(json!(id.to_string()))
}

#[allow(clippy::unnecessary_cast)] // fsblkcnt_t/c_ulong differ per platform
fn node_entry(node: &Node) -> Value {
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_total = meminfo("MemTotal:");
    let mem_avail = meminfo("MemAvailable:");
    let uptime: u64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|f| f as u64)
        .unwrap_or(0);
    let (disk, maxdisk) = nix::sys::statvfs::statvfs("/")
        .map(|s| {
            let f = s.fragment_size() as u64;
            (
                (s.blocks() as u64 - s.blocks_free() as u64) * f,
                s.blocks() as u64 * f,
            )
        })
        .unwrap_or((0, 0));
    json!({
        "cpu": 0,
        "disk": disk,
        "id": format!("node/{}", node.name()),
        "level": "",
        "maxcpu": ncpu,
        "maxdisk": maxdisk,
        "maxmem": mem_total,
        "mem": mem_total.saturating_sub(mem_avail),
        "node": node.name(),
        "ssl_fingerprint": "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
        "status": "online",
        "type": "node",
        "uptime": uptime,
    })
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn resources(node: &Node, ty: Option<&str>) -> Result<Value> {
    let mut out: Vec<Value> = Vec::new();
    let want = |t: &str| ty.is_none() || ty == Some(t);
    if want("vm") {
        for id in node.local_vmids()? {
            let Ok(c) = conf::load(node, id) else {
                continue;
            };
            let st = ct_status(node, id, &c)?;
            let mut m: BTreeMap<String, Value> = BTreeMap::new();
            for k in [
                "cpu",
                "disk",
                "diskread",
                "diskwrite",
                "maxdisk",
                "maxmem",
                "mem",
                "name",
                "netin",
                "netout",
                "status",
                "uptime",
                "lock",
                "tags",
            ] {
                if let Some(v) = st.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
            m.insert("maxcpu".into(), st.get("cpus").cloned().unwrap_or(json!(1)));
            m.insert("id".into(), json!(format!("lxc/{id}")));
            m.insert("node".into(), json!(node.name()));
            m.insert("template".into(), json!(u8::from(c.main.flag("template"))));
            m.insert("type".into(), json!("lxc"));
            m.insert("vmid".into(), json!(id));
            out.push(Value::Object(m.into_iter().collect()));
        }
        for g in node.other_guests()? {
            out.push(json!({
                "cpu": 0, "disk": 0, "diskread": 0, "diskwrite": 0,
                "id": format!("{}/{}", g.kind, g.vmid),
                "maxcpu": 1, "maxdisk": 4294967296u64, "maxmem": 536870912u64, "mem": 0,
                "name": g.name, "netin": 0, "netout": 0, "node": g.node,
                "status": "stopped", "template": 0, "type": g.kind, "uptime": 0, "vmid": g.vmid,
            }));
        }
    }
    if want("node") {
        out.push(node_entry(node));
        let mut others: Vec<String> = node.other_guests()?.into_iter().map(|g| g.node).collect();
        others.sort();
        others.dedup();
        for n in others {
            out.push(
                json!({"id": format!("node/{n}"), "node": n, "status": "online", "type": "node"}),
            );
        }
    }
    if want("storage") {
        let cfg = StorageCfg::load(node)?;
        for s in &cfg.storages {
            let (total, used, _) = storage::status_kib(node, s).unwrap_or((0, 0, 0));
            let status = if s.disabled() { "unknown" } else { "available" };
            out.push(json!({
                "content": s.content().join(","),
                "disk": used * 1024,
                "id": format!("storage/{}/{}", node.name(), s.id),
                "maxdisk": total * 1024,
                "node": node.name(),
                "plugintype": s.kind,
                "shared": 0,
                "status": status,
                "storage": s.id,
                "type": "storage",
            }));
        }
    }
    Ok(Value::Array(out))
}

fn interfaces(node: &Node, vmid: u32) -> Result<Value> {
    let Some(pid) = lxc::init_pid(node, vmid).filter(|_| lxc::is_running(node, vmid)) else {
        return Ok(Value::Null);
    };
    let out = lxc::nsenter_net(pid, &["ip", "-json", "addr", "show"])?;
    let parsed: Value = serde_json::from_slice(&out)
        .map_err(|e| PveError::die(format!("failed to parse 'ip -json addr' output: {e}")))?;
    Ok(Value::Array(parse_ip_json(&parsed)))
}

/// Turn `ip -json addr` output into PVE 8.4's interfaces entries.
pub fn parse_ip_json(v: &Value) -> Vec<Value> {
    let mut res = Vec::new();
    let Some(ifaces) = v.as_array() else {
        return res;
    };
    for i in ifaces {
        let name = i
            .get("ifname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let hw = i
            .get("address")
            .and_then(Value::as_str)
            .unwrap_or("00:00:00:00:00:00")
            .to_lowercase();
        let mut m = serde_json::Map::new();
        m.insert("name".into(), json!(name));
        m.insert("hwaddr".into(), json!(hw));
        m.insert("hardware-address".into(), json!(hw));
        let mut addrs = Vec::new();
        if let Some(ai) = i.get("addr_info").and_then(Value::as_array) {
            for a in ai {
                let fam = a.get("family").and_then(Value::as_str).unwrap_or("");
                let local = a.get("local").and_then(Value::as_str).unwrap_or("");
                let plen = a.get("prefixlen").and_then(Value::as_u64).unwrap_or(0);
                if fam != "inet" && fam != "inet6" {
                    continue;
                }
                m.insert(fam.to_string(), json!(format!("{local}/{plen}")));
                addrs.push(json!({"ip-address": local, "ip-address-type": fam, "prefix": plen}));
            }
        }
        m.insert("ip-addresses".into(), Value::Array(addrs));
        res.push(Value::Object(m));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_json() {
        let v: Value = serde_json::from_str(r#"[{"ifname":"lo","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},{"ifname":"eth0","address":"BC:24:11:00:00:01","addr_info":[{"family":"inet","local":"10.0.0.5","prefixlen":24}]}]"#).unwrap();
        let r = parse_ip_json(&v);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["inet6"], "::1/128");
        assert_eq!(r[1]["hwaddr"], "bc:24:11:00:00:01");
        assert_eq!(r[1]["ip-addresses"][0]["ip-address-type"], "inet");
    }
}
