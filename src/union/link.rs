//! Hard links across copy-up, as kernel overlayfs keeps them with `index=on`.
//!
//! Two names of one lower file are one node (one st_ino). Its copy-up copies the data once
//! and links every name of it that the union knows into the upper, so a write through one name
//! is seen through all of them, and kernel overlayfs reads the same link from the upper. Names
//! not looked up yet are linked up at their first lookup: the copy also gets a link in
//! `workdir/strata/index/`, named by the node's id, from which any later name, in this mount or
//! after a remount, is linked up. The inode table's record says how many names the file had in
//! its lower layer and how many the upper holds, so st_nlink shows the file's names, neither
//! the index link nor a name counted twice. Once every lower name is linked up, the index link
//! and the counts go: the upper then holds plain hard links, as kernel overlayfs reads them.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Found, NodeState, Union};
use crate::inode::Record;
use crate::sys::{self, Res};

fn index_name(id: u64) -> OsString {
    OsString::from(format!("{id:016x}"))
}

impl Union {
    /// `workdir/strata/index`, made at first use.
    fn index_dir(&self) -> Res<i32> {
        if let Some(fd) = self.index.get() {
            return Ok(fd.as_raw_fd());
        }
        let work = self.work_fd()?;
        let own: OwnedFd = sys::openat(
            work,
            OsStr::new("../strata"),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        match sys::mkdirat(own.as_raw_fd(), OsStr::new("index"), 0o700) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let fd = sys::openat(
            own.as_raw_fd(),
            OsStr::new("index"),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        Ok(self.index.get_or_init(|| fd).as_raw_fd())
    }

    /// Does the index hold a copy of node `id`? Lookups of lower hard links ask, so while the
    /// index is empty or absent (most mounts) the answer costs no syscall, and a lookup never
    /// makes the index.
    fn indexed(&self, id: u64) -> bool {
        let used = self.index_used.get_or_init(|| {
            let held = self.work_fd().ok().and_then(|w| {
                sys::openat(
                    w,
                    OsStr::new("../strata/index"),
                    libc::O_PATH | libc::O_DIRECTORY,
                    0,
                )
                .ok()
            });
            AtomicBool::new(held.is_some_and(|d| {
                sys::read_dir(d.as_raw_fd())
                    .map(|e| !e.is_empty())
                    .unwrap_or(true)
            }))
        });
        if !used.load(Ordering::Relaxed) {
            return false;
        }
        self.index_dir()
            .is_ok_and(|d| sys::stat_opt(d, &index_name(id)).ok().flatten().is_some())
    }

    /// Link the copy `tmp` (in `work`) into the index as node `id`, replacing what a crash may
    /// have left there.
    pub(crate) fn index_add(&self, work: i32, tmp: &OsStr, id: u64) -> Res<()> {
        let idx = self.index_dir()?;
        let name = index_name(id);
        self.index_used
            .get_or_init(|| AtomicBool::new(true))
            .store(true, Ordering::Relaxed);
        match sys::linkat(work, tmp, idx, &name) {
            Err(libc::EEXIST) => {
                sys::unlinkat(idx, &name, false)?;
                sys::linkat(work, tmp, idx, &name)
            }
            r => r,
        }
    }

    pub(crate) fn index_remove(&self, id: u64) {
        if let Ok(idx) = self.index_dir() {
            let _ = sys::unlinkat(idx, &index_name(id), false);
        }
    }

    /// Link node `id`'s indexed copy into the upper as `name` in `parent` (a name it has in the
    /// lower layer), copying the parent up first.
    pub(crate) fn link_name(&self, id: u64, parent: u64, name: &OsStr) -> Res<()> {
        self.copy_up(parent)?;
        let ppath = self.path_of(parent)?;
        let pfd = self.layer(0).dir(&ppath)?;
        let pst = sys::fstatat(pfd.as_raw_fd(), OsStr::new(""))?;
        let idx = self.index_dir()?;
        let iname = index_name(id);
        match sys::linkat(idx, &iname, pfd.as_raw_fd(), name) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let _ = sys::utimensat(pfd.as_raw_fd(), OsStr::new(""), &sys::times_of(&pst));
        let ino = sys::fstatat(idx, &iname)?.st_ino;
        if let Some(mut rec) = self.inodes.record(ino) {
            if let Some((lower, linked)) = rec.links {
                let linked = linked + 1;
                // Every lower name is in the upper now: the index link has done its work, and
                // the upper reads as plain hard links, under kernel overlayfs too.
                rec.links = (linked < lower).then_some((lower, linked));
                self.inodes
                    .put(ino, rec, true)
                    .map_err(|e| crate::inode::errno(&e))?;
                if rec.links.is_none() {
                    sys::unlinkat(idx, &iname, false)?;
                }
            }
        }
        log::info!(
            "link-up /{}: another name of a copied-up hard link",
            ppath.join(name).display()
        );
        Ok(())
    }

    /// Copy-up of a node whose data another name brought up already: link it in. The caller
    /// holds the namespace lock and has copied up the parent.
    pub(crate) fn link_up_indexed(&self, id: u64, st: &NodeState) -> Res<bool> {
        if st.kind != libc::S_IFREG || !self.indexed(id) {
            return Ok(false);
        }
        let (parent, name) = st.names.first().cloned().ok_or(libc::ENOENT)?;
        self.link_name(id, parent, &name)?;
        if let Ok(n) = self.node(id) {
            n.st.write().unwrap().upper = true;
        }
        Ok(true)
    }

    /// Is `found`, seen only in a lower layer, a name of a hard-linked file that another name
    /// has already copied up (so that this name must be linked up before it is shown)?
    pub(crate) fn needs_link_up(&self, found: &Found) -> bool {
        match (&found.upper, found.lowers.first()) {
            (None, Some((l, st))) => {
                st.st_mode & libc::S_IFMT == libc::S_IFREG
                    && st.st_nlink > 1
                    && self.writable().is_ok()
                    && self.work.is_some()
                    && self.indexed(self.encode(l.layer, st.st_ino))
            }
            _ => false,
        }
    }

    /// Link up `name` in `parent` (see `needs_link_up`), taking the namespace lock.
    pub(crate) fn link_up(&self, parent: u64, name: &OsStr) -> Res<()> {
        let _g = self.write_ns();
        let (pst, ppath) = self.resolve(parent)?;
        let Some(found) = self.find(&pst, &ppath, name)? else {
            return Ok(());
        };
        if !self.needs_link_up(&found) {
            return Ok(());
        }
        let id = self.ino_of(&found);
        self.link_name(id, parent, name)
    }

    /// The link count to show for upper inode `st`: its names, not its index link, and the
    /// names its lower layer still holds.
    pub(crate) fn shown_nlink(&self, st: &libc::stat) -> libc::nlink_t {
        match self.inodes.record(st.st_ino) {
            Some(Record {
                links: Some((lower, linked)),
                ..
            }) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                (st.st_nlink.saturating_sub(1)) + (lower.saturating_sub(linked)) as libc::nlink_t
            }
            _ => st.st_nlink,
        }
    }

    /// One name of upper inode `st` is about to go (unlink, or replaced by a rename): forget
    /// the inode when it was its last, with its index link.
    pub(crate) fn upper_name_gone(&self, st: &libc::stat) {
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            self.inodes.remove(st.st_ino);
            return;
        }
        match self.inodes.record(st.st_ino) {
            Some(Record {
                ino,
                links: Some(_),
            }) => {
                if self.shown_nlink(st) <= 1 {
                    self.index_remove(ino);
                    self.inodes.remove(st.st_ino);
                }
            }
            _ => {
                if st.st_nlink <= 1 {
                    self.inodes.remove(st.st_ino);
                }
            }
        }
    }
}
