//! Copy-on-first-mount: a new, empty volume is filled with what the image has at its target,
//! owners, modes, xattrs and times included, as Docker does.
//!
//! The copy is read through the union (so it is the merged image, whiteouts applied) and built
//! beside the volume's `_data`, synced, then swapped in with one RENAME_EXCHANGE: a crash
//! leaves the volume empty or whole, never half filled.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::sys::{self, Res};
use crate::union::Union;

/// Fill `data` (a volume's `_data`, empty) from directory node `src` of `union`. Returns the
/// number of entries copied.
pub fn fill(union: &Union, src: u64, data: &Path) -> Result<usize> {
    let vol = data
        .parent()
        .ok_or_else(|| anyhow!("volume path {}", data.display()))?;
    let vfd = sys::openat2(libc::AT_FDCWD, vol, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(|e| io(e, vol))?;
    let tmp = OsStr::new("_filling");
    if sys::stat_opt(vfd.as_raw_fd(), tmp)
        .map_err(|e| io(e, vol))?
        .is_some()
    {
        // What an interrupted fill left.
        crate::union::dir::remove_tree(vfd.as_raw_fd(), tmp).map_err(|e| io(e, vol))?;
    }
    let made = (|| -> Res<usize> {
        sys::mkdirat(vfd.as_raw_fd(), tmp, 0o700)?;
        let dfd = sys::openat(vfd.as_raw_fd(), tmp, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let n = copy_dir(union, src, &dfd)?;
        // The volume's root takes the owner, mode and xattrs of the image's directory.
        let st = union.getattr(src)?;
        attrs(union, src, vfd.as_raw_fd(), tmp, &st)?;
        let real = sys::openat(vfd.as_raw_fd(), tmp, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        if unsafe { libc::syncfs(real.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        sys::renameat2(
            vfd.as_raw_fd(),
            tmp,
            vfd.as_raw_fd(),
            OsStr::new("_data"),
            libc::RENAME_EXCHANGE,
        )?;
        Ok(n)
    })();
    let _ = crate::union::dir::remove_tree(vfd.as_raw_fd(), tmp);
    made.map_err(|e| io(e, data))
}

fn io(e: i32, p: &Path) -> anyhow::Error {
    anyhow!("{}: {}", p.display(), std::io::Error::from_raw_os_error(e))
}

fn copy_dir(union: &Union, dir: u64, dfd: &OwnedFd) -> Res<usize> {
    let entries = union.listing(dir, true)?;
    union.drop_listing(dir);
    let mut n = 0;
    for e in entries.iter() {
        let (id, st) = union.lookup(dir, &e.name)?;
        let r = copy_entry(union, id, &st, dfd, &e.name);
        union.forget(id, 1);
        n += r?;
    }
    Ok(n)
}

fn copy_entry(union: &Union, id: u64, st: &libc::stat, dfd: &OwnedFd, name: &OsStr) -> Res<usize> {
    let d = dfd.as_raw_fd();
    let mut n = 1;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            sys::mkdirat(d, name, 0o700)?;
            let sub = sys::openat(d, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            n += copy_dir(union, id, &sub)?;
        }
        libc::S_IFREG => {
            let fh = union.open(id, libc::O_RDONLY, None)?;
            let r = (|| {
                let h = union.handle(fh)?;
                let out = sys::openat(
                    d,
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                sys::copy_data(h.fd.as_raw_fd(), out.as_raw_fd(), st.st_size as u64)
            })();
            union.release(fh);
            r?;
        }
        libc::S_IFLNK => sys::symlinkat(&union.readlink(id)?, d, name)?,
        _ => match sys::mknodat(d, name, st.st_mode, st.st_rdev) {
            Ok(()) => {}
            Err(libc::EPERM) => {
                log::warn!("volume fill: cannot make device {name:?} without privileges; left out");
                return Ok(0);
            }
            Err(e) => return Err(e),
        },
    }
    attrs(union, id, d, name, st)?;
    Ok(n)
}

/// Owner, then mode (chown clears set-id bits), then xattrs (chown drops file capabilities),
/// then times. What an unprivileged process may not set is left as it is.
fn attrs(union: &Union, id: u64, d: i32, name: &OsStr, st: &libc::stat) -> Res<()> {
    match sys::lchownat(d, name, st.st_uid, st.st_gid) {
        Ok(()) | Err(libc::EPERM) => {}
        Err(e) => return Err(e),
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
        sys::chmodat(d, name, st.st_mode & 0o7777)?;
    }
    let p = sys::xattr_path(d, name)?;
    for x in union.listxattr(id)? {
        let v = union.getxattr(id, &x)?;
        match sys::lsetxattr(&p, &x, &v, 0) {
            Ok(()) | Err(libc::EPERM) | Err(libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    sys::utimensat(d, name, &sys::times_of(st))
}
