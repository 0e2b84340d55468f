//! Extended attributes: user-facing get/set/list/remove with overlay bookkeeping filtered out,
//! xattr copy on copy-up, and the owner/mode override kept where the upper filesystem refuses
//! a chown or a special file (unprivileged mounts).

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;

use super::acl::is_acl_xattr;
use super::idmap::map_acl;
use super::layer::is_private_xattr;
use super::Union;
use crate::sys::{self, Res};

/// Where the owner, mode and type an unprivileged mount could not set are kept.
pub const OVERRIDE_XATTR: &str = "user.strata.override_stat";
/// The same record as fuse-overlayfs and containers/storage write it: read for compatibility.
const FOREIGN_OVERRIDES: [&str; 2] = [
    "user.fuseoverlayfs.override_stat",
    "user.containers.override_stat",
];

pub fn copy_all(sfd: i32, sname: &OsStr, dfd: i32, dname: &OsStr) -> Res<()> {
    let sp = sys::xattr_path(sfd, sname)?;
    let dp = sys::xattr_path(dfd, dname)?;
    let names = match sys::llistxattr(&sp) {
        Ok(n) => n,
        Err(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for n in names {
        if is_private_xattr(&n) && !is_override(&n) {
            continue;
        }
        let v = match sys::lgetxattr(&sp, &n) {
            Ok(v) => v,
            Err(libc::ENODATA) => continue,
            Err(e) => return Err(e),
        };
        match sys::lsetxattr(&dp, &n, &v, 0) {
            Ok(()) => {}
            // trusted.* and security.* need privilege; user.* is refused on symlinks.
            Err(e @ (libc::EPERM | libc::EOPNOTSUPP)) => {
                log::warn!(
                    "copy-up: xattr {} not copied: {}",
                    n.to_string_lossy(),
                    super::copy_up::errstr(e)
                )
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_override(n: &OsStr) -> bool {
    n == OVERRIDE_XATTR || FOREIGN_OVERRIDES.iter().any(|f| n == *f)
}

pub fn set_override(dfd: i32, name: &OsStr, uid: u32, gid: u32, mode: u32) -> Res<()> {
    let p = sys::xattr_path(dfd, name)?;
    let v = format!("{uid}:{gid}:0{mode:o}");
    sys::lsetxattr(&p, OsStr::new(OVERRIDE_XATTR), v.as_bytes(), 0)
}

fn parse_override(v: &[u8]) -> Option<(u32, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.trim_end_matches('\0').split(':');
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    let mode = u32::from_str_radix(it.next()?.trim_start_matches('0'), 8).unwrap_or(0);
    Some((uid, gid, mode))
}

/// The owner, mode and type recorded in the override xattr, if there is one.
fn read_override(dfd: i32, name: &OsStr) -> Option<(u32, u32, u32)> {
    let p = sys::xattr_path(dfd, name).ok()?;
    std::iter::once(OVERRIDE_XATTR)
        .chain(FOREIGN_OVERRIDES)
        .find_map(|key| sys::lgetxattr(&p, OsStr::new(key)).ok())
        .and_then(|v| parse_override(&v))
}

/// Show the owner, mode and type recorded in the override xattr, if any.
pub fn apply_override(dfd: i32, name: &OsStr, st: &mut libc::stat) {
    if let Some(o) = read_override(dfd, name) {
        show_override(o, st);
    }
}

/// The same for an open file.
pub fn apply_override_fd(fd: i32, st: &mut libc::stat) {
    let found = std::iter::once(OVERRIDE_XATTR)
        .chain(FOREIGN_OVERRIDES)
        .find_map(|key| sys::fgetxattr(fd, OsStr::new(key)))
        .and_then(|v| parse_override(&v));
    if let Some(o) = found {
        show_override(o, st);
    }
}

fn show_override((uid, gid, mode): (u32, u32, u32), st: &mut libc::stat) {
    st.st_uid = uid;
    st.st_gid = gid;
    if mode & libc::S_IFMT != 0 {
        st.st_mode = mode;
    } else {
        st.st_mode = (st.st_mode & libc::S_IFMT) | (mode & 0o7777);
    }
}

/// chmod for a file that may carry an override: the permission bits change on the file and in
/// the record alike, so the mode shown is the mode set.
pub fn chmod_with_override(dfd: i32, name: &OsStr, mode: u32) -> Res<()> {
    sys::chmodat(dfd, name, mode & 0o7777)?;
    match read_override(dfd, name) {
        Some((uid, gid, old)) => {
            set_override(dfd, name, uid, gid, (old & libc::S_IFMT) | (mode & 0o7777))
        }
        None => Ok(()),
    }
}

impl Union {
    fn with_top<T>(&self, id: u64, f: impl FnOnce(&sys::XattrPath, usize) -> Res<T>) -> Res<T> {
        let (st, path) = self.resolve(id)?;
        let (layer, parent, name) = self.top_of(&st, &path);
        let fd = self.layer(layer).dir_shared(&parent)?;
        let p = sys::xattr_path(fd.as_raw_fd(), &name)?;
        f(&p, layer)
    }

    /// A POSIX ACL xattr under noacl (refused), or with its ids shown through the mapping.
    fn acl_check(&self, name: &OsStr) -> Res<bool> {
        if !is_acl_xattr(name) {
            return Ok(false);
        }
        if self.opts.show.noacl {
            return Err(libc::EOPNOTSUPP);
        }
        Ok(true)
    }

    pub fn getxattr(&self, id: u64, name: &OsStr) -> Res<Vec<u8>> {
        if self.is_private_xattr(name) {
            return Err(libc::ENODATA);
        }
        let acl = self.acl_check(name)?;
        let _g = self.read_ns();
        let (v, layer) = self.with_top(id, |p, layer| Ok((sys::lgetxattr(p, name)?, layer)))?;
        let o = &self.opts.show.owners;
        let mapped = self.mapped_by_mount(layer);
        if acl && !mapped && !(o.uid.ranges.is_empty() && o.gid.ranges.is_empty()) {
            return map_acl(&v, |u| Ok(o.uid.show(u)), |g| Ok(o.gid.show(g)));
        }
        Ok(v)
    }

    pub fn listxattr(&self, id: u64) -> Res<Vec<OsString>> {
        let _g = self.read_ns();
        let mut names = self.with_top(id, |p, _| sys::llistxattr(p))?;
        names.retain(|n| !(self.is_private_xattr(n) || self.opts.show.noacl && is_acl_xattr(n)));
        Ok(names)
    }

    pub fn setxattr(&self, id: u64, name: &OsStr, value: &[u8], flags: i32) -> Res<()> {
        self.writable()?;
        if self.is_private_xattr(name) {
            return Err(libc::EPERM);
        }
        let stored;
        let value = if self.acl_check(name)? {
            let o = &self.opts.show.owners;
            stored = map_acl(value, |u| o.uid.store(u), |g| o.gid.store(g))?;
            stored.as_slice()
        } else {
            value
        };
        self.copy_up_for_write(id, false)?;
        let _g = self.write_ns();
        self.copy_up(id)?;
        self.with_top(id, |p, _| sys::lsetxattr(p, name, value, flags))
    }

    /// After `who` set the access ACL of node `id`: a caller outside the file's group and
    /// without privilege loses its set-group-ID bit, as with chmod (posix_acl_update_mode); the
    /// upper filesystem, which saw the daemon set the ACL, keeps it.
    pub fn access_acl_set_by(&self, id: u64, who: &super::dir::Caller) -> Res<()> {
        if who.uid == 0 {
            return Ok(());
        }
        let st = self.getattr(id)?;
        if st.st_mode & libc::S_ISGID == 0 || who.in_group(st.st_gid) {
            return Ok(());
        }
        let a = super::file::SetAttr {
            mode: Some(st.st_mode & 0o7777 & !libc::S_ISGID),
            ..Default::default()
        };
        self.setattr(id, &a).map(drop)
    }

    pub fn removexattr(&self, id: u64, name: &OsStr) -> Res<()> {
        self.writable()?;
        if self.is_private_xattr(name) {
            return Err(libc::ENODATA);
        }
        self.acl_check(name)?;
        // Nothing to copy up for an attribute that is not there.
        {
            let _g = self.read_ns();
            self.with_top(id, |p, _| sys::lgetxattr(p, name).map(drop))?;
        }
        self.copy_up_for_write(id, false)?;
        let _g = self.write_ns();
        self.copy_up(id)?;
        self.with_top(id, |p, _| sys::lremovexattr(p, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_round_trip() {
        assert_eq!(
            parse_override(b"1000:100:0100644"),
            Some((1000, 100, 0o100644))
        );
        assert_eq!(parse_override(b"0:0:0755"), Some((0, 0, 0o755)));
        assert_eq!(parse_override(b"garbage"), None);
    }
}
