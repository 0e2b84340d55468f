//! Open files and attribute changes. A file opened for writing is copied up first; reads of
//! lower files go straight to the lower layer. Data I/O uses the handle's fd and takes no lock.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::dir::Caller;
use super::Union;
use crate::sys::{self, Res};

pub struct Handle {
    pub fd: OwnedFd,
    pub id: u64,
    /// The fd is on the upper layer (else on a lower one, read-only).
    pub upper: bool,
    /// The layer the fd is on.
    pub layer: usize,
}

/// A time for setattr: a given time or "now".
#[derive(Clone, Copy, Debug)]
pub enum SetTime {
    At(SystemTime),
    Now,
}

/// The open(2) flags that mean something for an existing file.
const OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_NOATIME
    | libc::O_TRUNC
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW;

/// A file capability: dropped with the set-user-ID bit.
const CAPABILITY_XATTR: &str = "security.capability";

#[derive(Default, Debug)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub fh: Option<u64>,
    /// Who asks (None: strata itself, with every privilege).
    pub caller: Option<Caller>,
}

impl SetAttr {
    fn changes_nothing(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

/// What a file's privileges are dropped for.
#[derive(Clone, Copy, PartialEq)]
enum Change {
    /// A write or a truncation.
    Data,
    /// A new owner or group.
    Owner,
}

fn timespec(t: Option<SetTime>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(SetTime::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(SetTime::At(t)) => {
            let (sec, nsec) = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => {
                    let d = e.duration();
                    let mut s = -(d.as_secs() as i64);
                    let mut n = d.subsec_nanos() as i64;
                    if n > 0 {
                        s -= 1;
                        n = 1_000_000_000 - n;
                    }
                    (s, n)
                }
            };
            libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            }
        }
    }
}

