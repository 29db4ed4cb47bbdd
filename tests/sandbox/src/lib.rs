//! `pve-sandbox`: a Proxmox VE node in a box (test tooling only).
//!
//! One multi-call binary. Invoked as `pct`, `pveam`, `vzdump`, `pvesm`,
//! `pvesh` or `pveversion` (symlinks made by
//! `pve-sandbox install-links <dir>`) it behaves like that PVE 8 tool (PVE 9 with
//! `PVE_SANDBOX_PVE_MAJOR=9`); `pve-sandbox <tool> ...` does the same.
//! Admin verbs: `pve-sandbox up|down|status|install-links <dir>`.
//!
//! Central exit handling lives here: every tool returns
//! `Result<(), PveError>` and [`PveError::render`] decides what goes to stderr
//! and the exit status. Fault injection ([`fault`]) runs before any tool.
//! See `docs/sandbox.md` for the contract.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod archive;
pub mod cli;
pub mod clock;
pub mod conf;
pub mod error;
pub mod fault;
pub mod lock;
pub mod lxc;
pub mod net;
pub mod node;
pub mod pct;
pub mod pvesh;
pub mod pveversion;
pub mod sig;
pub mod storage;
pub mod task;
pub mod util;

// --- engineer C's modules (pveam, pvesm, vzdump, pct restore) ---
pub mod prune;
pub mod pveam;
pub mod pvesm;
pub mod restore;
pub mod vzdump;
// ---------------------------------------------------------------

use std::io::Write;

use error::{PveError, Result};
use node::Node;

/// The tools this binary stands in for (and the symlinks `install-links` makes).
pub const TOOLS: &[&str] = &["pct", "pveam", "vzdump", "pvesm", "pvesh", "pveversion"];

/// Run the binary with this process's arguments and return the exit status.
pub fn main_exit_code() -> i32 {
    sig::default_sigpipe();
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let code = match run(&argv) {
        Ok(()) => 0,
        Err(e) => {
            let (text, code) = e.render();
            if !text.is_empty() {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
            code
        }
    };
    let _ = std::io::stdout().flush();
    code
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

const USAGE: &str = "USAGE: pve-sandbox <pct|pveam|vzdump|pvesm|pvesh|pveversion> [ARGS...]\n       pve-sandbox up|down|status\n       pve-sandbox install-links <dir>";

/// Dispatch `argv` (`argv[0]` included) to a tool or admin verb.
pub fn run(argv: &[String]) -> Result<()> {
    let prog = argv.first().map(|a| basename(a)).unwrap_or("pve-sandbox");
    let (tool, args): (&str, &[String]) = if TOOLS.contains(&prog) {
        (prog, argv.get(1..).unwrap_or(&[]))
    } else {
        match argv.get(1) {
            Some(t) => (t.as_str(), argv.get(2..).unwrap_or(&[])),
            None => {
                return Err(PveError::Exit {
                    code: 255,
                    msg: USAGE.into(),
                })
            }
        }
    };

    // Admin verbs: never subject to fault injection.
    match tool {
        "install-links" => return install_links(args),
        "up" => return net::up(&Node::from_env()?),
        "down" => return net::down(&Node::from_env()?),
        "status" => return net::status(&Node::from_env()?),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => {}
    }
    if !TOOLS.contains(&tool) {
        return Err(PveError::Exit {
            code: 255,
            msg: format!("pve-sandbox: unknown tool '{tool}'\n{USAGE}"),
        });
    }

    let node = Node::from_env()?;
    fault::apply(&node, tool, args.first().map(String::as_str))?;

    match tool {
        "pct" => {
            // `pct restore` belongs to engineer C.
            if args.first().map(String::as_str) == Some("restore") {
                return restore::main(&node, &args[1..]);
            }
            pct::main(&node, args)
        }
        "pvesh" => pvesh::main(&node, args),
        "pveversion" => pveversion::main(&node, args),
        // --- engineer C ---
        "pveam" => pveam::main(&node, args),
        "pvesm" => pvesm::main(&node, args),
        "vzdump" => vzdump::main(&node, args),
        // ------------------
        _ => Err(PveError::Exit {
            code: 255,
            msg: USAGE.into(),
        }),
    }
}

/// `pve-sandbox install-links <dir>`: symlink every tool name to this binary.
fn install_links(args: &[String]) -> Result<()> {
    let [dir] = args else {
        return Err(PveError::Exit {
            code: 255,
            msg: "USAGE: pve-sandbox install-links <dir>".into(),
        });
    };
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).map_err(|e| PveError::io("create dir", dir, e))?;
    let exe = std::env::current_exe().map_err(|e| PveError::io("locate", "/proc/self/exe", e))?;
    for t in TOOLS {
        let link = dir.join(t);
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link).map_err(|e| PveError::io("remove", &link, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PveError::io("stat", &link, e)),
        }
        std::os::unix::fs::symlink(&exe, &link).map_err(|e| PveError::io("symlink", &link, e))?;
    }
    Ok(())
}
