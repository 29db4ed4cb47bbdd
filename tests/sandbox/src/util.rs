//! Small shared helpers: subprocess plumbing and randomness.

use std::io::Read;
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::error::{PveError, Result};

/// The command line of `cmd`, space-joined (for messages and logs only).
pub fn cmdline(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Map a non-success status to PVE's `command '...' failed: exit code N`.
pub fn check_status(argv: &str, status: ExitStatus) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Ok(());
    }
    let detail = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("got signal {s}"),
        _ => "unknown status".into(),
    };
    Err(PveError::Command {
        argv: argv.to_string(),
        detail,
    })
}

/// Run a command with `LC_ALL=C`, capturing stdout and stderr; fails on a
/// non-zero exit with the stderr text appended.
pub fn run_capture(cmd: &mut Command) -> Result<Output> {
    let (argv, out) = run_output(cmd)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return match check_status(&argv, out.status) {
            Err(PveError::Command { argv, detail }) => Err(PveError::Command {
                argv,
                detail: if err.is_empty() {
                    detail
                } else {
                    format!("{detail}: {err}")
                },
            }),
            other => other.map(|_| out),
        };
    }
    Ok(out)
}

/// Run a command with `LC_ALL=C` and no stdin, capturing its output whatever
/// the exit status; also returns its command line (for [`check_status`]).
pub fn run_output(cmd: &mut Command) -> Result<(String, Output)> {
    let argv = cmdline(cmd);
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PveError::Command {
            argv: argv.clone(),
            detail: e.to_string(),
        })?;
    Ok((argv, out))
}

/// Run a command quietly; true if it exited 0 (spawn failures count as false).
pub fn run_ok(cmd: &mut Command) -> bool {
    cmd.env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `n` random bytes from `/dev/urandom` (falls back to a time/pid mix).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    buf
}

/// `8G`, `512M`, `1024K`, `10T`, plain bytes, as bytes. Lenient (any case,
/// fractions); unlike [`crate::conf::parse_size`] it does not validate.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.parse().ok()?;
    Some((v * mult as f64) as u64)
}

/// A random MAC with the Proxmox prefix: `BC:24:11:XX:XX:XX`.
pub fn random_mac() -> String {
    let r = random_bytes(3);
    format!("BC:24:11:{:02X}:{:02X}:{:02X}", r[0], r[1], r[2])
}
