//! Copy-up: bring a lower entry into the upper layer before its first change.
//!
//! The copy is built in `workdir/work` under a temporary name, with data (holes kept), owner,
//! mode, xattrs and timestamps, flushed to disk, and only then renamed into place: a crash
//! leaves either no copy or a whole one, never a partial file in the upper. A file's data is
//! copied without the namespace lock (`copy_up_for_write`); only the rename takes it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::{xattr, NodeState, Union};
use crate::inode::Record;
use crate::sys::{self, Res};

/// What a copy carries besides its data: set on an entry of `dirfd` in this order, because
/// chown clears set-id bits and file capabilities.
pub(crate) struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub times: Option<[libc::timespec; 2]>,
}

/// The lower entry a copy is made from, opened while the namespace lock is held: lower layers
/// never change, so the copy itself can then go on without it.
pub(crate) struct Source {
    layer: usize,
    path: PathBuf,
    dir: OwnedFd,
    name: OsString,
    st: libc::stat,
}

/// A complete copy in the workdir, not yet in place.
pub(crate) struct Built {
    tmp: OsString,
    kind: u32,
    upper_ino: u64,
    layer: usize,
    from: PathBuf,
    lower_nlink: u64,
    /// The copy carries its st_ino in an xattr, on disk with its data.
    numbered: bool,
    /// Data bytes copied, and when the copy began (only while someone traces the mount).
    bytes: u64,
    started: Option<std::time::Instant>,
}

impl Union {
    /// Copy node `id` (and its parents, first) up. The caller holds the namespace lock.
    pub fn copy_up(&self, id: u64) -> Res<()> {
        let (st, _) = self.resolve(id)?;
        if st.upper {
            return Ok(());
        }
        self.writable()?;
        let (parent, _) = st.names.first().cloned().ok_or(libc::ENOENT)?;
        self.copy_up(parent)?;
        if self.link_up_indexed(id, &st)? {
            return Ok(());
        }
        let src = self.source_of(&st)?;
        let built = self.build_copy(id, &src, true)?;
        self.install_copy(id, built)
    }

    /// Copy a node up before a change to its data or attributes (open for writing, setattr,
    /// setxattr) without holding the namespace lock while a file's data is copied: the rest of
    /// the mount goes on meanwhile, as with the kernel's copy-up. Only the rename into place
    /// takes the lock. Two callers for one node make one copy. With `truncate`, the caller is
    /// about to cut the file to nothing, so no data is copied.
    pub fn copy_up_for_write(&self, id: u64, truncate: bool) -> Res<()> {
        let node = self.node(id)?;
        if node.st.read().unwrap().upper {
            return Ok(());
        }
        self.writable()?;
        let _one = node.copying.lock().unwrap();
        let src = {
            let _g = self.write_ns();
            let (st, _) = self.resolve(id)?;
            if st.upper {
                return Ok(());
            }
            if st.kind != libc::S_IFREG {
                return self.copy_up(id); // no data: nothing worth leaving the lock for
            }
            let (parent, _) = st.names.first().cloned().ok_or(libc::ENOENT)?;
            self.copy_up(parent)?;
            if self.link_up_indexed(id, &st)? {
                return Ok(());
            }
            self.source_of(&st)?
        };
        let built = self.build_copy(id, &src, !truncate)?;
        let _g = self.write_ns();
        // Renames, unlinks and other copy-ups may have happened meanwhile.
        let parent = match self.resolve(id) {
            Ok((st, _)) if !st.upper => st.names.first().map(|n| n.0),
            Ok(_) => {
                self.discard_copy(&built);
                return Ok(());
            }
            Err(e) => {
                self.discard_copy(&built);
                return Err(e);
            }
        };
        if let Err(e) = parent.ok_or(libc::ENOENT).and_then(|p| self.copy_up(p)) {
            self.discard_copy(&built);
            return Err(e);
        }
        self.install_copy(id, built)
    }

    fn source_of(&self, st: &NodeState) -> Res<Source> {
        let loc = st.lowers.first().ok_or(libc::ENOENT)?;
        let (sparent, sname) = loc.parent_and_name();
        let dir = self.layer(loc.layer).dir(sparent)?;
        let sst = sys::fstatat(dir.as_raw_fd(), sname)?;
        Ok(Source {
            layer: loc.layer,
            path: loc.path.clone(),
            name: sname.to_os_string(),
            dir,
            st: sst,
        })
    }

