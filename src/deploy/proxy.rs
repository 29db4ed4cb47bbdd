//! The optional nginx reverse proxy inside a deployment's container: port 80
//! (the manifest's `[proxy] port`) in front of the service port, `/health`
//! and the status path passed through.
//!
//! The container has no network, so nginx comes from the host: the `.deb`
//! files of `[apps] proxy_packages` (nginx plus exactly what the Debian 12
//! standard template lacks for it) live in `[apps] packages_dir`. When one is
//! missing, [`ensure_packages`] runs `apt-get download` on the host (apt
//! checks each file against its signed index), verifies every file with
//! `dpkg-deb` and records its SHA-256 in `SHA256SUMS`; a cached file whose
//! digest no longer matches is refused. [`install`] pushes the files with
//! `pct push` and installs them with `dpkg -i` (argv, never a shell), then
//! the rendered site; [`start`] enables and restarts nginx.
//!
//! Invariants: nothing here runs a shell; a deployment with the proxy carries
//! the tag [`TAG`] (recorded in its spec, so the live probe knows); nginx
//! lives only inside the container, so destroying the container (or the
//! deploy's compensation) removes it with everything else; the host cache is
//! a cache and is kept.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::install::{exec, InstallError};
use crate::apps::manifest::{HealthDef, Manifest, ProbeKind};
use crate::error::Error;
use crate::pve::pct::FileAttrs;
use crate::pve::Pve;

/// The tag of a container whose deployment has the proxy.
pub const TAG: &str = "1ld-proxy";

/// `[apps] proxy_packages` by default: nginx and the one package of its
/// dependencies the Debian 12 standard template lacks (`nginx-common`;
/// libc6, libcrypt1, libpcre2-8-0, libssl3, zlib1g, iproute2 and debconf are
/// in the template).
pub const DEFAULT_PACKAGES: &[&str] = &["nginx-common", "nginx"];

/// The nginx site 1ld renders, inside the container.
pub const CONF_PATH: &str = "/etc/nginx/conf.d/1ld-proxy.conf";

/// The Debian default site, removed (it also wants port 80).
pub const DEFAULT_SITE: &str = "/etc/nginx/sites-enabled/default";

/// Where the `.deb` files wait inside the container until `dpkg -i`.
pub const CT_DEB_DIR: &str = "/root/1ld-debs";

/// The digests file in `[apps] packages_dir`.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// How long `apt-get download` may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a `dpkg-deb` check may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// One host fetch at a time (two deploys with the proxy share the cache).
static FETCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the proxy of one deployment looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// The port nginx listens on.
    pub port: u16,
    /// The service port it forwards to, on 127.0.0.1.
    pub upstream_port: u16,
    /// Paths passed through explicitly (`/health`, the status path).
    pub passthrough: Vec<String>,
    /// Also listen on IPv6.
    pub ipv6: bool,
    /// The packages to install (`[apps] proxy_packages`).
    pub packages: Vec<String>,
}

/// The health probe of a deployment of `m` whose container carries `tags`:
/// through the proxy when it has one ([`TAG`]), else the manifest's own.
pub fn deployed_health(m: &Manifest, tags: &[String]) -> HealthDef {
    if tags.iter().any(|t| t == TAG) {
        if let Some(p) = ProxySpec::of(m, false) {
            return p.health(&m.health);
        }
    }
    m.health.clone()
}

impl ProxySpec {
    /// The proxy of `m` for a deployment, or `None` when the app has no port
    /// to put it in front of.
    pub fn of(m: &Manifest, ipv6: bool) -> Option<Self> {
        let upstream_port = m.proxy_upstream()?;
        let health = (m.health.kind == ProbeKind::Http)
            .then_some(m.health.path.as_deref())
            .flatten();
        let mut passthrough: Vec<String> = Vec::new();
        for p in [health, m.health.status_path.as_deref()]
            .into_iter()
            .flatten()
        {
            if !passthrough.iter().any(|x| x == p) {
                passthrough.push(p.to_string());
            }
        }
        Some(Self {
            port: m.proxy.port,
            upstream_port,
            passthrough,
            ipv6,
            packages: DEFAULT_PACKAGES.iter().map(|p| (*p).to_string()).collect(),
        })
    }

    /// The health probe as seen through the proxy: an HTTP or TCP probe of
    /// the service port goes to the proxy's port instead.
    pub fn health(&self, def: &HealthDef) -> HealthDef {
        let mut d = def.clone();
        if matches!(d.kind, ProbeKind::Http | ProbeKind::Tcp) && d.port == Some(self.upstream_port)
        {
            d.port = Some(self.port);
        }
        d
    }

