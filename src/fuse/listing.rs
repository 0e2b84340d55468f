//! Directories: how the kernel opens them, and which listings carry attributes.

use fuser::{
    Errno, FileHandle, FileType, FopenFlags, Generation, INodeNo, ReplyDirectory,
    ReplyDirectoryPlus, ReplyOpen, Request,
};

use super::convert::{attr, err, id, kind_of};
use super::{near, StrataFs};

impl StrataFs {
    /// Directories are opened by the kernel alone where it can (FUSE_NO_OPENDIR_SUPPORT): the
    /// first OPENDIR is answered ENOSYS and no OPENDIR or RELEASEDIR follows. The kernel then
    /// keeps listings (FOPEN_CACHE_DIR) of every directory, dropping one whenever it changes the
    /// directory itself or sees its mtime change; for grafts, which the host may change, it
    /// checks the mtime at every read from the start (FUSE_AUTO_INVAL_DATA, attributes never
    /// cached). Listings belong to directories, not to handles (`Union::listing`).
    pub(super) fn open_directory(&self, req: &Request, ino: INodeNo, reply: ReplyOpen) {
        near::follow(req.pid());
        log::debug!("opendir {}", ino.0);
        if self.no_opendir {
            return reply.error(Errno::ENOSYS);
        }
        // An older kernel: the same, with a handle that stands for nothing. The kernel may keep
        // merged listings, but not the grafts'.
        let (part, fs, local) = self.tree.route(id(ino));
        let cache = if part == 0 {
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
        } else {
            FopenFlags::empty()
        };
        match fs.getattr(local) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                reply.opened(FileHandle(0), cache)
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(err(e)),
        }
    }

    pub(super) fn list_directory(
        &self,
        req: &Request,
        ino: INodeNo,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        near::follow(req.pid());
        log::debug!("readdir {} @{offset}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        let (entries, from) = match fs.listing_at(local, offset) {
            Ok(r) => r,
            Err(libc::ENOENT) => return reply.ok(), // removed while open: empty
            Err(e) => return reply.error(err(e)),
        };
        for (off, name) in [(1u64, "."), (2, "..")].into_iter().skip(offset as usize) {
            if reply.add(ino, off, FileType::Directory, name) {
                return reply.ok();
            }
        }
        for e in &entries[from..] {
            if reply.add(INodeNo(e.ino), e.off, kind_of(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    /// A listing with attributes costs a stat of every entry in its layer, which for a cold
    /// lower is an inode read per entry: more than a walker like `find` or `du -s` that only
    /// needs names and types (d_type) would ever pay on kernel overlayfs. The kernel
    /// (READDIRPLUS_AUTO) asks for attributes with the first part of each listing, and for
    /// later parts only when lookups in that directory followed. Threads not yet seen looking
    /// up files are answered with "." and ".." alone, so the rest of the listing comes plain;
    /// a thread that looks up (stats, opens) what it lists gets attributes from its next
    /// directory on, with no lookup round trip per entry. fuser 0.18 cannot send entries
    /// without attributes (its entries' d_ino is their node id), or this would be per entry.
    pub(super) fn list_directory_plus(
        &self,
        req: &Request,
        ino: INodeNo,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        near::follow(req.pid());
        log::debug!("readdirplus {} @{offset}", ino.0);
        let (_, fs, local) = self.tree.route(id(ino));
        let (entries, from) = match fs.listing_at(local, offset) {
            Ok(r) => r,
            Err(libc::ENOENT) => return reply.ok(),
            Err(e) => return reply.error(err(e)),
        };
        // "." and ".." carry no lookup: the kernel does not link them.
        if offset < 2 {
            let dir = match fs.getattr(local) {
                Ok(st) => attr(&st),
                Err(e) => return reply.error(err(e)),
            };
            for (off, name) in [(1u64, "."), (2, "..")].into_iter().skip(offset as usize) {
                if reply.add(ino, off, name, self.ttl(id(ino)), &dir, Generation(0)) {
                    return reply.ok();
                }
            }
            if !self.users.contains(&req.pid()) {
                return reply.ok();
            }
        }
        for e in &entries[from..] {
            // Each entry is a lookup, counted until the kernel forgets it.
            let Ok((node, st)) = self.tree.lookup(id(ino), &e.name) else {
                continue; // gone since the listing was taken
            };
            if reply.add(
                INodeNo(node),
                e.off,
                &e.name,
                self.ttl(node),
                &attr(&st),
                self.generation(node),
            ) {
                let (_, nfs, nlocal) = self.tree.route(node);
                nfs.forget(nlocal, 1); // did not fit: not sent
                break;
            }
        }
        reply.ok();
    }
}