    /// Build the copy of `src` (node `id`) in the workdir under a temporary name: data (holes
    /// kept, unless not `data`), owner, mode, xattrs, times and the st_ino it keeps, flushed to
    /// disk.
    fn build_copy(&self, id: u64, src: &Source, data: bool) -> Res<Built> {
        let started = self.events.on().then(std::time::Instant::now);
        let work = self.work_fd()?;
        let tmp = self.tmp_name();
        let sst = &self.stored_owner(src);
        let kind = sst.st_mode & libc::S_IFMT;
        let (sfd, sname) = (src.dir.as_raw_fd(), src.name.as_os_str());
        let mut numbered = false;
        let made = (|| -> Res<u64> {
            match kind {
                libc::S_IFREG => {
                    let d = sys::openat(
                        work,
                        &tmp,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )?;
                    if data {
                        let s = sys::openat(sfd, sname, libc::O_RDONLY | libc::O_NOATIME, 0)?;
                        sys::copy_data(s.as_raw_fd(), d.as_raw_fd(), sst.st_size as u64)?;
                    }
                    self.finish_copy(work, &tmp, sst, Some((sfd, sname)))?;
                    numbered = self.number_copy(work, &tmp, id)?;
                    // On disk before it becomes visible, as kernel overlayfs does.
                    sys::fsync(d.as_raw_fd(), false)?;
                }
                libc::S_IFDIR => {
                    sys::mkdirat(work, &tmp, 0o700)?;
                    self.finish_copy(work, &tmp, sst, Some((sfd, sname)))?;
                }
                libc::S_IFLNK => {
                    let target = sys::readlinkat(sfd, sname)?;
                    sys::symlinkat(&target, work, &tmp)?;
                    self.finish_copy(work, &tmp, sst, Some((sfd, sname)))?;
                    numbered = self.number_copy(work, &tmp, id)?;
                    if numbered {
                        sys::fsync_dir(work)?;
                    }
                }
                _ => {
                    self.make_special(work, &tmp, sst.st_mode, sst.st_rdev)?;
                    self.finish_copy(work, &tmp, sst, Some((sfd, sname)))?;
                    numbered = self.number_copy(work, &tmp, id)?;
                    if numbered {
                        sys::fsync_dir(work)?;
                    }
                }
            }
            Ok(sys::fstatat(work, &tmp)?.st_ino)
        })();
        match made {
            Ok(upper_ino) => Ok(Built {
                tmp,
                kind,
                upper_ino,
                layer: src.layer,
                from: src.path.clone(),
                lower_nlink: sst.st_nlink,
                numbered,
                bytes: if data && kind == libc::S_IFREG {
                    sst.st_size as u64
                } else {
                    0
                },
                started,
            }),
            Err(e) => {
                let _ = sys::unlinkat(work, &tmp, kind == libc::S_IFDIR);
                log::warn!("copy-up of /{} failed: {}", src.path.display(), errstr(e));
                Err(e)
            }
        }
    }

    /// The lower entry's stat with the owner a copy of it stores: as it is, unless the lower
    /// is seen through an idmapped mount, whose owners are already shown ids and are stored
    /// through the mapping's inverse like any owner a caller gives (unmapped: the overflow id).
    fn stored_owner(&self, src: &Source) -> libc::stat {
        let mut st = src.st;
        if self.mapped_by_mount(src.layer) {
            let o = &self.opts.show.owners;
            st.st_uid = o.uid.store(st.st_uid).unwrap_or(super::idmap::OVERFLOW_ID);
            st.st_gid = o.gid.store(st.st_gid).unwrap_or(super::idmap::OVERFLOW_ID);
        }
        st
    }

    fn discard_copy(&self, b: &Built) {
        if let Ok(work) = self.work_fd() {
            let _ = sys::unlinkat(work, &b.tmp, b.kind == libc::S_IFDIR);
        }
    }