pub fn wants_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl Union {
    /// Open node `id` for `who` (None: strata itself). A refused open copies nothing up.
    pub fn open(&self, id: u64, flags: i32, who: Option<&Caller>) -> Res<u64> {
        if let Some(c) = who {
            self.check_open(id, flags, c)?;
        }
        let (fd, layer) = if wants_write(flags) {
            self.writable()?;
            self.copy_up_for_write(id, flags & libc::O_TRUNC != 0)?;
            let _g = self.read_ns();
            let opened = self.open_top(id, flags)?;
            if self.opts.plain && self.events.on() {
                if let Ok(path) = self.path_of(id) {
                    self.events.emit(|n| super::events::Event::GraftWrite {
                        path: n(&path),
                        op: "open for writing".into(),
                        source: String::new(),
                    });
                }
            }
            opened
        } else {
            let _g = self.read_ns();
            self.open_top(id, flags)?
        };
        Ok(self.add_handle(id, fd, layer))
    }

    pub(crate) fn add_handle(&self, id: u64, fd: OwnedFd, layer: usize) -> u64 {
        let fh = self.next_fh();
        let upper = layer == 0;
        self.files.insert(
            fh,
            Arc::new(Handle {
                fd,
                id,
                upper,
                layer,
            }),
        );
        fh
    }

    fn open_top(&self, id: u64, flags: i32) -> Res<(OwnedFd, usize)> {
        let (st, path) = self.resolve(id)?;
        let (layer, parent, name) = self.top_of(&st, &path);
        let keep = !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY);
        let noatime = self.noatime(layer, false);
        let root = if noatime != 0 {
            self.noatime_root(layer)
        } else {
            self.stamping_root(false)
        };
        if let Some(root) = root {
            let rel = parent.join(&name);
            // openat2 refuses what open(2) ignores (the kernel's __FMODE_EXEC of an exec).
            let flags = flags & keep & OPEN_FLAGS;
            // A path past PATH_MAX is opened below (its directory walked name by name), by
            // the rule of the layer's own mount (with O_NOATIME where there should be none).
            match sys::openat2(root.as_raw_fd(), &rel, flags, 0, sys::RESOLVE_SAFE) {
                Err(libc::ENAMETOOLONG) => {}
                r => return Ok((r?, layer)),
            }
        }
        let dfd = self.layer(layer).dir(&parent)?;
        Ok((
            sys::openat(dfd.as_raw_fd(), &name, flags & keep | noatime, 0)?,
            layer,
        ))
    }

    pub fn handle(&self, fh: u64) -> Res<Arc<Handle>> {
        self.files.get(&fh).map(|h| h.clone()).ok_or(libc::EBADF)
    }

    pub fn release(&self, fh: u64) {
        self.files.remove(&fh);
    }

    pub fn read(&self, fh: u64, off: u64, size: u32) -> Res<Vec<u8>> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = sys::pread(h.fd.as_raw_fd(), &mut buf[got..], off + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> Res<usize> {
        let h = self.handle(fh)?;
        sys::pwrite(h.fd.as_raw_fd(), data, off)
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> Res<()> {
        let h = self.handle(fh)?;
        if self.opts.show.no_fsync {
            return Ok(());
        }
        sys::fsync(h.fd.as_raw_fd(), datasync)
    }

    /// fsync(2) of directory `id`: its upper directory, and the parents of the directories on
    /// its path that copy-up made since the last fsyncdir, whose entries are not durable
    /// otherwise. A directory that is only in lower layers has nothing to sync.
    pub fn fsyncdir(&self, id: u64, datasync: bool) -> Res<()> {
        if self.opts.show.no_fsync {
            return Ok(());
        }
        let _g = self.read_ns();
        let (st, path) = self.resolve(id)?;
        if !st.upper || self.upper.is_none() {
            return Ok(());
        }
        let sync_dir = |p: &Path| -> Res<()> {
            let d = self.layer(0).dir(p)?;
            let f = sys::openat(
                d.as_raw_fd(),
                OsStr::new("."),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?;
            sys::fsync(f.as_raw_fd(), datasync)
        };
        sync_dir(&path)?;
        let mut cur = id;
        let mut p = path.as_path();
        while cur != super::ROOT_ID {
            let parent = p.parent().unwrap_or(Path::new(""));
            if self.unsynced_dirs.remove(&cur).is_some() {
                if let Err(e) = sync_dir(parent) {
                    self.unsynced_dirs.insert(cur);
                    return Err(e);
                }
            }
            cur = self
                .node(cur)?
                .st
                .read()
                .unwrap()
                .names
                .first()
                .ok_or(libc::ENOENT)?
                .0;
            p = parent;
        }
        Ok(())
    }

    pub fn fallocate(&self, fh: u64, off: u64, len: u64, mode: i32) -> Res<()> {
        let h = self.handle(fh)?;
        sys::fallocate(h.fd.as_raw_fd(), mode, off, len)
    }

    pub fn lseek(&self, fh: u64, off: i64, whence: i32) -> Res<i64> {
        let h = self.handle(fh)?;
        let r = unsafe { libc::lseek(h.fd.as_raw_fd(), off, whence) };
        if r < 0 {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(r)
        }
    }

    /// The stat of an open file, which stays valid after its last name is gone.
    pub fn fgetattr(&self, fh: u64) -> Res<libc::stat> {
        let h = self.handle(fh)?;
        let mut st = sys::fstat(h.fd.as_raw_fd())?;
        if h.upper {
            st.st_nlink = self.shown_nlink(&st);
        }
        if self.opts.xattr_permissions {
            super::xattr::apply_override_fd(h.fd.as_raw_fd(), &mut st);
        }
        self.opts.show.apply(&mut st, self.mapped_by_mount(h.layer));
        st.st_ino = h.id;
        Ok(st)
    }

    /// setattr of an upper file that has no name any more but is open (the handle the kernel
    /// names, or any of the node's): the change goes to the file through its fd.
    fn setattr_open_unlinked(&self, id: u64, a: &SetAttr) -> Res<libc::stat> {
        let fh =
            a.fh.filter(|fh| self.handle(*fh).is_ok_and(|h| h.id == id))
                .or_else(|| {
                    self.files
                        .iter()
                        .find(|h| h.id == id && h.upper)
                        .map(|h| *h.key())
                })
                .ok_or(libc::ENOENT)?;
        let h = self.handle(fh)?;
        if !h.upper {
            return Err(libc::ENOENT);
        }
        let fd = h.fd.as_raw_fd();
        if a.uid.is_some() || a.gid.is_some() {
            sys::fchown(fd, a.uid.unwrap_or(u32::MAX), a.gid.unwrap_or(u32::MAX))?;
        }
        if let Some(mode) = a.mode {
            sys::fchmod(fd, mode & 0o7777)?;
        }
        if let Some(size) = a.size {
            sys::ftruncate(fd, size)?;
        }
        if a.size.is_some() || a.uid.is_some() || a.gid.is_some() {
            // As for a named file: a new owner, or a change by an unprivileged caller, drops
            // set-user-ID (and set-group-ID with group execute).
            let st = sys::fstat(fd)?;
            let privileged = a.caller.as_ref().is_none_or(|c| c.uid == 0);
            let owner = a.uid.is_some() || a.gid.is_some();
            let mut keep = st.st_mode & 0o7777;
            if owner || !privileged {
                keep &= !libc::S_ISUID;
                if keep & libc::S_IXGRP != 0 {
                    keep &= !libc::S_ISGID;
                }
            }
            if keep != st.st_mode & 0o7777 && st.st_mode & libc::S_IFMT == libc::S_IFREG {
                sys::fchmod(fd, keep)?;
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            sys::futimens(fd, &[timespec(a.atime), timespec(a.mtime)])?;
        }
        drop(h);
        self.fgetattr(fh)
    }

    /// The stat of an unlinked file that is still open somewhere.
    pub(crate) fn open_file_stat(&self, id: u64) -> Res<libc::stat> {
        let fh = self
            .files
            .iter()
            .find(|h| h.id == id)
            .map(|h| *h.key())
            .ok_or(libc::ENOENT)?;
        self.fgetattr(fh)
    }

    fn set_mode(&self, pfd: i32, name: &OsStr, mode: u32) -> Res<()> {
        if self.opts.xattr_permissions {
            super::xattr::chmod_with_override(pfd, name, mode)
        } else {
            sys::chmodat(pfd, name, mode & 0o7777)
        }
    }

    /// Drop what a regular file's writer, truncater or new owner must not inherit, by the rules
    /// of Linux filesystems: a new owner never keeps the set-user-ID bit, nor the set-group-ID
    /// bit where group execute is set (without it the bit marks mandatory locking); a caller
    /// without privilege (not uid 0 of the mount's namespace) who writes or truncates drops
    /// both, the set-group-ID bit only where group execute is set or the file's group is not
    /// its own. A file capability goes in every case.
    fn drop_privileges(
        &self,
        pfd: i32,
        name: &OsStr,
        change: Change,
        who: Option<&Caller>,
    ) -> Res<()> {
        let mut st = sys::fstatat(pfd, name)?;
        if self.opts.xattr_permissions {
            super::xattr::apply_override(pfd, name, &mut st);
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(());
        }
        let privileged = who.is_none_or(|c| c.uid == 0);
        let mode = st.st_mode & 0o7777;
        let mut keep = mode;
        if change == Change::Owner || !privileged {
            keep &= !libc::S_ISUID;
        }
        let group_exec = mode & libc::S_IXGRP != 0;
        let drop_sgid = if group_exec {
            change == Change::Owner || !privileged
        } else {
            !privileged
                && !who.is_some_and(|c| c.in_group(self.opts.show.owners.gid.show(st.st_gid)))
        };
        if drop_sgid {
            keep &= !libc::S_ISGID;
        }
        if keep != mode {
            self.set_mode(pfd, name, keep)?;
        }
        // Looked for first: removing one, even one that is not there, takes CAP_SETFCAP.
        let p = sys::xattr_path(pfd, name)?;
        let cap = OsStr::new(CAPABILITY_XATTR);
        if sys::lgetxattr(&p, cap).is_ok() {
            match sys::lremovexattr(&p, cap) {
                Ok(()) | Err(libc::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A write by a caller the kernel found without CAP_FSETID: drop the file's privileges if it
    /// still has any (the kernel has normally had them dropped already, by an empty SETATTR).
    pub fn drop_privileges_for_write(&self, fh: u64, who: &Caller) -> Res<()> {
        let h = self.handle(fh)?;
        let st = sys::fstat(h.fd.as_raw_fd())?;
        if st.st_mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(());
        }
        let _g = self.write_ns();
        let (pfd, name) = self.upper_entry(h.id)?;
        self.drop_privileges(pfd.as_raw_fd(), &name, Change::Data, Some(who))
    }

    /// The upper directory holding node `id` (copied up already), and its name there. For the
    /// root, the name is empty and calls given it act on the directory fd (the root) itself.
    fn upper_entry(&self, id: u64) -> Res<(OwnedFd, std::ffi::OsString)> {
        let (_, path) = self.resolve(id)?;
        let pfd = self.layer(0).dir(path.parent().unwrap_or(Path::new("")))?;
        let name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
        Ok((pfd, name))
    }

    pub fn setattr(&self, id: u64, a: &SetAttr) -> Res<libc::stat> {
        self.writable()?;
        // Owners given are stored through the inverse of the mapping; one outside it is refused
        // before anything changes.
        let owners = &self.opts.show.owners;
        let a = &SetAttr {
            uid: a.uid.map(|u| owners.uid.store(u)).transpose()?,
            gid: a.gid.map(|g| owners.gid.store(g)).transpose()?,
            caller: a.caller,
            ..*a
        };
        // Unlinked, and still open: ftruncate, fchmod, fchown and futimens act on the file.
        if id != super::ROOT_ID && self.node(id)?.st.read().unwrap().names.is_empty() {
            return self.setattr_open_unlinked(id, a);
        }
        self.copy_up_for_write(id, a.size == Some(0))?;
        let _g = self.write_ns();
        self.copy_up(id)?;
        let (pfd, name) = self.upper_entry(id)?;
        let (pfd, name) = (pfd.as_raw_fd(), name.as_os_str());
        // What Linux filesystems do to a file that is truncated or given a new owner; a SETATTR
        // that changes nothing is the kernel's way (FUSE_HANDLE_KILLPRIV_V2) of saying a write
        // is about to come.
        if a.size.is_some() || a.changes_nothing() {
            self.drop_privileges(pfd, name, Change::Data, a.caller.as_ref())?;
        }
        if a.uid.is_some() || a.gid.is_some() {
            let cur = sys::fstatat(pfd, name)?;
            let uid = a.uid.unwrap_or(u32::MAX);
            let gid = a.gid.unwrap_or(u32::MAX);
            match sys::lchownat(pfd, name, uid, gid) {
                Err(libc::EPERM) if self.opts.xattr_permissions => {
                    let mut shown = cur;
                    super::xattr::apply_override(pfd, name, &mut shown);
                    let uid = a.uid.unwrap_or(shown.st_uid);
                    let gid = a.gid.unwrap_or(shown.st_gid);
                    super::xattr::set_override(pfd, name, uid, gid, shown.st_mode)?;
                }
                r => r?,
            }
            self.drop_privileges(pfd, name, Change::Owner, a.caller.as_ref())?;
        }
        if let Some(mode) = a.mode {
            self.set_mode(pfd, name, mode)?;
        }
        if let Some(size) = a.size {
            match a.fh.and_then(|fh| self.handle(fh).ok()) {
                Some(h) => sys::ftruncate(h.fd.as_raw_fd(), size)?,
                None => {
                    let f = sys::openat(pfd, name, libc::O_WRONLY, 0)?;
                    sys::ftruncate(f.as_raw_fd(), size)?;
                }
            }
        }
        if a.atime.is_some() || a.mtime.is_some() {
            sys::utimensat(pfd, name, &[timespec(a.atime), timespec(a.mtime)])?;
        }
        drop(_g);
        self.getattr(id)
    }
}
