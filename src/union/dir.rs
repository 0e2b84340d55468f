//! Namespace changes: create, remove, link and rename, with whiteouts, opaque directories and
//! redirects written in the upper layer.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::copy_up::{kind_name, Attrs};
use super::events::Event;
use super::layer::{whiteout_name, Probe};
use super::{Found, NodeState, Union, ROOT_ID};
use crate::sys::{self, Res};

/// Who asks: the owner new entries get, and whose privileges decide what a write keeps.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The process, as the mount's PID namespace numbers it (0: not known).
    pub pid: u32,
}

impl Caller {
    /// Is `gid` the caller's group or one of its supplementary groups?
    pub fn in_group(&self, gid: u32) -> bool {
        if self.gid == gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|g| g.parse() == Ok(gid)))
    }
}

/// What to make in `make_entry`.
pub enum NewEntry<'a> {
    File { flags: i32 },
    Dir,
    Special { rdev: u64 },
    Symlink { target: &'a OsStr },
    Link { id: u64 },
}

/// A whiteout that stands in the upper where a new entry goes.
#[derive(PartialEq)]
enum Covered {
    Nothing,
    Device,
    WhFile,
}

impl Union {
    /// The upper directory of node `id`, copied up if needed.
    fn upper_dir(&self, id: u64) -> Res<(OwnedFd, NodeState, std::path::PathBuf)> {
        self.copy_up(id)?;
        let (st, path) = self.resolve(id)?;
        Ok((self.layer(0).dir(&path)?, st, path))
    }

