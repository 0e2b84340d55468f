//! Rootless containers: the user namespace an unprivileged caller's container lives in.
//!
//! The container's monitor makes it, as podman's rootless pause process does: the monitor
//! unshares a user namespace, a helper forked just before (so still outside, where the setuid
//! newuidmap/newgidmap work) writes its maps, and the monitor then unshares a mount namespace
//! owned by the new user namespace. Everything the monitor starts from there on lives inside:
//! the FUSE daemon of the container's root (so it mounts /dev/fuse itself, as root of the
//! namespace, and stores the container's owners through the mapping with CAP_CHOWN there) and
//! the container's PID 1 (whose PID, network, IPC, UTS, cgroup and mount namespaces are then
//! owned by this user namespace).
//!
//! The caller maps to root; with subordinate ids (/etc/subuid, /etc/subgid, the uidmap
//! package's helpers) they follow as 1, 2, ...; without them the caller alone is mapped, the
//! process writes its own maps and setgroups(2) is denied in the namespace, as `unshare -r`
//! does.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

/// One line of a uid_map or gid_map: `count` ids from `inside` map to ones from `outside`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The maps of a rootless container's user namespace, decided when it is made and kept, so
/// that its writable layer reads the same every time it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// The maps come from subordinate ids, written by newuidmap and newgidmap; otherwise the
    /// caller alone maps to root and setgroups(2) is denied.
    pub subordinate: bool,
}

fn in_ranges(ranges: &[IdRange], id: u32) -> bool {
    ranges
        .iter()
        .any(|r| r.inside <= id && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
}

/// Is this a caller whose containers need a user namespace (not root)?
pub fn rootless() -> bool {
    crate::sys::geteuid() != 0
}

impl UserNs {
    pub fn maps_gid(&self, gid: u32) -> bool {
        in_ranges(&self.gids, gid)
    }

    pub fn maps_uid(&self, uid: u32) -> bool {
        in_ranges(&self.uids, uid)
    }

    /// A user the namespace cannot hold is refused with one line (setuid would say only
    /// EINVAL).
    pub fn check_user(&self, uid: u32, gid: u32) -> Result<(), super::Failure> {
        let why = if self.subordinate {
            "beyond the caller's subordinate ids"
        } else {
            "the caller has no subordinate ids in /etc/subuid and /etc/subgid, so only root is"
        };
        if !self.maps_uid(uid) {
            return Err(super::Failure::setup(format!(
                "uid {uid} is not mapped in the rootless container's user namespace ({why})"
            )));
        }
        if !self.maps_gid(gid) {
            return Err(super::Failure::setup(format!(
                "gid {gid} is not mapped in the rootless container's user namespace ({why})"
            )));
        }
        Ok(())
    }

    /// May the namespace's processes call setgroups(2)?
    pub fn setgroups(&self) -> bool {
        self.subordinate
    }
}

/// The ranges of `/etc/subuid`-style `text` that belong to the user `name` or `id`.
pub fn subordinate(text: &str, name: Option<&str>, id: u32) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let mine = Some(who) == name || who.parse::<u32>() == Ok(id);
            let (start, count) = (start.parse().ok()?, count.parse().ok()?);
            (mine && count > 0).then_some((start, count))
        })
        .collect()
}

/// The caller at 0, then its subordinate ranges one after another from 1.
pub fn layout(caller: u32, ranges: &[(u32, u32)]) -> Vec<IdRange> {
    let mut out = vec![IdRange {
        inside: 0,
        outside: caller,
        count: 1,
    }];
    let mut next = 1u32;
    for (start, count) in ranges {
        out.push(IdRange {
            inside: next,
            outside: *start,
            count: *count,
        });
        next = next.saturating_add(*count);
    }
    out
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The maps for the calling user: its subordinate ids where it has both kinds and the
/// helpers are installed, the caller alone otherwise.
pub fn for_caller() -> Result<UserNs> {
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let name = user_name(uid);
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let subuids = subordinate(&read("/etc/subuid"), name.as_deref(), uid);
    let subgids = subordinate(&read("/etc/subgid"), name.as_deref(), uid);
    if subuids.is_empty() || subgids.is_empty() {
        return Ok(UserNs {
            uids: layout(uid, &[]),
            gids: layout(gid, &[]),
            subordinate: false,
        });
    }
    for helper in ["newuidmap", "newgidmap"] {
        if which(helper).is_none() {
            bail!(
                "{helper} not found: it is needed for the subordinate ids of /etc/subuid and \
                 /etc/subgid (install the uidmap package)"
            );
        }
    }
    Ok(UserNs {
        uids: layout(uid, &subuids),
        gids: layout(gid, &subgids),
        subordinate: true,
    })
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// newuidmap PID 0 UID 1 ...: the helper's argument form of a map.
fn helper_args(pid: i32, ranges: &[IdRange]) -> Vec<String> {
    let mut a = vec![pid.to_string()];
    for r in ranges {
        a.extend([r.inside, r.outside, r.count].map(|n| n.to_string()));
    }
    a
}

/// In the forked helper: wait for the parent to unshare, write its maps, report one line
/// (empty when both helpers succeeded).
fn helper(parent: i32, ns: &UserNs, go: OwnedFd, report: OwnedFd) -> ! {
    let mut b = [0u8; 1];
    let mut go = fs::File::from(go);
    if !matches!(go.read(&mut b), Ok(1)) {
        unsafe { libc::_exit(1) }
    }
    let mut msg = String::new();
    for (tool, ranges) in [("newuidmap", &ns.uids), ("newgidmap", &ns.gids)] {
        match std::process::Command::new(tool)
            .args(helper_args(parent, ranges))
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                msg = format!("{tool}: {}", err.trim().lines().last().unwrap_or("failed"));
                break;
            }
            Err(e) => {
                msg = format!("cannot run {tool}: {e}");
                break;
            }
        }
    }
    let _ = fs::File::from(report).write_all(msg.as_bytes());
    unsafe { libc::_exit(if msg.is_empty() { 0 } else { 1 }) }
}

