//! The API socket: binding it ourselves, or taking it from systemd.
//!
//! What this module owns:
//! - [`bind`]: the socket file at `[api] socket`, with stale-socket handling
//!   (a live daemon on it → refuse; a dead socket file → replace), mode and
//!   group set before the first `accept`, parent directory created 0755;
//! - [`from_systemd`]: a socket handed over by socket activation
//!   (`LISTEN_FDS`/`LISTEN_PID`, fd 3), verified to be a listening Unix
//!   stream socket.
//!
//! Invariants: a path that exists and is not a socket is never removed; a
//! socket someone answers on is never removed.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Mode of the socket file: owner (root) and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why the API socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket.
    #[error("another 1ldd is listening on {}; stop it first (systemctl stop 1ld)", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket.
    #[error("{} exists and is not a socket; remove it or change `[api] socket`", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The configured group does not exist.
    #[error(
        "group '{group}' (`[api] group`) does not exist; create it with \
         `groupadd --system {group}` or set `[api] group` in the config"
    )]
    NoSuchGroup {
        /// The group name.
        group: String,
    },
    /// A filesystem or socket call failed.
    #[error("API socket {}: cannot {what}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The descriptor systemd handed over is not usable.
    #[error("socket activation: {0}; check the ListenStream= of 1ld.socket")]
    Activation(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the API socket at `path`: parent directory created 0755 if
/// missing, a stale socket file replaced, the socket chowned to `group`
/// and set to `mode` before it is handed out. Must run inside a Tokio runtime.
///
/// Refuses when another process answers on `path`
/// ([`SocketError::InUse`]), when `path` is something other than a socket,
/// and when `group` does not exist (with how to create it).
pub fn bind(path: &Path, group: &str, mode: u32) -> Result<UnixListener, SocketError> {
    let gid = match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => g.gid,
        Ok(None) => {
            return Err(SocketError::NoSuchGroup {
                group: group.to_string(),
            })
        }
        Err(e) => {
            return Err(SocketError::Io {
                what: "look up the group",
                path: path.to_path_buf(),
                source: e.into(),
            })
        }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(io_err("create its directory", parent))?;
    }
    remove_stale(path)?;

    let std_listener =
        std::os::unix::net::UnixListener::bind(path).map_err(io_err("bind", path))?;
    // Until chown/chmod below the file has the umask's mode (no group or
    // other write bit with the daemon's 022), so nobody else can connect yet.
    nix::unistd::chown(path, None, Some(gid))
        .map_err(|e| io_err("set its group", path)(e.into()))?;
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(io_err("set its mode", path))?;
    std_listener
        .set_nonblocking(true)
        .map_err(io_err("make it non-blocking", path))?;
    UnixListener::from_std(std_listener).map_err(io_err("register it with the runtime", path))
}

/// Removes a socket file nobody answers on; refuses a live one or a non-socket.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect it", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "removing a stale API socket");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("remove the stale socket", path)(e)),
            }
        }
    }
}

/// The listening socket systemd passed (socket activation), if any.
///
/// Reads `LISTEN_PID`/`LISTEN_FDS` (they must name this process), takes
/// fd 3, checks that it is a listening Unix stream socket, makes it
/// non-blocking, and unsets `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` so children do not inherit them. `Ok(None)`: not
/// socket-activated. Call once, early, inside the Tokio runtime.
pub fn from_systemd() -> Result<Option<UnixListener>, SocketError> {
    let mut fds = sd_notify::listen_fds_with_names(true)
        .map_err(|e| SocketError::Activation(format!("bad LISTEN_FDS/LISTEN_PID: {e}")))?;
    let Some((fd, name)) = fds.next() else {
        return Ok(None);
    };
    if fds.next().is_some() {
        tracing::warn!("socket activation passed more than one socket; using the first");
    }
    let owned = take_fd(fd)?;
    check_listening_unix_stream(&owned)?;
    let std_listener = std::os::unix::net::UnixListener::from(owned);
    let path = std_listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_default();
    std_listener
        .set_nonblocking(true)
        .map_err(|e| SocketError::Activation(format!("cannot make fd {fd} non-blocking: {e}")))?;
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| SocketError::Activation(format!("cannot register fd {fd}: {e}")))?;
    tracing::info!(fd, name, path = %path.display(), "using the socket passed by systemd");
    Ok(Some(listener))
}

/// Takes ownership of a descriptor passed by systemd.
#[allow(unsafe_code)]
fn take_fd(fd: std::os::fd::RawFd) -> Result<std::os::fd::OwnedFd, SocketError> {
    use std::os::fd::FromRawFd;
    // Only descriptors systemd documents as passed (3 .. 3+LISTEN_FDS, for
    // this pid) reach here; make sure the number is open before owning it.
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
        .map_err(|e| SocketError::Activation(format!("fd {fd} is not open: {e}")))?;
    // SAFETY: `fd` is open (checked above), was handed to this process by the
    // service manager for it to own (sd_listen_fds(3)), and is taken exactly
    // once: `listen_fds_with_names(true)` unset LISTEN_FDS, so no later call
    // yields it again. Nothing else in the process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn check_listening_unix_stream(fd: &std::os::fd::OwnedFd) -> Result<(), SocketError> {
    use nix::sys::socket::{
        getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let ty = getsockopt(fd, sockopt::SockType)
        .map_err(|e| SocketError::Activation(format!("fd 3 is not a socket: {e}")))?;
    if ty != SockType::Stream {
        return Err(SocketError::Activation(format!(
            "fd 3 is a {ty:?} socket, not a stream socket"
        )));
    }
    let addr: UnixAddr = getsockname(fd.as_raw_fd())
        .map_err(|e| SocketError::Activation(format!("fd 3: getsockname: {e}")))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(SocketError::Activation("fd 3 is not a Unix socket".into()));
    }
    let listening = getsockopt(fd, sockopt::AcceptConn)
        .map_err(|e| SocketError::Activation(format!("fd 3: SO_ACCEPTCONN: {e}")))?;
    if !listening {
        return Err(SocketError::Activation("fd 3 is not listening".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn my_group() -> String {
        nix::unistd::Group::from_gid(nix::unistd::getegid())
            .ok()
            .flatten()
            .map(|g| g.name)
            .expect("own group has a name")
    }

    #[tokio::test]
    async fn binds_with_mode_and_replaces_a_dead_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/1ld/1ld.sock");
        let l = bind(&path, &my_group(), SOCKET_MODE).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o755);

        // Live: refused, naming the path and what to do.
        let e = bind(&path, &my_group(), SOCKET_MODE).unwrap_err();
        assert!(matches!(e, SocketError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("systemctl stop 1ld"), "{e}");

        // Dead (listener dropped, file left behind): replaced.
        drop(l);
        assert!(path.exists());
        let _l = bind(&path, &my_group(), SOCKET_MODE).unwrap();
    }

    #[tokio::test]
    async fn refuses_a_non_socket_and_a_missing_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1ld.sock");
        std::fs::write(&path, b"not a socket").unwrap();
        let e = bind(&path, &my_group(), SOCKET_MODE).unwrap_err();
        assert!(matches!(e, SocketError::NotASocket { .. }), "{e}");
        assert!(path.exists(), "a non-socket is never removed");

        let e = bind(
            &dir.path().join("x.sock"),
            "no-such-group-1ld-test",
            SOCKET_MODE,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[api] group") && msg.contains("groupadd"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn not_socket_activated_without_listen_pid() {
        // The test process was not started by systemd with LISTEN_PID = its pid.
        if std::env::var_os("LISTEN_PID").is_none() {
            assert!(from_systemd().unwrap().is_none());
        }
    }
}