    /// Put a built copy of node `id` in place at its name. The caller holds the namespace lock
    /// and has copied up its parent. The copy's identity is on disk first (its record, and
    /// for a hard-linked lower file its index link): once a name shows it, a crash cannot
    /// give it another number or another copy. A hard-linked lower file's other known names
    /// are linked to it at once.
    fn install_copy(&self, id: u64, b: Built) -> Res<()> {
        let work = self.work_fd()?;
        let (st, path) = match self.resolve(id) {
            Ok(r) => r,
            Err(e) => {
                self.discard_copy(&b);
                return Err(e);
            }
        };
        let name = path.file_name().unwrap_or(OsStr::new("")).to_os_string();
        let linked = b.kind == libc::S_IFREG && b.lower_nlink > 1;
        let placed = (|| -> Res<libc::stat> {
            let ufd = self.layer(0).dir(path.parent().unwrap_or(Path::new("")))?;
            let pst = sys::fstatat(ufd.as_raw_fd(), OsStr::new(""))?;
            let rec = Record {
                ino: id,
                links: linked.then_some((b.lower_nlink.min(u32::MAX as u64) as u32, 1)),
            };
            // A directory needs no record: a copied-up directory always merges with the lower
            // one it came from (a rename keeps it through its redirect), and a merged
            // directory's number is its top-most lower directory's (ino_of, readdir). So the
            // first copy-up of a container start, nearly always a directory on the way to a
            // new file, makes no table. A numbered copy carries its number itself; any other
            // copy's number is kept only by its record, which must then be durable. So must a
            // linked one's count of links.
            if b.kind != libc::S_IFDIR {
                self.inodes
                    .put(b.upper_ino, rec, !b.numbered || linked)
                    .map_err(|e| crate::inode::errno(&e))?;
            }
            if linked {
                self.index_add(work, &b.tmp, id)?;
            }
            sys::renameat2(work, &b.tmp, ufd.as_raw_fd(), &name, libc::RENAME_NOREPLACE)?;
            Ok(pst)
        })();
        let pst = match placed {
            Ok(pst) => pst,
            Err(e) => {
                self.inodes.remove(b.upper_ino);
                if linked {
                    self.index_remove(id);
                }
                self.discard_copy(&b);
                log::warn!("copy-up of /{} failed: {}", path.display(), errstr(e));
                return Err(e);
            }
        };
        // Copy-up is invisible to users: the parent keeps its timestamps.
        if let Ok(ufd) = self.layer(0).dir(path.parent().unwrap_or(Path::new(""))) {
            let _ = sys::utimensat(ufd.as_raw_fd(), OsStr::new(""), &sys::times_of(&pst));
        }
        if let Ok(n) = self.node(id) {
            n.st.write().unwrap().upper = true;
        }
        if b.kind == libc::S_IFDIR {
            self.unsynced_dirs.insert(id);
        }
        log::info!(
            "copy-up /{}: {} from lower layer {} ({})",
            path.display(),
            kind_name(b.kind),
            b.layer,
            self.layer(b.layer).path.join(&b.from).display()
        );
        self.events.emit(|name| super::events::Event::CopyUp {
            path: name(&path),
            kind: kind_name(b.kind).into(),
            layer: b.layer,
            source: self.layer(b.layer).path.join(&b.from).display().to_string(),
            bytes: b.bytes,
            micros: b.started.map_or(0, |t| t.elapsed().as_micros() as u64),
        });
        if linked {
            for (p, n) in st.names.iter().skip(1) {
                if let Err(e) = self.link_name(id, *p, n) {
                    log::warn!(
                        "copy-up /{}: cannot link its other name {:?}: {}",
                        path.display(),
                        n,
                        errstr(e)
                    );
                }
            }
        }
        Ok(())
    }

    /// Copy xattrs (from `src` if given), then owner, mode and times of `sst` onto
    /// `name` in `dirfd`.
    pub(crate) fn finish_copy(
        &self,
        dirfd: i32,
        name: &OsStr,
        sst: &libc::stat,
        src: Option<(i32, &OsStr)>,
    ) -> Res<()> {
        let attrs = Attrs {
            uid: sst.st_uid,
            gid: sst.st_gid,
            mode: sst.st_mode,
            times: Some(sys::times_of(sst)),
        };
        // Owner first: chown drops set-id bits and security.capability, which come after it.
        self.set_owner_mode(dirfd, name, &attrs)?;
        if let Some((sfd, sname)) = src {
            xattr::copy_all(sfd, sname, dirfd, name)?;
        }
        if let Some(t) = attrs.times {
            sys::utimensat(dirfd, name, &t)?;
        }
        Ok(())
    }

    /// chown + chmod, keeping what the filesystem refuses (rootless) in the override xattr.
    pub(crate) fn set_owner_mode(&self, dirfd: i32, name: &OsStr, a: &Attrs) -> Res<()> {
        let kind = a.mode & libc::S_IFMT;
        let mut refused = false;
        let mut on_disk = sys::fstatat(dirfd, name)?;
        if on_disk.st_uid != a.uid || on_disk.st_gid != a.gid {
            match sys::lchownat(dirfd, name, a.uid, a.gid) {
                // chown may have cleared set-id bits: look again before chmod.
                Ok(()) => on_disk = sys::fstatat(dirfd, name)?,
                Err(libc::EPERM) | Err(libc::EINVAL) if self.opts.xattr_permissions => {
                    refused = true
                }
                // An unprivileged graft: what the host lets its owner do is what it gets.
                Err(libc::EPERM) if self.opts.plain && sys::geteuid() != 0 => {}
                Err(e) => return Err(e),
            }
        }
        if kind != libc::S_IFLNK {
            let want = a.mode & 0o7777;
            if on_disk.st_mode & 0o7777 != want {
                sys::chmodat(dirfd, name, want)?;
            }
            if on_disk.st_mode & libc::S_IFMT != kind {
                refused = true; // a special file stood in by a regular one
            }
        }
        if refused {
            xattr::set_override(dirfd, name, a.uid, a.gid, a.mode)?;
        }
        Ok(())
    }

    /// mknod, or, where the filesystem refuses device nodes (rootless), an empty regular file
    /// whose real type is kept in the override xattr by `set_owner_mode`.
    pub(crate) fn make_special(&self, dirfd: i32, name: &OsStr, mode: u32, rdev: u64) -> Res<()> {
        match sys::mknodat(dirfd, name, mode, rdev) {
            Err(libc::EPERM) if self.opts.xattr_permissions => {
                let fd = sys::openat(
                    dirfd,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                )?;
                drop(fd);
                Ok(())
            }
            r => r,
        }
    }
}

pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        libc::S_IFSOCK => "socket",
        _ => "entry",
    }
}

/// The message of errno `e`, without Rust's " (os error N)" suffix.
pub fn errstr(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