/// Put the calling process in a new user namespace with `ns`'s maps (it is root there, with
/// every capability in it) and then in a new mount namespace owned by it. The process must
/// have one thread (unshare of a user namespace refuses more).
pub fn enter(ns: &UserNs) -> Result<()> {
    let cannot = |e: nix::errno::Errno| {
        anyhow!(
            "cannot create a user namespace: {} (are unprivileged user namespaces enabled?)",
            e.desc()
        )
    };
    if !ns.subordinate {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(cannot)?;
        let write = |file: &str, text: &str| {
            fs::write(Path::new("/proc/self").join(file), text)
                .with_context(|| format!("write /proc/self/{file}"))
        };
        write("setgroups", "deny")?;
        write("uid_map", &map_text(&ns.uids))?;
        write("gid_map", &map_text(&ns.gids))?;
    } else {
        let parent = std::process::id() as i32;
        let (go_r, go_w) = pipe()?;
        let (rep_r, rep_w) = pipe()?;
        let child = match unsafe { libc::fork() } {
            -1 => bail!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                drop(go_w);
                drop(rep_r);
                helper(parent, ns, go_r, rep_w)
            }
            pid => pid,
        };
        drop(go_r);
        drop(rep_w);
        let unshared = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
        if unshared.is_ok() {
            let _ = fs::File::from(go_w).write_all(b"g");
        } else {
            // The helper reads nothing and exits.
            drop(go_w);
        }
        let mut msg = String::new();
        let _ = fs::File::from(rep_r).read_to_string(&mut msg);
        let mut status = 0;
        unsafe { libc::waitpid(child, &mut status, 0) };
        unshared.map_err(cannot)?;
        if !msg.is_empty() || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!(
                "cannot map the subordinate ids of /etc/subuid and /etc/subgid: {}",
                if msg.is_empty() {
                    "the helper failed"
                } else {
                    msg.trim()
                }
            );
        }
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| anyhow!("cannot create a mount namespace: {}", e.desc()))?;
    Ok(())
}

/// Join the user namespace of `pid` if it is not this process's own (exec and cp into a
/// rootless container), then, with `mount`, its mount namespace. One thread only.
pub fn join(pid: i32, mount: bool) -> Result<bool> {
    let user = fs::File::open(format!("/proc/{pid}/ns/user"))
        .with_context(|| format!("open /proc/{pid}/ns/user"))?;
    if same_ns(user.as_raw_fd(), "user") {
        return Ok(false);
    }
    let mnt = fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .with_context(|| format!("open /proc/{pid}/ns/mnt"))?;
    nix::sched::setns(&user, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| anyhow!("join the container's user namespace: {}", e.desc()))?;
    if mount {
        nix::sched::setns(&mnt, CloneFlags::CLONE_NEWNS)
            .map_err(|e| anyhow!("join the container's mount namespace: {}", e.desc()))?;
    }
    Ok(true)
}

/// Is the namespace open at `fd` this process's own `kind` namespace?
pub fn same_ns(fd: i32, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).ok();
    let ours = fs::metadata(format!("/proc/self/ns/{kind}")).ok();
    match (theirs, ours) {
        (Some(t), Some(o)) => t.st_ino == o.ino() && t.st_dev == o.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let text =
            "alice:100000:65536\nbob:200000:65536\n1001:300000:10\nalice:500000:5\nbad line\n";
        assert_eq!(
            subordinate(text, Some("alice"), 1000),
            vec![(100000, 65536), (500000, 5)]
        );
        assert_eq!(subordinate(text, Some("carol"), 1001), vec![(300000, 10)]);
        assert!(subordinate(text, None, 42).is_empty());
    }

    #[test]
    fn the_caller_is_root_and_its_ranges_follow() {
        let l = layout(1000, &[(100000, 65536), (500000, 5)]);
        assert_eq!(map_text(&l), "0 1000 1\n1 100000 65536\n65537 500000 5\n");
        assert_eq!(
            helper_args(7, &l[..2]),
            ["7", "0", "1000", "1", "1", "100000", "65536"]
        );
        let ns = UserNs {
            uids: l.clone(),
            gids: l,
            subordinate: true,
        };
        assert!(ns.maps_gid(5) && ns.maps_gid(0) && !ns.maps_gid(70000));
        let alone = UserNs {
            uids: layout(1000, &[]),
            gids: layout(1000, &[]),
            subordinate: false,
        };
        assert!(!alone.maps_gid(5) && !alone.setgroups());
        assert!(alone.check_user(0, 0).is_ok());
        let e = alone.check_user(1000, 0).unwrap_err();
        assert!(e.msg.starts_with("uid 1000 is not mapped"), "{}", e.msg);
    }
}