    /// Create `name` in `parent`: a file (returning its open fd), directory, special file,
    /// symlink or hard link. Over a whiteout the entry is built in the workdir and renamed into
    /// place, so that the name is never missing and never half made. `mode` is the mode asked
    /// for; the caller's `umask` applies unless the directory has a default ACL, which the
    /// entry then inherits (see acl).
    pub fn make_entry(
        &self,
        parent: u64,
        name: &OsStr,
        what: NewEntry<'_>,
        mode: u32,
        umask: u32,
        who: Caller,
    ) -> Res<(u64, libc::stat, Option<OwnedFd>)> {
        self.writable()?;
        if self.is_marker_name(name) {
            return Err(libc::EINVAL);
        }
        // The caller's ids as stored on disk. A caller the mapping cannot represent (host
        // root preparing a container's root, as podman does before the container starts)
        // makes an entry owned by the overflow id, as fuse-overlayfs stores it: inside the
        // container it is nobody's, as kernel overlayfs shows a file host root made.
        let owners = &self.opts.show.owners;
        let who = Caller {
            uid: owners
                .uid
                .store(who.uid)
                .unwrap_or(super::idmap::OVERFLOW_ID),
            gid: owners
                .gid
                .store(who.gid)
                .unwrap_or(super::idmap::OVERFLOW_ID),
            pid: who.pid,
        };
        let _g = self.write_ns();
        let (pst, ppath) = self.resolve(parent)?;
        if self.find_shallow(&pst, &ppath, name)?.is_some() {
            return Err(libc::EEXIST);
        }
        if let NewEntry::Link { id } = what {
            self.copy_up(id)?;
        }
        let (ufd, _, ppath) = self.upper_dir(parent)?;
        let ufd = ufd.as_raw_fd();
        let covered = match self.probe(ufd, name)? {
            Probe::Whiteout => {
                if sys::stat_opt(ufd, name)?.is_some() {
                    Covered::Device
                } else {
                    Covered::WhFile
                }
            }
            _ => Covered::Nothing,
        };
        // Over a device whiteout the entry is built aside and renamed over it; otherwise it is
        // made in place (a `.wh.` file is removed once the entry exists).
        let (dfd, dname) = if covered == Covered::Device {
            (self.work_fd()?, self.tmp_name())
        } else {
            (ufd, name.to_os_string())
        };
        let parent_st = sys::fstatat(ufd, OsStr::new(""))?;
        let sgid = parent_st.st_mode & libc::S_ISGID != 0;
        let gid = if sgid { parent_st.st_gid } else { who.gid };
        let kind = match &what {
            NewEntry::File { .. } | NewEntry::Link { .. } => libc::S_IFREG,
            NewEntry::Dir => libc::S_IFDIR,
            NewEntry::Special { .. } => mode & libc::S_IFMT,
            NewEntry::Symlink { .. } => libc::S_IFLNK,
        };
        let inherited = match &what {
            NewEntry::Link { .. } | NewEntry::Symlink { .. } => None,
            _ => Some(self.inherited(ufd, kind | (mode & 0o7777), umask)?),
        };
        let mode = inherited.as_ref().map_or(mode, |i| i.mode);
        let mut file = None;
        let made = (|| -> Res<()> {
            match &what {
                NewEntry::File { flags } => {
                    let keep = !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC);
                    let fl = (flags & keep) | libc::O_CREAT | libc::O_EXCL;
                    file = Some(sys::openat(dfd, &dname, fl, 0o600)?);
                }
                NewEntry::Dir => {
                    sys::mkdirat(dfd, &dname, 0o700)?;
                    if covered != Covered::Nothing {
                        // A new directory over a deleted one must not show what was below.
                        self.set_opaque(dfd, &dname)?;
                    }
                }
                NewEntry::Special { rdev } => self.make_special(dfd, &dname, mode, *rdev)?,
                NewEntry::Symlink { target } => sys::symlinkat(target, dfd, &dname)?,
                NewEntry::Link { id } => {
                    let (st, path) = self.resolve(*id)?;
                    if st.is_dir() {
                        return Err(libc::EPERM);
                    }
                    let sfd = self.layer(0).dir(path.parent().unwrap_or(Path::new("")))?;
                    let sname = path.file_name().ok_or(libc::EINVAL)?;
                    // A link is the same inode: its owner and mode stay as they are.
                    return sys::linkat(sfd.as_raw_fd(), sname, dfd, &dname);
                }
            }
            if let Some(i) = &inherited {
                // Before the chmod, which then leaves the ACL's entries as they are (they say
                // what the mode says).
                self.set_inherited(dfd, &dname, i)?;
            }
            let mut m = kind | (mode & 0o7777);
            if kind == libc::S_IFDIR && sgid {
                m |= libc::S_ISGID;
            }
            self.set_owner_mode(
                dfd,
                &dname,
                &Attrs {
                    uid: who.uid,
                    gid,
                    mode: m,
                    times: None,
                },
            )
        })();
        if let Err(e) = made {
            if !matches!(what, NewEntry::Link { .. }) || covered == Covered::Device {
                let _ = sys::unlinkat(dfd, &dname, kind == libc::S_IFDIR);
            }
            return Err(e);
        }
        match covered {
            Covered::Device => {
                let r = if kind == libc::S_IFDIR {
                    // rename(2) cannot put a directory over a device: swap and drop the whiteout.
                    sys::renameat2(dfd, &dname, ufd, name, libc::RENAME_EXCHANGE)
                        .and_then(|_| sys::unlinkat(dfd, &dname, false))
                } else {
                    sys::renameat2(dfd, &dname, ufd, name, 0)
                };
                if let Err(e) = r {
                    let _ = sys::unlinkat(dfd, &dname, kind == libc::S_IFDIR);
                    return Err(e);
                }
            }
            Covered::WhFile => sys::unlinkat(ufd, &whiteout_name(name), false)?,
            Covered::Nothing => {}
        }
        let ust = sys::fstatat(ufd, name)?;
        if !matches!(what, NewEntry::Link { .. }) {
            // A brand-new inode may reuse the number of a deleted copied-up file: it must not
            // inherit that file's identity.
            self.inodes.remove(ust.st_ino);
        }
        // Nothing below shows through a new entry: there was nothing visible there, and a
        // directory made over a whiteout is opaque.
        let found = Found {
            upper: Some(ust),
            lowers: Vec::new(),
        };
        let node = if matches!(what, NewEntry::Link { .. }) {
            self.remember_counted(parent, name, &found, 1)
        } else {
            self.remember_new(parent, name, &found)
        };
        let mut st = *found.top();
        self.fix_stat(node.id, &mut st, 0, &ppath.join(name));
        let made_path = ppath.join(name);
        self.events.emit(|n| Event::Create {
            path: n(&made_path),
            kind: match what {
                NewEntry::Link { .. } => "hard link".into(),
                _ => kind_name(kind).into(),
            },
        });
        if kind == libc::S_IFDIR && covered != Covered::Nothing {
            log::info!(
                "opaque /{}: new directory over a deleted one; nothing below shows through",
                ppath.join(name).display()
            );
            self.events.emit(|n| Event::Opaque {
                path: n(&made_path),
                format: format!("xattr {}", self.opts.xattr_ns.opaque()),
                reason: "new directory over a deleted one; nothing below shows through".into(),
            });
        } else {
            log::debug!(
                "create /{}: {}",
                ppath.join(name).display(),
                kind_name(kind)
            );
        }
        Ok((node.id, st, file))
    }

    pub(crate) fn set_opaque(&self, dirfd: i32, name: &OsStr) -> Res<()> {
        let p = sys::xattr_path(dirfd, name)?;
        sys::lsetxattr(&p, OsStr::new(self.opts.xattr_ns.opaque()), b"y", 0)
    }

    fn whiteout_format(&self) -> &'static str {
        if self.opts.kernel_whiteouts {
            "char device 0:0"
        } else {
            ".wh. file"
        }
    }

    fn set_redirect(&self, dirfd: i32, name: &OsStr, origin: &Path) -> Res<()> {
        let p = sys::xattr_path(dirfd, name)?;
        let mut v = b"/".to_vec();
        v.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(origin.as_os_str()));
        sys::lsetxattr(&p, OsStr::new(self.opts.xattr_ns.redirect()), &v, 0)
    }

    /// Write a whiteout for `name` in upper directory `ufd`, replacing whatever the upper has
    /// there in one rename when whiteouts are devices.
    /// Put a whiteout at `name` in `dirfd`: in the kernel's format, a char device 0:0; with
    /// `oci`, the empty file `name` (the caller passes `.wh.NAME`). Like kernel overlayfs, strata
    /// hard-links one shared whiteout kept in the workdir rather than making a new inode for each
    /// deletion, which is most of what an unlink would otherwise cost the upper's filesystem.
    fn make_whiteout(&self, dirfd: i32, name: &OsStr, oci: bool) -> Res<()> {
        let make = |d: i32, n: &OsStr| {
            if oci {
                sys::openat(d, n, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o600).map(drop)
            } else {
                sys::mknodat(d, n, libc::S_IFCHR, 0)
            }
        };
        let Ok(work) = self.work_fd() else {
            return make(dirfd, name);
        };
        let shared = OsStr::new(if oci {
            "#strata-whiteout-file"
        } else {
            "#strata-whiteout"
        });
        for _ in 0..3 {
            match sys::linkat(work, shared, dirfd, name) {
                Ok(()) => return Ok(()),
                Err(libc::ENOENT) => match make(work, shared) {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(_) => break,
                },
                Err(libc::EMLINK) => {
                    // Full of links: later whiteouts share a new one; the old links stay.
                    let tmp = self.tmp_name();
                    if make(work, &tmp).is_err()
                        || sys::renameat2(work, &tmp, work, shared, 0).is_err()
                    {
                        let _ = sys::unlinkat(work, &tmp, false);
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        make(dirfd, name)
    }

    fn whiteout(&self, ufd: i32, name: &OsStr, replace: bool, is_dir: bool) -> Res<()> {
        if self.opts.kernel_whiteouts {
            if !replace {
                return self.make_whiteout(ufd, name, false);
            }
            let work = self.work_fd()?;
            let tmp = self.tmp_name();
            self.make_whiteout(work, &tmp, false)?;
            let flags = if is_dir { libc::RENAME_EXCHANGE } else { 0 };
            if let Err(e) = sys::renameat2(work, &tmp, ufd, name, flags) {
                let _ = sys::unlinkat(work, &tmp, false);
                return Err(e);
            }
            if is_dir {
                remove_tree(work, &tmp)?;
            }
            Ok(())
        } else {
            match self.make_whiteout(ufd, &whiteout_name(name), true) {
                Ok(()) | Err(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            if replace {
                if is_dir {
                    self.discard(ufd, name)?;
                } else {
                    sys::unlinkat(ufd, name, false)?;
                }
            }
            Ok(())
        }
    }

    /// Move an upper directory out of the way into the workdir and delete it there.
    fn discard(&self, ufd: i32, name: &OsStr) -> Res<()> {
        let work = self.work_fd()?;
        let tmp = self.tmp_name();
        sys::renameat2(ufd, name, work, &tmp, 0)?;
        remove_tree(work, &tmp)
    }

    pub fn unlink(&self, parent: u64, name: &OsStr, rmdir: bool) -> Res<()> {
        self.writable()?;
        let _g = self.write_ns();
        let (pst, ppath) = self.resolve(parent)?;
        let found = self.find_shallow(&pst, &ppath, name)?.ok_or(libc::ENOENT)?;
        let is_dir = found.kind() == libc::S_IFDIR;
        if rmdir && !is_dir {
            return Err(libc::ENOTDIR);
        }
        if !rmdir && is_dir {
            return Err(libc::EISDIR);
        }
        if pst.upper {
            // Before anything else, as the VFS does: where the entry is only lower, strata
            // would otherwise create a whiteout, which an append-only directory allows.
            super::fileattr::check_removal(self.layer(0).dir(&ppath)?.as_raw_fd())?;
        }
        let id = self.ino_of(&found);
        if is_dir {
            let node_state = found.state(parent, name);
            if !self
                .merged_entries(&node_state, &ppath.join(name))?
                .is_empty()
            {
                return Err(libc::ENOTEMPTY);
            }
        }
        let has_lower = !found.lowers.is_empty() || self.lower_exists(&pst, name)?;
        if is_dir {
            self.keep_removed_dir(id, &found, &ppath.join(name));
        }
        let (ufd, _, _) = self.upper_dir(parent)?;
        let ufd = ufd.as_raw_fd();
        match (&found.upper, has_lower) {
            (Some(_), true) => self.whiteout(ufd, name, true, is_dir)?,
            (Some(_), false) => {
                if is_dir && !self.opts.plain {
                    // An upper-only directory may still hold whiteouts of its own (a plain
                    // tree's directory is empty when it looks empty).
                    self.discard(ufd, name)?;
                } else {
                    sys::unlinkat(ufd, name, false)?;
                }
            }
            (None, _) => self.whiteout(ufd, name, false, is_dir)?,
        }
        if let Some(u) = &found.upper {
            self.upper_name_gone(u);
        }
        if has_lower {
            log::info!(
                "whiteout /{}: hides the lower {} ({})",
                ppath.join(name).display(),
                kind_name(found.kind()),
                self.whiteout_format()
            );
        }
        let gone = ppath.join(name);
        self.events.emit(|n| {
            let path = n(&gone);
            if rmdir {
                Event::Rmdir { path }
            } else {
                Event::Unlink { path }
            }
        });
        if has_lower {
            self.events.emit(|n| Event::Whiteout {
                path: n(&gone),
                kind: kind_name(found.kind()).into(),
                format: self.whiteout_format().into(),
                cause: if rmdir { "rmdir" } else { "unlink" }.into(),
            });
        }
        self.forget_name(id, parent, name);
        Ok(())
    }

    pub fn link(
        &self,
        id: u64,
        newparent: u64,
        newname: &OsStr,
        who: Caller,
    ) -> Res<(u64, libc::stat)> {
        let (id2, st, _) = self.make_entry(newparent, newname, NewEntry::Link { id }, 0, 0, who)?;
        debug_assert_eq!(id, id2);
        Ok((id2, st))
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Res<()> {
        self.writable()?;
        if self.is_marker_name(newname) {
            return Err(libc::EINVAL);
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return Err(libc::EINVAL);
        }
        let _g = self.write_ns();
        let (pst, ppath) = self.resolve(parent)?;
        let (npst, nppath) = self.resolve(newparent)?;
        let src = self.find_shallow(&pst, &ppath, name)?.ok_or(libc::ENOENT)?;
        let dst = self.find_shallow(&npst, &nppath, newname)?;
        let src_id = self.ino_of(&src);
        let dst_id = dst.as_ref().map(|d| self.ino_of(d));
        let src_dir = src.kind() == libc::S_IFDIR;
        if dst.is_some() && noreplace {
            return Err(libc::EEXIST);
        }
        if exchange && dst.is_none() {
            return Err(libc::ENOENT);
        }
        if dst_id == Some(src_id) {
            return Ok(()); // two names of one file: rename(2) does nothing
        }
        if src_dir && self.is_ancestor(src_id, newparent)? {
            return Err(libc::EINVAL);
        }
        if let Some(d) = &dst {
            let dst_dir = d.kind() == libc::S_IFDIR;
            if exchange {
                if dst_dir && !d.lowers.is_empty() && !self.opts.redirect_create {
                    return Err(libc::EXDEV);
                }
                if dst_dir && self.is_ancestor(dst_id.unwrap(), parent)? {
                    return Err(libc::EINVAL);
                }
            } else if src_dir && !dst_dir {
                return Err(libc::ENOTDIR);
            } else if !src_dir && dst_dir {
                return Err(libc::EISDIR);
            } else if dst_dir {
                let ds = d.state(newparent, newname);
                if !self.merged_entries(&ds, &nppath.join(newname))?.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
            }
        }
        if src_dir && !src.lowers.is_empty() && !self.opts.redirect_create {
            return Err(libc::EXDEV);
        }

        if let (Some(d), Some(dst), false) = (dst_id, &dst, exchange) {
            if dst.kind() == libc::S_IFDIR {
                self.keep_removed_dir(d, dst, &nppath.join(newname));
            }
        }
        // Everything involved goes up first: both parents, the source, and for an exchange the
        // target too. Copy-up follows a node's first name, so these names go first.
        self.remember(parent, name, &src);
        self.copy_up(src_id)?;
        if exchange {
            self.remember(newparent, newname, dst.as_ref().unwrap());
            self.copy_up(dst_id.unwrap())?;
        }
        let (ofd, _, _) = self.upper_dir(parent)?;
        let (nfd, npst, _) = self.upper_dir(newparent)?;
        let (ofd, nfd) = (ofd.as_raw_fd(), nfd.as_raw_fd());
        let src_has_lower = !src.lowers.is_empty() || self.lower_exists(&pst, name)?;

        // A directory with lower layers keeps finding them at its origin after the move.
        if src_dir {
            if let Some((origin, _)) = src.lowers.first() {
                self.set_redirect(ofd, name, &origin.path)?;
                log::info!(
                    "redirect /{} -> /{}: lower layers stay at /{}",
                    ppath.join(name).display(),
                    nppath.join(newname).display(),
                    origin.path.display()
                );
                self.events.emit(|n| Event::Redirect {
                    path: n(&nppath.join(newname)),
                    from: n(&ppath.join(name)),
                    origin: format!("/{}", origin.path.display()),
                });
            } else if !exchange && self.lower_exists(&npst, newname)? {
                // An upper-only directory moving onto a name with lower content must hide it.
                self.set_opaque(ofd, name)?;
                self.events.emit(|n| Event::Opaque {
                    path: n(&nppath.join(newname)),
                    format: format!("xattr {}", self.opts.xattr_ns.opaque()),
                    reason: "moved onto a name the lower layers have; they stay hidden".into(),
                });
            }
        }
        if exchange {
            let d = dst.as_ref().unwrap();
            if d.kind() == libc::S_IFDIR {
                if let Some((origin, _)) = d.lowers.first() {
                    self.set_redirect(nfd, newname, &origin.path)?;
                } else if self.lower_exists(&pst, name)? {
                    self.set_opaque(nfd, newname)?;
                }
            }
            if src_dir && src.lowers.is_empty() && self.lower_exists(&npst, newname)? {
                self.set_opaque(ofd, name)?;
            }
            sys::renameat2(ofd, name, nfd, newname, libc::RENAME_EXCHANGE)?;
        } else {
            // What the upper has at the target: a real entry is replaced; a merged-empty
            // directory is discarded first (it may still hold whiteouts); a whiteout is replaced.
            let mut target_wh_file = false;
            let mut target_wh_dev = false;
            match self.probe(nfd, newname)? {
                Probe::Entry(st)
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR && !self.opts.plain =>
                {
                    self.discard(nfd, newname)?;
                }
                Probe::Entry(st) => self.upper_name_gone(&st),
                Probe::Whiteout => {
                    target_wh_file = sys::stat_opt(nfd, newname)?.is_none();
                    target_wh_dev = !target_wh_file;
                }
                Probe::Absent => {}
            }
            if src_dir && target_wh_dev {
                // A directory cannot replace a device: swap the two. The whiteout lands on the
                // old name, which is where one is needed if anything below still shows there.
                sys::renameat2(ofd, name, nfd, newname, libc::RENAME_EXCHANGE)?;
                if !src_has_lower {
                    sys::unlinkat(ofd, name, false)?;
                }
            } else {
                self.rename_leaving_whiteout(ofd, name, nfd, newname, src_has_lower)?;
            }
            if target_wh_file {
                sys::unlinkat(nfd, &whiteout_name(newname), false)?;
            }
            if src_has_lower {
                log::info!(
                    "whiteout /{}: left behind by rename",
                    ppath.join(name).display()
                );
                self.events.emit(|n| Event::Whiteout {
                    path: n(&ppath.join(name)),
                    kind: kind_name(src.kind()).into(),
                    format: self.whiteout_format().into(),
                    cause: "rename".into(),
                });
            }
        }
        self.events.emit(|n| Event::Rename {
            from: n(&ppath.join(name)),
            to: n(&nppath.join(newname)),
        });

        // The nodes follow.
        self.forget_name(src_id, parent, name);
        if let Some(d) = dst_id {
            self.forget_name(d, newparent, newname);
        }

        let moved = self
            .find_shallow(&npst, &nppath, newname)?
            .ok_or(libc::EIO)?;
        self.remember(newparent, newname, &moved);
        if exchange {
            if let Some(back) = self.find_shallow(&pst, &ppath, name)? {
                self.remember(parent, name, &back);
            }
        }
        Ok(())
    }

    /// rename(2) in the upper; with `whiteout`, the old name is left hidden from the lower layers
    /// (in one step with RENAME_WHITEOUT where the upper's filesystem has it).
    fn rename_leaving_whiteout(
        &self,
        ofd: i32,
        name: &OsStr,
        nfd: i32,
        newname: &OsStr,
        whiteout: bool,
    ) -> Res<()> {
        if !whiteout {
            return sys::renameat2(ofd, name, nfd, newname, 0);
        }
        if self.opts.kernel_whiteouts {
            match sys::renameat2(ofd, name, nfd, newname, libc::RENAME_WHITEOUT) {
                Err(libc::EINVAL) => {
                    sys::renameat2(ofd, name, nfd, newname, 0)?;
                    return self.make_whiteout(ofd, name, false);
                }
                r => return r,
            }
        }
        // The `.wh.` file goes first: a crash in between leaves the entry hidden, not doubled.
        match self.make_whiteout(ofd, &whiteout_name(name), true) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        sys::renameat2(ofd, name, nfd, newname, 0)
    }

    /// Is `dir` the node `anc` or below it?
    fn is_ancestor(&self, anc: u64, dir: u64) -> Res<bool> {
        let mut cur = dir;
        loop {
            if cur == anc {
                return Ok(true);
            }
            if cur == ROOT_ID {
                return Ok(false);
            }
            let n = self.node(cur)?;
            let st = n.st.read().unwrap();
            cur = st.names.first().map(|(p, _)| *p).ok_or(libc::ENOENT)?;
        }
    }
}

/// Remove a directory tree that lives in the workdir (a discarded upper directory).
pub fn remove_tree(dirfd: i32, name: &OsStr) -> Res<()> {
    let fd = sys::openat(dirfd, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    for (n, dtype, _) in sys::read_dir(fd.as_raw_fd())? {
        if dtype == libc::DT_DIR {
            remove_tree(fd.as_raw_fd(), &n)?;
        } else {
            sys::unlinkat(fd.as_raw_fd(), &n, false)?;
        }
    }
    sys::unlinkat(dirfd, name, true)
}
