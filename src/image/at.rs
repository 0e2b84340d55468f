//! Small fd-relative helpers for the layer store: open a host directory, dup, fsetxattr, and
//! removing a tree without following symlinks.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context, Result};

use crate::sys;

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

/// Open a host directory (the store's own) to work beneath it.
pub fn open_dir_path(dir: &Path) -> Result<OwnedFd> {
    let f = File::open(dir).with_context(|| format!("{}", dir.display()))?;
    Ok(OwnedFd::from(f))
}

pub fn fset(fd: RawFd, name: &OsStr, value: &[u8]) -> Result<(), i32> {
    let n = sys::cstr(name)?;
    let r = unsafe { libc::fsetxattr(fd, n.as_ptr(), value.as_ptr() as *const _, value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

pub fn dup(fd: RawFd) -> Result<OwnedFd> {
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("dup");
    }
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Remove `name` in `dirfd` and everything below it, never following a symlink; directories
/// an unprivileged import left read-only are made writable first.
pub fn remove_all(dirfd: RawFd, name: &OsStr) -> Result<()> {
    let st = match sys::stat_opt(dirfd, name).map_err(errno)? {
        Some(st) => st,
        None => return Ok(()),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let _ = sys::chmodat(dirfd, name, 0o700);
        let sub = sys::openat(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map_err(errno)
            .with_context(|| name.to_string_lossy().into_owned())?;
        for (n, _, _) in sys::read_dir(sub.as_raw_fd()).map_err(errno)? {
            remove_all(sub.as_raw_fd(), &n)?;
        }
        sys::unlinkat(dirfd, name, true).map_err(errno)?;
    } else {
        sys::unlinkat(dirfd, name, false).map_err(errno)?;
    }
    Ok(())
}
