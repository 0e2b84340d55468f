//! The fuser adapter: FUSE requests in, union calls, replies and errnos out. No overlay logic
//! lives here.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::union::dir::{Caller, NewEntry};
use crate::union::file::SetAttr;
use crate::union::graft::Tree;
use crate::union::ROOT_ID;

mod convert;
mod listing;
mod near;
mod passthrough;
mod xattr;
pub use convert::attr;
use convert::{caller, done, err, id, set_time};
use passthrough::{flush_if_written, BackingMap, Served};

/// How long the kernel may cache entries (negative ones too) and attributes. Lower layers are
/// immutable and every change to the upper goes through this daemon, whose replies keep the
/// kernel's caches right; as with overlayfs, changing the layers behind a live mount is not
/// supported.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Grafts are directories and files of the host, which may change behind the mount at any
/// time: nothing of them is cached.
const NO_TTL: Duration = Duration::ZERO;

pub struct StrataFs {
    pub tree: Arc<Tree>,
    /// The kernel took FUSE_PASSTHROUGH at init: regular files are served by the kernel from
    /// their backing file in the layer, without a round trip through the daemon per read/write.
    passthrough: bool,
    /// The mount allows passthrough (not `passthrough=off`).
    allow_passthrough: bool,
    /// The mount may take FUSE_POSIX_ACL (see `init`).
    allow_posix_acl: bool,
    /// The kernel took FUSE_POSIX_ACL: it checks permissions by ACLs too, and leaves the umask
    /// to the daemon (FUSE_DONT_MASK), which applies it only where no default ACL is inherited.
    posix_acl: bool,
    /// One backing file per node, as the kernel requires, shared by that node's open handles.
    backing: BackingMap,
    /// Threads seen looking up files (not directories): they use what they list, so their
    /// listings come with attributes. See `readdirplus`.
    users: dashmap::DashSet<u32>,
    /// The kernel opens directories without asking (see `opendir`).
    no_opendir: bool,
    /// Where the daemon tells the kernel to drop what it caches (set once the session exists).
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

/// How many reader threads `users` remembers before it starts afresh.
const USERS_KEPT: usize = 4096;

impl StrataFs {
    /// Thread `pid` stats what it lists: its listings come with attributes (`readdirplus`).
    fn uses_attributes(&self, pid: u32) {
        if !self.users.contains(&pid) {
            if self.users.len() >= USERS_KEPT {
                self.users.clear();
            }
            self.users.insert(pid);
        }
    }

    /// `passthrough`: use FUSE passthrough where the kernel offers it (`passthrough=off`: never).
    /// `posix_acl`: take FUSE_POSIX_ACL where the kernel offers it (see `init`).
    pub fn new(tree: Arc<Tree>, passthrough: bool, posix_acl: bool) -> Self {
        StrataFs {
            tree,
            allow_passthrough: passthrough,
            allow_posix_acl: posix_acl,
            posix_acl: false,
            passthrough: false,
            backing: Default::default(),
            users: Default::default(),
            no_opendir: false,
            notifier: Default::default(),
        }
    }

    /// The slot the session's notifier goes in, once the session is made.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }
}

impl StrataFs {
    /// How long the kernel may cache what it learns of node `id`.
    fn ttl(&self, id: u64) -> &'static Duration {
        if self.tree.volatile(id) {
            &NO_TTL
        } else {
            &TTL
        }
    }

    /// Make the kernel drop the attributes it caches for `ino` (and ask again at the next stat):
    /// for changes it cannot know of from the request that made them.
    fn forget_attributes(&self, ino: INodeNo) {
        if let Some(n) = self.notifier.get() {
            if let Err(e) = n.inval_inode(ino, -1, 0) {
                log::debug!("attribute invalidation of node {} refused: {e}", ino.0);
            }
        }
    }

    fn generation(&self, id: u64) -> Generation {
        Generation(self.tree.generation(id))
    }

