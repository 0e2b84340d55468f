//! `exec`: a new process in a running container. Its namespaces are joined with setns(2)
//! through /proc/PID/ns/* of the container's PID 1, and its root is PID 1's root (entered
//! with fchdir and chroot, which holds for pivot_root and `--chroot` containers alike); then
//! the user, the capabilities and the workdir as for the first process.
//!
//! The PID namespace is joined by the caller before it clones (setns of a PID namespace
//! applies to the children made after it), the others by the clone itself.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;

use super::syscall::Syscall;
use super::{caps, process, step, Failure, Spec};

/// The namespaces the clone joins, in runc's order (the mount namespace last: it changes what
/// paths mean).
pub const JOIN: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Open handles on a running container's PID 1: its namespaces and its root.
pub struct Target {
    /// The container's user namespace when it is not the caller's (a rootless container):
    /// joined before every other, which it owns.
    pub user_ns: Option<File>,
    pub pid_ns: File,
    pub ns: Vec<(File, CloneFlags)>,
    pub root: File,
}

impl Target {
    pub fn open(pid: i32) -> Result<Target> {
        let p = |rel: &str| format!("/proc/{pid}/{rel}");
        let open = |rel: &str| File::open(p(rel)).with_context(|| format!("open {}", p(rel)));
        let mut ns = Vec::new();
        for (name, flag) in JOIN {
            ns.push((open(&format!("ns/{name}"))?, *flag));
        }
        let user = open("ns/user")?;
        let user_ns = (!super::userns::same_ns(user.as_raw_fd(), "user")).then_some(user);
        Ok(Target {
            user_ns,
            pid_ns: open("ns/pid")?,
            ns,
            // O_PATH: a rootless container's root is served only to its user namespace,
            // which the clone joins before it enters the root through this fd.
            root: {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                    .open(p("root"))
                    .with_context(|| format!("open {}", p("root")))?
            },
        })
    }

    fn fds(&self) -> Vec<(RawFd, CloneFlags)> {
        self.ns.iter().map(|(f, fl)| (f.as_raw_fd(), *fl)).collect()
    }
}

/// In the caller, before the clone: the container's user namespace first (a rootless
/// container's; the caller must have one thread), then its PID namespace, which children
/// made from now on are in.
pub fn join_pid(sys: &dyn Syscall, t: &Target) -> Result<(), Failure> {
    if let Some(u) = &t.user_ns {
        step(sys.setns(u.as_raw_fd(), CloneFlags::CLONE_NEWUSER), || {
            "join the container's user namespace".into()
        })?;
    }
    step(
        sys.setns(t.pid_ns.as_raw_fd(), CloneFlags::CLONE_NEWPID),
        || "join the container's pid namespace".into(),
    )
}

/// In the clone: the other namespaces, the root, the user and capabilities; the command to
/// exec, resolved in the container.
pub fn enter(
    sys: &dyn Syscall,
    ns: &[(RawFd, CloneFlags)],
    root: RawFd,
    spec: &Spec,
) -> Result<process::Command, Failure> {
    for (fd, flag) in ns {
        let name = JOIN.iter().find(|(_, f)| f == flag).map_or("?", |(n, _)| n);
        step(sys.setns(*fd, *flag), || {
            format!("join the container's {name} namespace")
        })?;
    }
    step(sys.fchdir(root), || "enter the container's root".into())?;
    step(sys.chroot(Path::new(".")), || {
        "enter the container's root".into()
    })?;
    let user = process::resolve_user(sys, spec.user.as_deref())?;
    if let Some(ns) = &spec.userns {
        ns.check_user(user.uid, user.gid)?;
    }
    let cmd = process::command(sys, spec, &user)?;
    caps::bounding(sys, spec.caps)?;
    process::switch_user(
        sys,
        &user,
        spec.userns.as_ref().is_none_or(|n| n.setgroups()),
    )?;
    caps::apply(sys, spec.caps, user.uid, spec.no_new_privileges)?;
    step(sys.chdir(&spec.cwd), || {
        format!("chdir to workdir {}", spec.cwd.display())
    })?;
    step(sys.parent_death_signal(libc::SIGKILL), || {
        "set the parent death signal".into()
    })?;
    Ok(cmd)
}

/// The clone's whole life: [`enter`], then exec; a failure is reported and exits.
pub fn start(t: &Target, spec: &Spec, io: &super::tty::Io, report: RawFd) -> ! {
    let sys = super::syscall::Linux;
    let fail = |f: Failure| -> ! {
        process::report(report, &f);
        unsafe { libc::_exit(f.code) }
    };
    let cmd = match enter(&sys, &t.fds(), t.root.as_raw_fd(), spec) {
        Ok(c) => c,
        Err(f) => fail(f),
    };
    if let Err(f) = super::tty::console(io) {
        fail(f)
    }
    super::syscall::cloexec_from_3();
    fail(process::exec(&sys, &cmd))
}
