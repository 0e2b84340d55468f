//! A tree the copy reads or writes: a container's merged root, or the host's `/`. Every path is
//! resolved by the kernel beneath the tree's root fd (openat2 RESOLVE_IN_ROOT), so a symlink
//! inside a container, absolute or full of `..`, never leads out of it, even if it is swapped
//! in while the copy runs (CVE-2018-15664); what is found is kept as an fd and used from there.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};

use crate::sys::{self, Res};

pub struct Tree {
    fd: OwnedFd,
}

/// An entry found in a tree: an O_PATH fd on it and what it is.
pub struct Found {
    pub fd: OwnedFd,
    pub st: libc::stat,
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// An errno as Go prints it ("no such file or directory").
pub fn errno_text(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    let s = s.split(" (os error").next().unwrap_or(&s).to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

impl Tree {
    pub fn open(dir: &Path) -> Result<Tree> {
        let fd = sys::openat2(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .map_err(|e| anyhow::anyhow!("open {}: {}", dir.display(), errno_text(e)))?;
        Ok(Tree { fd })
    }

    /// The host's root.
    pub fn host() -> Result<Tree> {
        Tree::open(Path::new("/")).context("open /")
    }

    /// The entry at `path` (taken from the tree's root whether or not it starts with `/`),
    /// every symlink on the way resolved inside the tree; the last one followed only with
    /// `follow` (a trailing `/` follows it anyway, as for any path).
    pub fn entry(&self, path: &str, follow: bool) -> Res<Found> {
        let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
        let fd = sys::openat2(
            self.fd.as_raw_fd(),
            Path::new(path),
            flags,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )?;
        let st = sys::fstatat(fd.as_raw_fd(), OsStr::new(""))?;
        Ok(Found { fd, st })
    }

    /// The directory at `path`, open for the `*at()` calls that write into it.
    pub fn dir(&self, path: &str) -> Res<OwnedFd> {
        sys::openat2(
            self.fd.as_raw_fd(),
            Path::new(path),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// A whole small file (the container's /etc/passwd), or None.
    pub fn read(&self, path: &str) -> Option<String> {
        let f = self.entry(path, true).ok()?;
        if f.st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        let mut file = reopen(&f.fd).ok()?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut file, &mut s).ok()?;
        Some(s)
    }
}

/// A regular file found as an O_PATH fd, opened for reading: the very inode found, through its
/// /proc/self/fd link, never a path looked up again.
pub fn reopen(fd: &OwnedFd) -> Res<std::fs::File> {
    let p = sys::fd_path(fd.as_raw_fd(), OsStr::new(""))?;
    let r = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(r) })
}
