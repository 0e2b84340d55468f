//! `strata umount` and /sbin/umount.strata: unmount, then wait for the daemon to exit, found
//! through the pid file it keeps in the runtime directory.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::kernel::unmount_flags;
use super::{io_msg, mount_points};

/// Is `pid` a live process? A zombie (exited, not yet reaped by init) is not.
fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Where the daemon leaves its pid for `strata umount`: /run/strata for root, the user's runtime
/// directory otherwise. Root of a user namespace (rootless podman runs its mount program
/// there) cannot write /run/strata and gets a directory in /tmp named after its id outside.
/// The first candidate that can be made, is owned by this user and is writable wins; the
/// daemon and `strata umount` run in the same namespace, so they agree on it.
fn runtime_dir() -> Option<PathBuf> {
    let euid = crate::sys::geteuid();
    let mut candidates = Vec::new();
    if euid == 0 {
        candidates.push(PathBuf::from("/run/strata"));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(d).join("strata"));
    }
    match outer_uid(euid) {
        Some(outer) if outer != euid => {
            candidates.push(PathBuf::from(format!("/tmp/strata-{euid}-of-{outer}")))
        }
        _ => candidates.push(PathBuf::from(format!("/tmp/strata-{euid}"))),
    }
    candidates.into_iter().find(|d| {
        fs::create_dir_all(d).is_ok()
            && fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == euid)
            && crate::sys::access_writable(d)
    })
}

/// The id that `uid` of this user namespace has in the initial one, from /proc/self/uid_map.
fn outer_uid(uid: u32) -> Option<u32> {
    let map = crate::sys::read_proc("/proc/self/uid_map").ok()?;
    map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let (inside, outside, count) = (*f.first()?, *f.get(1)?, *f.get(2)?);
        let uid = u64::from(uid);
        (inside <= uid && uid < inside + count).then(|| (outside + uid - inside) as u32)
    })
}

pub(super) fn pid_file(mountpoint: &Path) -> Option<PathBuf> {
    let dir = runtime_dir()?;
    let name: String = mountpoint
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(dir.join(format!("{name}.pid")))
}

pub fn umount(mountpoint: &Path) -> Result<()> {
    umount_with(mountpoint, false)
}

/// As /sbin/umount.strata: a strata mount is unmounted and waited for; anything else at that
/// path (behind a stale utab line) is simply unmounted, as umount would have done.
pub fn umount_helper(mountpoint: &Path, lazy: bool) -> Result<()> {
    let kind = mount_points()
        .into_iter()
        .rev()
        .find(|(p, _)| p == mountpoint)
        .map(|(_, k)| k);
    if kind.as_deref() == Some("fuse.strata") {
        umount_with(mountpoint, lazy)
    } else {
        unmount_flags(mountpoint, if lazy { libc::MNT_DETACH } else { 0 })
    }
}

/// Unmount (lazily with `lazy`) and wait until the daemon has exited.
pub fn umount_with(mountpoint: &Path, lazy: bool) -> Result<()> {
    let mp = mountpoint
        .canonicalize()
        .map_err(|e| anyhow!("{}: {}", mountpoint.display(), io_msg(&e)))?;
    let kind = mount_points()
        .into_iter()
        .rev()
        .find(|(p, _)| *p == mp)
        .map(|(_, k)| k);
    match kind.as_deref() {
        Some("fuse.strata") => {}
        Some(other) => bail!("{} is a {other} mount, not a strata mount", mp.display()),
        None => bail!("{} is not mounted", mp.display()),
    }
    let pid = pid_file(&mp)
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<i32>().ok());
    unmount_flags(&mp, if lazy { libc::MNT_DETACH } else { 0 })?;
    // Wait for the daemon to finish flushing its inode table.
    if let Some(pid) = pid {
        // Woken by the exit itself where the kernel has pidfds; a short poll otherwise.
        if !crate::sys::wait_exit(pid, Duration::from_secs(30)) {
            let t = Instant::now();
            while running(pid) && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Ok(())
}
