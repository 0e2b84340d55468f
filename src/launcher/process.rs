//! The container's process: its user (UID[:GID] or names from the container's /etc/passwd and
//! /etc/group), its environment as Docker completes it, the command looked up in its PATH,
//! and the exec, with Docker's exit codes when it cannot happen (126 not executable, 127 not
//! found).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::syscall::Syscall;
use super::{step, Failure, Spec, EXIT_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};

/// Docker's PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set with setgroups(2).
    pub groups: Vec<u32>,
    pub home: String,
}

/// A resolved command: the file to exec, argv and the environment.
#[derive(Debug, Clone)]
pub struct Command {
    pub path: PathBuf,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
}

fn read_text(sys: &dyn Syscall, p: &str) -> String {
    sys.read(Path::new(p))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// (name, uid, gid, home) of each /etc/passwd line.
fn passwd(text: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        Some((
            f.first()?.to_owned(),
            f.get(2)?.parse().ok()?,
            f.get(3)?.parse().ok()?,
            *f.get(5)?,
        ))
    })
}

/// (name, gid, members) of each /etc/group line.
fn group(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect());
        Some((
            f.first()?.to_owned(),
            f.get(2)?.parse().ok()?,
            members.unwrap_or_default(),
        ))
    })
}

/// `-u` as runc reads it: a user or uid, optionally `:group` or `:gid`. A numeric uid needs no
/// passwd entry (its gid is then 0 unless given); a name must have one. Supplementary groups
/// are the primary group and every group that lists the user by name.
pub fn resolve_user(sys: &dyn Syscall, spec: Option<&str>) -> Result<User, Failure> {
    let spec = spec.unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let pw = read_text(sys, "/etc/passwd");
    let entry = passwd(&pw).find(|(name, uid, _, _)| match u.parse::<u32>() {
        Ok(n) => *uid == n,
        Err(_) => *name == u,
    });
    let (name, uid, pgid, home) = match (entry, u.parse::<u32>()) {
        (Some((name, uid, gid, home)), _) => (Some(name), uid, gid, home.to_string()),
        (None, Ok(n)) => (None, n, 0, "/".to_string()),
        (None, Err(_)) => {
            return Err(Failure::setup(format!(
                "unable to find user {u}: no matching entries in passwd file"
            )))
        }
    };
    let gr = read_text(sys, "/etc/group");
    let gid = match g {
        None => pgid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group(&gr)
                .find(|(n, _, _)| *n == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| {
                    Failure::setup(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
    };
    let mut groups = vec![gid];
    if let Some(name) = name {
        for (_, id, members) in group(&gr) {
            if members.contains(&name) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        groups,
        home,
    })
}

/// Groups, then gid, then uid (the order in which each call is still permitted); the
/// permitted capabilities are kept across the uid change so [`super::caps::apply`] decides.
///
/// Where the user namespace denies setgroups(2) (a rootless container without subordinate
/// ids) the groups stay as they are, and only one group is mapped anyway.
pub fn switch_user(sys: &dyn Syscall, u: &User, setgroups: bool) -> Result<(), Failure> {
    step(sys.keep_caps(true), || "keep capabilities".into())?;
    if setgroups {
        step(sys.setgroups(&u.groups), || {
            format!("setgroups {:?}", u.groups)
        })?;
    }
    step(sys.setgid(u.gid), || format!("setgid {}", u.gid))?;
    step(sys.setuid(u.uid), || format!("setuid {}", u.uid))?;
    step(sys.keep_caps(false), || "keep capabilities".into())
}

/// The environment Docker gives: what was asked, with PATH, HOSTNAME and HOME added when
/// missing.
pub fn environment(spec: &Spec, user: &User) -> Vec<String> {
    let has = |k: &str| spec.env.iter().any(|e| e.split('=').next() == Some(k));
    let mut env = Vec::new();
    if !has("PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    env.extend(spec.env.iter().cloned());
    if !has("HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

fn cstring(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::setup(format!("{s:?} contains a NUL byte")))
}

/// The command with its file found: a name with a slash is used as it is, any other is looked
/// up in the container's PATH (as execvp does, skipping what is not executable).
pub fn command(sys: &dyn Syscall, spec: &Spec, user: &User) -> Result<Command, Failure> {
    let env = environment(spec, user);
    let name = spec
        .args
        .first()
        .ok_or_else(|| Failure::setup("no command specified"))?;
    let not_found = |what: String| Failure {
        code: EXIT_NOT_FOUND,
        msg: format!("exec: {name:?}: {what}"),
    };
    let denied = || Failure {
        code: EXIT_NOT_EXECUTABLE,
        msg: format!("exec: {name:?}: permission denied"),
    };
    let path = if name.contains('/') {
        let p = PathBuf::from(name);
        match sys.executable(&p) {
            Ok(()) => p,
            Err(Errno::EACCES) => return Err(denied()),
            Err(e) => {
                return Err(not_found(format!(
                    "stat {name}: {}",
                    e.desc().to_lowercase()
                )))
            }
        }
    } else {
        let path_var = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let mut saw_denied = false;
        let mut found = None;
        for dir in path_var.split(':').filter(|d| !d.is_empty()) {
            let p = Path::new(dir).join(name);
            match sys.executable(&p) {
                Ok(()) => {
                    found = Some(p);
                    break;
                }
                Err(Errno::EACCES) => saw_denied = true,
                Err(_) => {}
            }
        }
        match found {
            Some(p) => p,
            None if saw_denied => return Err(denied()),
            None => return Err(not_found("executable file not found in $PATH".into())),
        }
    };
    Ok(Command {
        path,
        argv: spec
            .args
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<_, _>>()?,
        env: env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?,
    })
}

/// execve, and the failure it ended in if it returns.
pub fn exec(sys: &dyn Syscall, cmd: &Command) -> Failure {
    let e = sys.execve(&cmd.path, &cmd.argv, &cmd.env);
    let name = cmd
        .argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = match e {
        // A missing interpreter (#!) or loader.
        Errno::ENOENT => EXIT_NOT_FOUND,
        Errno::EACCES | Errno::ENOEXEC | Errno::EPERM | Errno::ETXTBSY | Errno::EISDIR => {
            EXIT_NOT_EXECUTABLE
        }
        _ => EXIT_FAILED,
    };
    Failure {
        code,
        msg: format!("exec: {name:?}: {}", e.desc().to_lowercase()),
    }
}

/// Write a failure to the parent: "CODE MESSAGE" (one write; the pipe is the parent's only
/// way to learn why the process did not start).
pub fn report(fd: RawFd, f: &Failure) {
    let line = format!("{} {}", f.code, f.msg.replace('\n', " "));
    unsafe { libc::write(fd, line.as_ptr() as *const libc::c_void, line.len()) };
}

/// The parent's side of [`report`].
pub fn parse_report(text: &str) -> Option<Failure> {
    let (code, msg) = text.trim().split_once(' ')?;
    Some(Failure {
        code: code.parse().ok()?,
        msg: msg.to_string(),
    })
}