    /// The nginx site for deployment `name`.
    pub fn render(&self, name: &str) -> String {
        let up = format!("http://127.0.0.1:{}", self.upstream_port);
        let mut s = format!(
            "# Rendered by 1ld for deployment {name}: port {port} in front of 127.0.0.1:{upstream}.\n\
             # Do not edit here: 1ld owns this file.\n\
             server {{\n    listen {port} default_server;\n",
            port = self.port,
            upstream = self.upstream_port,
        );
        if self.ipv6 {
            s.push_str(&format!("    listen [::]:{} default_server;\n", self.port));
        }
        s.push_str("    server_name _;\n    client_max_body_size 8m;\n\n");
        let common = "        proxy_http_version 1.1;\n\
                      \x20       proxy_set_header Host $host;\n\
                      \x20       proxy_set_header X-Real-IP $remote_addr;\n\
                      \x20       proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
                      \x20       proxy_set_header X-Forwarded-Proto $scheme;\n";
        for p in &self.passthrough {
            s.push_str(&format!(
                "    # Passed through unchanged (status code and body), not logged.\n    location = {p} {{\n        proxy_pass {up};\n{common}        access_log off;\n    }}\n\n"
            ));
        }
        s.push_str(&format!(
            "    location / {{\n        proxy_pass {up};\n{common}    }}\n}}\n"
        ));
        s
    }
}

/// Whether `p` is a Debian package name (`[a-z0-9][a-z0-9+.-]+`).
pub fn is_package_name(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(c))
}

/// A verified `.deb` in the host cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name (its `Package` field).
    pub name: String,
    /// Its `Version` field.
    pub version: String,
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

