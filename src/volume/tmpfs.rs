//! tmpfs grafts: memory that lives as long as the mount.
//!
//! With privileges, a real tmpfs is made with the new mount API and never attached anywhere
//! (fsopen + fsmount): the daemon holds it by a file descriptor only, so it disappears with the
//! daemon however that ends, even on SIGKILL. Without them, a directory in /dev/shm (itself a
//! tmpfs) stands in; the daemon removes it at unmount, and the next mount removes any that a
//! killed daemon left.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

use crate::union::layer::Layer;

const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const SHM: &str = "/dev/shm";
const PREFIX: &str = "strata-tmpfs.";

/// What to clean up after a tmpfs: the stand-in directory, if one was used. A real tmpfs needs
/// nothing: it lives as long as the layer's root fd.
pub struct Tmpfs {
    dir: Option<PathBuf>,
}

fn cvt(r: libc::c_long) -> std::io::Result<i32> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}

fn detached(size: Option<u64>, mode: u32) -> std::io::Result<OwnedFd> {
    let fstype = CString::new("tmpfs").unwrap();
    let fc = cvt(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
    let fc = unsafe { OwnedFd::from_raw_fd(fc) };
    let mut set = vec![("mode".to_string(), format!("{mode:o}"))];
    if let Some(s) = size {
        set.push(("size".to_string(), s.to_string()));
    }
    for (k, v) in set {
        let (k, v) = (CString::new(k).unwrap(), CString::new(v).unwrap());
        cvt(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fc.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })?;
    }
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fc.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    })?;
    let m = cvt(unsafe { libc::syscall(libc::SYS_fsmount, fc.as_raw_fd(), FSMOUNT_CLOEXEC, 0) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(m) })
}

impl Tmpfs {
    /// A new tmpfs, as the layer that serves it and what to clean up after it.
    pub fn new(size: Option<u64>, mode: u32, seq: usize) -> Result<(Layer, Tmpfs)> {
        match detached(size, mode) {
            Ok(root) => {
                let layer = Layer::from_root(PathBuf::from("tmpfs"), root);
                return Ok((layer, Tmpfs { dir: None }));
            }
            Err(e) => log::debug!("tmpfs: no detached mount ({e}); using {SHM}"),
        }
        if size.is_some() {
            log::warn!("tmpfs: size= is not enforced without privileges");
        }
        let dir = PathBuf::from(SHM).join(format!("{PREFIX}{}.{seq}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("tmpfs stand-in {}", dir.display()))?;
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        let layer = Layer::open(&dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
        Ok((layer, Tmpfs { dir: Some(dir) }))
    }

    /// Remove the stand-in directory (a real tmpfs goes with its last file descriptor).
    pub fn remove(&self) {
        if let Some(d) = &self.dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Remove stand-in directories whose daemon is gone.
pub fn remove_stale() {
    let Ok(rd) = fs::read_dir(SHM) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let pid: Option<i32> = rest.split('.').next().and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone && e.path().parent() == Some(std::path::Path::new(SHM)) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}