    fn entry(&self, reply: ReplyEntry, r: Result<(u64, libc::stat), i32>) {
        match r {
            Ok((id, st)) => reply.entry(self.ttl(id), &attr(&st), self.generation(id)),
            Err(e) => reply.error(err(e)),
        }
    }

    /// Make an entry (not a file to open) and reply with it: of the mode asked for, by a caller
    /// with that umask.
    fn new_entry(
        &self,
        reply: ReplyEntry,
        parent: u64,
        name: &OsStr,
        what: NewEntry<'_>,
        (mode, umask): (u32, u32),
        who: Caller,
    ) {
        let (_, fs, local) = self.tree.route(parent);
        let r = fs
            .make_entry(local, name, what, mode, umask, who)
            .map(|(i, st, _)| (i, st));
        self.entry(reply, r);
    }

    /// A lookup's reply; "no such entry" is cached by the kernel too (node id 0), except in
    /// grafts.
    fn lookup_entry(&self, reply: ReplyEntry, parent: u64, r: Result<(u64, libc::stat), i32>) {
        match r {
            Err(libc::ENOENT) if !self.tree.volatile(parent) => {
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                st.st_mode = libc::S_IFREG;
                reply.entry(
                    &TTL,
                    &FileAttr {
                        ino: INodeNo(0),
                        ..attr(&st)
                    },
                    Generation(0),
                )
            }
            r => self.entry(reply, r),
        }
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Passthrough needs the kernel's support and CAP_SYS_ADMIN (to register backing files);
        // stack depth 1 lets layers on a plain filesystem back the files.
        if self.allow_passthrough
            && crate::sys::geteuid() == 0
            && config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough = true;
        }
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_PARALLEL_DIROPS | fuser::InitFlags::FUSE_CACHE_SYMLINKS,
        );
        // POSIX ACLs as a local filesystem has them: the kernel checks access by their entries
        // and, since it then leaves the umask to the daemon, a new entry under a default ACL
        // inherits it with the mode asked for (Union::make_entry). The kernel turns
        // default_permissions on with it, so only mounts that have it anyway take it.
        if self.allow_posix_acl
            && config
                .add_capabilities(
                    fuser::InitFlags::FUSE_POSIX_ACL | fuser::InitFlags::FUSE_DONT_MASK,
                )
                .is_ok()
        {
            self.posix_acl = true;
        }
        // strata drops set-user-ID, set-group-ID and file capabilities itself on write, truncate
        // and chown (Union::setattr); in return the kernel stops asking for security.capability
        // before every write to a file it has once found without one.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // Listings come with attributes, so `ls -l` and `find` need no lookup round trip per
        // entry; the kernel picks plain readdir where the attributes would go unused.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        if config
            .capabilities()
            .contains(fuser::InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            && config
                .add_capabilities(fuser::InitFlags::FUSE_AUTO_INVAL_DATA)
                .is_ok()
        {
            self.no_opendir = true;
        }
        log::info!(
            "kernel FUSE passthrough: {}; POSIX ACLs checked by the kernel: {}",
            if self.passthrough { "on" } else { "off" },
            if self.posix_acl { "yes" } else { "no" }
        );
        Ok(())
    }

    fn destroy(&mut self) {
        self.tree.union().flush_table();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        near::follow(req.pid());
        log::debug!("lookup {} {:?}", parent.0, name);
        let r = self.tree.lookup(id(parent), name);
        if let Ok((_, st)) = &r {
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                self.uses_attributes(req.pid());
            }
        }
        self.lookup_entry(reply, id(parent), r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        log::debug!("forget {} {nlookup}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        fs.forget(local, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        near::follow(req.pid());
        log::debug!("getattr {}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        let r = match fh {
            Some(fh) if local != ROOT_ID => fs.fgetattr(fh.0).or_else(|_| fs.getattr(local)),
            _ => fs.getattr(local),
        };
        match r {
            Ok(st) => reply.attr(self.ttl(id(ino)), &attr(&st)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        log::debug!(
            "setattr {} mode={mode:?} uid={uid:?} gid={gid:?} size={size:?}",
            ino.0
        );
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            fh: fh.map(|f| f.0),
            caller: Some(caller(req)),
        };
        let (_, fs, local) = self.tree.route(id(ino));
        match fs.setattr(local, &a) {
            Ok(st) => reply.attr(self.ttl(id(ino)), &attr(&st)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        near::follow(req.pid());
        log::debug!("readlink {}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        match fs.readlink(local) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        log::debug!("mknod {} {:?} {mode:o}", parent.0, name);
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
            // A char device 0:0 is a whiteout: it would hide itself (kernel overlayfs: EPERM).
            return reply.error(Errno::EPERM);
        }
        let what = if mode & libc::S_IFMT == libc::S_IFREG {
            NewEntry::File {
                flags: libc::O_WRONLY,
            }
        } else {
            NewEntry::Special { rdev: rdev as u64 }
        };
        self.new_entry(reply, id(parent), name, what, (mode, umask), caller(req));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        near::follow(req.pid());
        log::debug!("mkdir {} {:?}", parent.0, name);
        self.new_entry(
            reply,
            id(parent),
            name,
            NewEntry::Dir,
            (mode, umask),
            caller(req),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        log::debug!("unlink {} {:?}", parent.0, name);
        done(reply, self.tree.unlink(id(parent), name, false))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        log::debug!("rmdir {} {:?}", parent.0, name);
        done(reply, self.tree.unlink(id(parent), name, true))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        log::debug!("symlink {} {:?} -> {:?}", parent.0, link_name, target);
        let what = NewEntry::Symlink {
            target: target.as_os_str(),
        };
        self.new_entry(reply, id(parent), link_name, what, (0o777, 0), caller(req));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        log::debug!(
            "rename {} {:?} -> {} {:?} {:?}",
            parent.0,
            name,
            newparent.0,
            newname,
            flags
        );
        done(
            reply,
            self.tree
                .rename(id(parent), name, id(newparent), newname, flags.bits()),
        )
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        log::debug!("link {} -> {} {:?}", ino.0, newparent.0, newname);
        self.entry(
            reply,
            self.tree.link(id(ino), id(newparent), newname, caller(req)),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        near::follow(req.pid());
        log::debug!("open {} {:#x}", ino.0, flags.0);
        let (_, fs, local) = self.tree.route(id(ino));
        let fh = match fs.open(local, flags.0, Some(&caller(req))) {
            Ok(fh) => fh,
            Err(e) => return reply.error(err(e)),
        };
        // Writes reach the layer synchronously, so close has nothing to flush: no FLUSH round trip.
        let base = FopenFlags::FOPEN_NOFLUSH;
        match self.backing_for(fs, id(ino), fh, flags.0, |fd| reply.open_backing(fd)) {
            Served::Passthrough(b) => {
                reply.opened_passthrough(FileHandle(fh), flush_if_written(flags.0), &b)
            }
            Served::Detour(b) => {
                log::debug!(
                    "open {}: served by the daemon beside the kernel's backing file",
                    ino.0
                );
                let direct = flush_if_written(flags.0) | FopenFlags::FOPEN_DIRECT_IO;
                reply.opened_passthrough(FileHandle(fh), direct, &b)
            }
            Served::Busy => {
                log::info!(
                    "open {} for writing refused (ETXTBSY): it is open read-only in its lower layer since before its copy-up",
                    ino.0
                );
                fs.release(fh);
                reply.error(Errno::ETXTBSY)
            }
            Served::Plain => {
                // Lower files never change under a mount: their cached pages stay valid.
                let lower = fs.handle(fh).map(|h| !h.upper).unwrap_or(false);
                let keep = if lower {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), base | keep)
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        log::debug!("read {} fh {} {size}@{offset}", ino.0, fh.0);
        let (_, fs, _) = self.tree.route(id(ino));
        match fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(err(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        log::debug!("write {} fh {} {}@{offset}", ino.0, fh.0, data.len());
        let (_, fs, _) = self.tree.route(id(ino));
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            if let Err(e) = fs.drop_privileges_for_write(fh.0, &caller(req)) {
                return reply.error(err(e));
            }
        }
        match fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        log::debug!("flush {} fh {}", ino.0, fh.0);
        self.forget_mapped_writes(ino);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        log::debug!("release {} fh {}", ino.0, fh.0);
        self.release_backing(id(ino), fh.0);
        self.tree.route(id(ino)).1.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        log::debug!("fsync {} fh {} datasync={datasync}", ino.0, fh.0);
        done(reply, self.tree.route(id(ino)).1.fsync(fh.0, datasync))
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.open_directory(req, ino, reply)
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.list_directory(req, ino, offset, reply)
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: fuser::ReplyDirectoryPlus,
    ) {
        self.list_directory_plus(req, ino, offset, reply)
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        log::debug!("fsyncdir {}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        done(reply, fs.fsyncdir(local, datasync))
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        near::follow(req.pid());
        log::debug!("statfs {}", ino.0);
        match self.tree.route(id(ino)).1.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.set_xattr(req, ino, name, value, flags, reply)
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.get_xattr(req, ino, name, size, reply)
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.list_xattr(req, ino, size, reply)
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove_xattr(ino, name, reply)
    }

    /// Only mounts without default_permissions get ACCESS: the kernel checks for the others.
    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        near::follow(req.pid());
        log::debug!("access {} {:#o}", ino.0, mask.bits());
        let (_, fs, local) = self.tree.route(id(ino));
        done(reply, fs.access(local, mask.bits(), &caller(req)))
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        near::follow(req.pid());
        log::debug!("create {} {:?} {mode:o} {flags:#x}", parent.0, name);
        let what = NewEntry::File { flags };
        let (_, fs, local) = self.tree.route(id(parent));
        match fs.make_entry(local, name, what, mode, umask, caller(req)) {
            Ok((i, st, Some(fd))) => {
                let fh = fs.add_handle(i, fd, 0);
                let a = attr(&st);
                let ttl = self.ttl(i);
                match self.backing_for(fs, i, fh, flags, |fd| reply.open_backing(fd)) {
                    Served::Passthrough(b) => reply.created_passthrough(
                        ttl,
                        &a,
                        self.generation(i),
                        FileHandle(fh),
                        flush_if_written(flags),
                        &b,
                    ),
                    _ => reply.created(
                        ttl,
                        &a,
                        self.generation(i),
                        FileHandle(fh),
                        FopenFlags::empty(),
                    ),
                }
            }
            Ok(_) => reply.error(Errno::EIO),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        log::debug!(
            "fallocate {} fh {} {length}@{offset} mode={mode:#x}",
            ino.0,
            fh.0
        );
        let (_, fs, _) = self.tree.route(id(ino));
        done(reply, fs.fallocate(fh.0, offset, length, mode))
    }

    /// Inode flags (chattr, lsattr, xfs_io chattr): the kernel asks through FUSE_IOCTL with an
    /// argument of the command's own size; every other ioctl is not one of a filesystem's.
    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        log::debug!(
            "ioctl {} fh {} {cmd:#x} in {} out {out_size}",
            ino.0,
            fh.0,
            in_data.len()
        );
        let (_, fs, local) = self.tree.route(id(ino));
        match fs.fileattr(local, cmd, in_data) {
            Ok(out) => {
                if crate::union::fileattr::sets(cmd) {
                    // The upper file's ctime moved; the cached one is stale.
                    self.forget_attributes(ino);
                }
                reply.ioctl(0, &out[..out.len().min(out_size as usize)])
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        log::debug!("lseek {} fh {} {offset} whence={whence}", ino.0, fh.0);
        match self.tree.route(id(ino)).1.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(err(e)),
        }
    }
}