impl Package {
    /// The file's name.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Why the proxy's packages are not usable.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A host command failed.
    #[error("`{}` on the host exited {}: {}", argv.join(" "), code.map_or("by signal".to_string(), |c| c.to_string()), stderr.trim())]
    Command {
        /// The command.
        argv: Vec<String>,
        /// Its exit code.
        code: Option<i32>,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A host command could not run or did not end in time.
    #[error("`{}` on the host: {reason}", argv.join(" "))]
    Spawn {
        /// The command.
        argv: Vec<String>,
        /// Why.
        reason: String,
    },
    /// A file is not what it claims to be.
    #[error("{}: {reason}", path.display())]
    Verify {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A package is still missing after the download.
    #[error("package '{name}' is not in {} after `apt-get download`{hint}", dir.display())]
    Missing {
        /// The package.
        name: String,
        /// The cache.
        dir: PathBuf,
        /// What to do.
        hint: String,
    },
    /// Reading or writing the cache failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl From<PackageError> for Error {
    fn from(e: PackageError) -> Self {
        match e {
            PackageError::Io { .. } => Error::internal(e),
            _ => Error::dependency_down(e.to_string()),
        }
    }
}

async fn host_command(
    argv: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Vec<u8>, PackageError> {
    let owned = || argv.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let Some((prog, args)) = argv.split_first() else {
        return Err(PackageError::Spawn {
            argv: owned(),
            reason: "empty command".into(),
        });
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .env("LC_ALL", "C");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(PackageError::Spawn {
                argv: owned(),
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(PackageError::Spawn {
                argv: owned(),
                reason: format!("no result within {}s", timeout.as_secs()),
            })
        }
    };
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(PackageError::Command {
            argv: owned(),
            code: out.status.code(),
            stderr: super::install::tail(stderr.trim(), 10),
        })
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, PackageError> {
    let io = |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads `SHA256SUMS` (`<hex>  <file>` per line, as `sha256sum` writes).
pub fn read_sums(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(SUMS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (sum, file) = l.split_once("  ")?;
            (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (file.trim().to_string(), sum.to_ascii_lowercase()))
        })
        .collect()
}

fn write_sums(dir: &Path, sums: &BTreeMap<String, String>) -> Result<(), PackageError> {
    let text: String = sums
        .iter()
        .map(|(file, sum)| format!("{sum}  {file}\n"))
        .collect();
    let tmp = dir.join(format!(".{SUMS_FILE}.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join(SUMS_FILE)).map_err(io(&dir.join(SUMS_FILE)))
}

/// `dpkg-deb --field <file> Package Version`: the file is a well-formed
/// Debian package; returns its name and version.
pub async fn deb_fields(path: &Path) -> Result<(String, String), PackageError> {
    let p = path.display().to_string();
    let out = host_command(
        &["dpkg-deb", "--field", &p, "Package", "Version"],
        None,
        VERIFY_TIMEOUT,
    )
    .await
    .map_err(|e| PackageError::Verify {
        path: path.to_path_buf(),
        reason: format!("not a valid Debian package ({e})"),
    })?;
    let text = String::from_utf8_lossy(&out);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match (field("Package"), field("Version")) {
        (Some(n), Some(v)) => Ok((n, v)),
        _ => Err(PackageError::Verify {
            path: path.to_path_buf(),
            reason: "dpkg-deb shows no Package/Version field".into(),
        }),
    }
}

/// The verified packages in `dir`, by name. A file without a recorded digest
/// is verified and recorded; a file whose digest differs from the record
/// is an error (the cache was tampered with or corrupted: remove the file).
async fn scan(dir: &Path) -> Result<BTreeMap<String, Package>, PackageError> {
    let mut sums = read_sums(dir);
    let mut found = BTreeMap::new();
    let mut changed = false;
    let rd = std::fs::read_dir(dir).map_err(|source| PackageError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sha256 = sha256_file(&path)?;
        match sums.get(&file) {
            Some(recorded) if *recorded != sha256 => {
                return Err(PackageError::Verify {
                    path,
                    reason: format!(
                        "SHA-256 {sha256} differs from {recorded} recorded in {SUMS_FILE}; remove the file so it is fetched again"
                    ),
                })
            }
            Some(_) => {}
            None => {
                sums.insert(file.clone(), sha256.clone());
                changed = true;
            }
        }
        let (name, version) = deb_fields(&path).await?;
        found.insert(
            name.clone(),
            Package {
                name,
                version,
                path,
                sha256,
            },
        );
    }
    // Forget records of files that are gone.
    let before = sums.len();
    sums.retain(|f, _| dir.join(f).is_file());
    if changed || sums.len() != before {
        write_sums(dir, &sums)?;
    }
    Ok(found)
}

/// The verified `.deb` files of `names` from `dir` (created 0700 if
/// needed), downloading the missing ones with `apt-get download` on the
/// host first. `log` gets one line per package.
pub async fn ensure_packages(
    dir: &Path,
    names: &[String],
    log: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Package>, PackageError> {
    use std::os::unix::fs::DirBuilderExt;
    let _one = FETCH.lock().await;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PackageError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut have = scan(dir).await?;
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !have.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        log(&format!(
            "fetching {} on the host with apt-get download into {}",
            missing.join(", "),
            dir.display()
        ));
        // The cache is 0700 root: apt's `_apt` sandbox user could not write it.
        let mut argv = vec!["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root"];
        argv.extend(missing.iter().copied());
        host_command(&argv, Some(dir), FETCH_TIMEOUT).await?;
        have = scan(dir).await?;
    }
    let mut out = Vec::new();
    for n in names {
        let p = have.remove(n).ok_or_else(|| PackageError::Missing {
            name: n.clone(),
            dir: dir.to_path_buf(),
            hint: "; run `apt-get update` on the host, or put the .deb there (make debs)".into(),
        })?;
        log(&format!(
            "package {} {} ({}, sha256 {})",
            p.name,
            p.version,
            p.file_name(),
            p.sha256
        ));
        out.push(p);
    }
    Ok(out)
}

/// Pushes `packages` into the container, installs them with `dpkg -i`
/// (no network needed: every dependency is in the template or in the
/// list), removes the Debian default site and pushes `conf` as
/// [`CONF_PATH`], then checks it with `nginx -t`.
pub async fn install(
    pve: &Pve,
    vmid: u32,
    packages: &[Package],
    conf: &Path,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), InstallError> {
    exec(
        pve,
        vmid,
        &["install", "-d", "-m", "0700", "--", CT_DEB_DIR],
        &[],
    )
    .await?;
    let mut inside = Vec::new();
    for p in packages {
        let dest = format!("{CT_DEB_DIR}/{}_{}.deb", p.name, sanitize(&p.version));
        let attrs = FileAttrs {
            perms: Some(0o600),
            user: Some("root".into()),
            group: Some("root".into()),
        };
        pve.pct_push(vmid, &p.path, &dest, &attrs).await?;
        inside.push(dest);
    }
    log(&format!(
        "pushed {} package(s) to {CT_DEB_DIR}",
        packages.len()
    ));
    let mut argv = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "dpkg",
        "--force-confdef",
        "--force-confold",
        "-i",
        "--",
    ];
    argv.extend(inside.iter().map(String::as_str));
    exec(pve, vmid, &argv, &[]).await?;
    log(&format!(
        "installed {} with dpkg -i",
        packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    exec(
        pve,
        vmid,
        &["rm", "-rf", "--", CT_DEB_DIR, DEFAULT_SITE],
        &[],
    )
    .await?;
    let attrs = FileAttrs {
        perms: Some(0o644),
        user: Some("root".into()),
        group: Some("root".into()),
    };
    pve.pct_push(vmid, conf, CONF_PATH, &attrs).await?;
    exec(pve, vmid, &["nginx", "-t", "-q"], &[]).await?;
    log(&format!("pushed {CONF_PATH} (0644 root:root); nginx -t ok"));
    Ok(())
}

/// `systemctl enable nginx.service` and a restart (the package's postinst
/// started it with the default site).
pub async fn start(pve: &Pve, vmid: u32) -> Result<(), InstallError> {
    exec(pve, vmid, &["systemctl", "enable", "nginx.service"], &[]).await?;
    super::install::restart_unit(pve, vmid, "nginx.service").await
}

/// A version as a file-name part (`1:2.3+x` → `1_2.3+x`).
fn sanitize(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProxySpec {
        ProxySpec {
            port: 80,
            upstream_port: 8080,
            passthrough: vec!["/health".into(), "/status".into()],
            ipv6: false,
            packages: vec!["nginx-common".into(), "nginx".into()],
        }
    }

    #[test]
    fn the_site_proxies_to_the_service_port_and_passes_health_and_status() {
        let conf = spec().render("nb");
        assert!(conf.contains("listen 80 default_server;"), "{conf}");
        assert!(!conf.contains("[::]"), "{conf}");
        assert!(conf.contains("location = /health {"), "{conf}");
        assert!(conf.contains("location = /status {"), "{conf}");
        assert!(conf.contains("location / {"), "{conf}");
        assert_eq!(
            conf.matches("proxy_pass http://127.0.0.1:8080;").count(),
            3,
            "{conf}"
        );
        let mut s = spec();
        s.ipv6 = true;
        assert!(s.render("nb").contains("listen [::]:80 default_server;"));
    }

    #[test]
    fn a_deployment_with_the_proxy_tag_is_probed_through_it() {
        let catalog = crate::apps::Catalog::builtin();
        let m = &catalog.get("netbox-agent").expect("built-in").manifest;
        let with = deployed_health(m, &["1ld".into(), TAG.into()]);
        let without = deployed_health(m, &["1ld".into()]);
        assert_eq!(with.port, Some(m.proxy.port));
        assert_eq!(without.port, m.health.port);
        assert_ne!(with.port, without.port);
    }

    #[test]
    fn the_health_probe_goes_through_the_proxy() {
        let def = HealthDef {
            kind: ProbeKind::Http,
            port: Some(8080),
            path: Some("/health".into()),
            expect_status: vec![200],
            json_field: Some("status".into()),
            command: vec![],
            accept: vec![crate::api::HealthStatus::Healthy],
            timeout_s: 5,
            interval_ms: 100,
            status_path: None,
        };
        assert_eq!(spec().health(&def).port, Some(80));
        let mut other = def.clone();
        other.port = Some(9000);
        assert_eq!(spec().health(&other).port, Some(9000));
    }

    #[test]
    fn package_names_and_sums() {
        assert!(is_package_name("nginx-common") && is_package_name("libc6"));
        assert!(!is_package_name("x") && !is_package_name("-rf") && !is_package_name("a b"));
        assert!(!is_package_name("../x"));
        let dir = tempfile::tempdir().unwrap();
        let mut m = BTreeMap::new();
        m.insert("a.deb".to_string(), "ab".repeat(32));
        write_sums(dir.path(), &m).unwrap();
        assert_eq!(read_sums(dir.path()), m);
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        assert_eq!(
            sha256_file(&dir.path().join("f")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sanitize("1:2.3+deb12u1"), "1_2.3+deb12u1");
    }

    #[tokio::test]
    async fn a_tampered_cache_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x_1_all.deb"), b"not a deb").unwrap();
        let mut m = BTreeMap::new();
        m.insert("x_1_all.deb".to_string(), "00".repeat(32));
        write_sums(dir.path(), &m).unwrap();
        let e = scan(dir.path()).await.unwrap_err();
        assert!(e.to_string().contains("differs from"), "{e}");
        // Without a record it is checked with dpkg-deb, and refused.
        std::fs::remove_file(dir.path().join(SUMS_FILE)).unwrap();
        let e = scan(dir.path()).await.unwrap_err();
        assert!(e.to_string().contains("not a valid Debian package"), "{e}");
    }
}
