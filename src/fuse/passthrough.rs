//! FUSE passthrough: one kernel backing file per node, shared by that node's open handles, so
//! reads and writes of an open file go straight to its layer file.

use std::os::fd::OwnedFd;
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

pub(super) struct Backing {
    pub(super) id: Arc<fuser::BackingId>,
    pub(super) upper: bool,
    pub(super) opens: usize,
}

impl StrataFs {
    /// The backing id to pass through `fh` with, if passthrough applies. `None` with `direct` set
    /// means: the node is passed through to another layer's file (a read-only open below
    /// that is still open after a copy-up), so this open must bypass the page cache.
    pub(super) fn backing_for(
        &self,
        fs: &Union,
        fh: u64,
        open_backing: impl FnOnce(&OwnedFd) -> std::io::Result<fuser::BackingId>,
    ) -> (Option<Arc<fuser::BackingId>>, bool) {
        if !self.passthrough {
            return (None, false);
        }
        let Ok(h) = fs.handle(fh) else {
            return (None, false);
        };
        let mut map = self.backing.lock().unwrap();
        if let Some(b) = map.get_mut(&h.id) {
            if b.upper == h.upper {
                b.opens += 1;
                return (Some(b.id.clone()), false);
            }
            return (None, true);
        }
        match open_backing(&h.fd) {
            Ok(id) => {
                let id = Arc::new(id);
                map.insert(
                    h.id,
                    Backing {
                        id: id.clone(),
                        upper: h.upper,
                        opens: 1,
                    },
                );
                (Some(id), false)
            }
            Err(e) => {
                log::debug!("passthrough refused for node {}: {e}", h.id);
                (None, false)
            }
        }
    }

    pub(super) fn release_backing(&self, id: u64, fh: u64) {
        if !self.passthrough {
            return;
        }
        let (_, fs, _) = self.tree.route(id);
        let mut map = self.backing.lock().unwrap();
        let passed = fs
            .handle(fh)
            .map(|h| map.get(&id).is_some_and(|b| b.upper == h.upper))
            .unwrap_or(false);
        if passed {
            if let Some(b) = map.get_mut(&id) {
                b.opens -= 1;
                if b.opens == 0 {
                    map.remove(&id);
                }
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
