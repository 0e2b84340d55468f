//! The launcher: from a mounted root filesystem to a process running inside it, in its own
//! namespaces, with a minimal /dev, Docker's masks, a hostname, a user and a capability set.
//!
//! It needs only a mounted path and never looks at how that tree is served (src/union/ is not
//! imported). Every kernel call goes through [`syscall::Syscall`], and [`enter`] is the one
//! place that fixes the order of the steps, as runc's and youki's init do:
//!
//! namespaces → rootfs mounts → /dev → read-only root → pivot_root (or chroot) → masked and read-only paths →
//! hostname → bounding set → user → capabilities → workdir → parent death signal → exec.
//!
//! The caller ([`crate::container`]) clones the process with a new PID namespace
//! ([`namespaces::clone_flags`]), puts it in its cgroups, and then lets it run [`start`].

pub mod caps;
pub mod cgroups;
pub mod clone;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod init;
pub mod namespaces;
pub mod pivot;
pub mod process;
pub mod rootfs;
pub mod syscall;
pub mod tty;
pub mod userns;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use syscall::Syscall;

/// Docker's network modes that need no network setup of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only `lo`, up.
    None,
    /// The host's network namespace.
    Host,
}

/// What to run and how: everything the launcher needs, decided before the clone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// The mounted root filesystem (an absolute path in the caller's mount namespace).
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    /// KEY=VALUE, in order; PATH, HOSTNAME and HOME are added as Docker adds them.
    pub env: Vec<String>,
    /// The working directory inside the container (made if missing, as Docker does).
    pub cwd: PathBuf,
    /// `-u`: UID[:GID] or NAME[:GROUP]; None is root.
    pub user: Option<String>,
    pub hostname: String,
    pub network: Network,
    /// Enter the root with chroot(2) instead of pivot_root(2).
    pub chroot: bool,
    /// Run a small reaping init as PID 1, with the command as its child.
    pub init: bool,
    /// The capability set (bit mask), from [`caps::resolve`].
    pub caps: u64,
    pub no_new_privileges: bool,
    /// A terminal to bind at /dev/console (kept for records made before `tty`).
    pub console: Option<PathBuf>,
    /// `-t`: the container's pty is made in its own devpts while /dev is set up, and its
    /// slave is bound at /dev/console, as Docker does (without -t there is no console).
    #[serde(default)]
    pub tty: bool,
    /// `--read-only`: the root is mounted read-only, all but `writable`.
    #[serde(default)]
    pub read_only: bool,
    /// Paths inside the container that stay writable under `read_only` (its read-write
    /// volumes, binds and tmpfs), outer ones first.
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// A rootless container's user namespace (made by its monitor, which the process is
    /// cloned from): what it maps decides what /dev and /sys can be and whether
    /// setgroups(2) is allowed.
    #[serde(default)]
    pub userns: Option<userns::UserNs>,
}

/// Why the container's process did not start: Docker's exit code for it and one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 125: strata failed; 126: the command cannot be executed; 127: it was not found.
    pub code: i32,
    pub msg: String,
}

pub const EXIT_FAILED: i32 = 125;
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

impl Failure {
    pub fn setup(msg: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_FAILED,
            msg: msg.into(),
        }
    }
}

/// Wrap an errno from step `what` as strata's failure (exit 125).
pub fn step<T>(
    r: Result<T, nix::errno::Errno>,
    what: impl FnOnce() -> String,
) -> Result<T, Failure> {
    r.map_err(|e| Failure::setup(format!("{}: {}", what(), e.desc())))
}

/// Set the container up in the calling process, up to (not including) the exec: the process
/// is then in its namespaces and root, as its user, with its capabilities, in its workdir.
/// Returns the resolved command to exec.
pub fn enter(sys: &dyn Syscall, spec: &Spec) -> Result<process::Command, Failure> {
    namespaces::enter(sys, spec)?;
    rootfs::prepare(sys, spec)?;
    rootfs::dev(sys, spec)?;
    rootfs::read_only(sys, spec)?;
    pivot::enter_root(sys, spec)?;
    rootfs::mask(sys)?;
    step(sys.sethostname(&spec.hostname), || {
        format!("sethostname {}", spec.hostname)
    })?;
    let user = process::resolve_user(sys, spec.user.as_deref())?;
    if let Some(ns) = &spec.userns {
        ns.check_user(user.uid, user.gid)?;
    }
    let cmd = process::command(sys, spec, &user)?;
    step(sys.mkdir_all(&spec.cwd, 0o755), || {
        format!("workdir {}", spec.cwd.display())
    })?;
    caps::bounding(sys, spec.caps)?;
    tty::give_console(user.uid);
    process::switch_user(
        sys,
        &user,
        spec.userns.as_ref().is_none_or(|n| n.setgroups()),
    )?;
    caps::apply(sys, spec.caps, user.uid, spec.no_new_privileges)?;
    step(sys.chdir(&spec.cwd), || {
        format!("chdir to workdir {}", spec.cwd.display())
    })?;
    // Set again: the kernel clears it when the credentials change (the user, the dropped
    // capabilities), and the container must not outlive its monitor.
    step(sys.parent_death_signal(libc::SIGKILL), || {
        "set the parent death signal".into()
    })?;
    Ok(cmd)
}

/// The whole start, in the cloned child: [`enter`], then the exec (behind the init with
/// `--init`). Never returns: a failure is written to `report` (one line, read by the parent
/// until it is closed by a successful exec) and the process exits with the failure's code.
pub fn start(spec: &Spec, io: &tty::Io, report: std::os::fd::RawFd) -> ! {
    let sys = syscall::Linux;
    let fail = |f: Failure| -> ! {
        process::report(report, &f);
        unsafe { libc::_exit(f.code) }
    };
    let cmd = match enter(&sys, spec) {
        Ok(c) => c,
        Err(f) => fail(f),
    };
    if let Err(f) = tty::console(io) {
        fail(f)
    }
    syscall::cloexec_from_3();
    if spec.init {
        init::run(&sys, &cmd, report)
    }
    fail(process::exec(&sys, &cmd))
}

#[cfg(test)]
mod tests;
