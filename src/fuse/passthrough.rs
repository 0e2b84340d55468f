//! FUSE passthrough: one kernel backing file per node, shared by that node's open handles, so
//! reads and writes of an open file go straight to its layer file.
//!
//! The kernel keeps one backing file per inode for as long as any of its files opened with
//! passthrough stays open, and refuses every other open of that inode (EIO) but one naming the
//! same backing file (fs/fuse/iomode.c: a backing file other than the inode's is EBUSY, an
//! open without FOPEN_PASSTHROUGH on an inode that has one is EINVAL). A file opened read-only
//! in its lower layer and then copied up (by a write open, a chmod, a rename of a hard link)
//! is such a case: its kernel inode still has the lower file while the node is now the upper
//! file. Until every open holding the lower file is closed, such opens name the lower file
//! again with FOPEN_DIRECT_IO, which sends their reads and writes to the daemon, that serves
//! them from the upper file; only their mappings are the kernel's, of the lower file.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use fuser::{FopenFlags, INodeNo};

use super::StrataFs;
use crate::union::Union;

/// Open flags for a passed-through file: no FLUSH on close, except when it is open for writing.
/// Its shared mappings are the layer file's (the kernel maps the backing file), so a write
/// through one changes mtime and ctime where neither the kernel's FUSE inode nor the daemon sees
/// it, and the attributes the kernel caches go stale; the FLUSH lets `forget_mapped_writes` drop
/// them before close returns, as after a close on kernel overlayfs stat shows the real file's
/// times.
pub(super) fn flush_if_written(open_flags: i32) -> FopenFlags {
    if open_flags & libc::O_ACCMODE == libc::O_RDONLY {
        FopenFlags::FOPEN_NOFLUSH
    } else {
        FopenFlags::empty()
    }
}

/// The backing file the kernel holds for one node, and the handles opened with it.
pub(super) struct Backing {
    id: Arc<fuser::BackingId>,
    /// The backing file is the upper file (else a lower layer's).
    upper: bool,
    /// The kernel can open the backing file for writing (it opens it again with each open's
    /// flags): not so on a read-only filesystem.
    writable: bool,
    handles: HashSet<u64>,
}

pub(super) type BackingMap = std::sync::Mutex<HashMap<u64, Backing>>;

/// How an open is served.
pub(super) enum Served {
    /// Passed through to its own layer file.
    Passthrough(Arc<fuser::BackingId>),
    /// The kernel inode holds another layer's file (see the module's notes): named again, with
    /// reads and writes through the daemon.
    Detour(Arc<fuser::BackingId>),
    /// The kernel inode holds another layer's file and this open may not name it: opened for
    /// reading and writing, its shared mappings would write to the lower layer's file; opened
    /// for writing, the kernel could not open a lower file on a read-only filesystem so.
    Busy,
    /// Without passthrough.
    Plain,
}

impl StrataFs {
    /// How to serve handle `fh`, opened with `flags`, of node `id`.
    pub(super) fn backing_for(
        &self,
        fs: &Union,
        id: u64,
        fh: u64,
        flags: i32,
        open_backing: impl FnOnce(&OwnedFd) -> std::io::Result<fuser::BackingId>,
    ) -> Served {
        if !self.passthrough {
            return Served::Plain;
        }
        let Ok(h) = fs.handle(fh) else {
            return Served::Plain;
        };
        let mut map = self.backing.lock().unwrap();
        if let Some(b) = map.get_mut(&id) {
            let access = flags & libc::O_ACCMODE;
            if b.upper != h.upper
                && (access == libc::O_RDWR || (access == libc::O_WRONLY && !b.writable))
            {
                return Served::Busy;
            }
            b.handles.insert(fh);
            return match b.upper == h.upper {
                true => Served::Passthrough(b.id.clone()),
                false => Served::Detour(b.id.clone()),
            };
        }
        match open_backing(&h.fd) {
            Ok(backing) => {
                let backing = Arc::new(backing);
                map.insert(
                    id,
                    Backing {
                        id: backing.clone(),
                        upper: h.upper,
                        writable: crate::sys::fstatvfs(h.fd.as_raw_fd())
                            .is_ok_and(|v| v.f_flag & libc::ST_RDONLY == 0),
                        handles: HashSet::from([fh]),
                    },
                );
                Served::Passthrough(backing)
            }
            Err(e) => {
                log::debug!("passthrough refused for node {id}: {e}");
                Served::Plain
            }
        }
    }

    /// Handle `fh` of node `id` is closed: the last one opened with the node's backing file
    /// lets the next open pass through to the node's own file.
    pub(super) fn release_backing(&self, id: u64, fh: u64) {
        if !self.passthrough {
            return;
        }
        let mut map = self.backing.lock().unwrap();
        if let Some(b) = map.get_mut(&id) {
            if b.handles.remove(&fh) && b.handles.is_empty() {
                map.remove(&id);
            }
        }
    }

    /// At the FLUSH of a close: if node `ino` is passed through, drop the attributes the kernel
    /// caches for it (writes through its mappings may have changed them; see `flush_if_written`).
    pub(super) fn forget_mapped_writes(&self, ino: INodeNo) {
        if !self.passthrough
            || !self
                .backing
                .lock()
                .unwrap()
                .contains_key(&super::convert::id(ino))
        {
            return;
        }
        self.forget_attributes(ino);
    }
}
