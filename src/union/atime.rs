//! Access times, as kernel overlayfs keeps them: a lower layer's files are read with O_NOATIME
//! (a read through the mount never writes an image layer's inodes), and an upper file's atime
//! follows the mount's `noatime` and `nodiratime`. strata reads and lists the real files, so
//! without O_NOATIME the upper filesystem would stamp them by its own mount's rule, whatever
//! the strata mount says. Under relatime and strictatime the upper filesystem's rule applies
//! (relatime on most hosts): strata cannot stamp an atime itself without moving the ctime.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use super::Union;
use crate::sys;

/// The mount's atime options: files and directories alike, or directories only.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Atime {
    pub noatime: bool,
    pub nodiratime: bool,
}

impl Atime {
    /// From mount options, the last one of each kind winning as with mount(8).
    pub fn from_options<S: AsRef<str>>(opts: &[S]) -> Atime {
        let mut a = Atime::default();
        for o in opts {
            match o.as_ref() {
                "noatime" => a.noatime = true,
                "relatime" | "strictatime" | "atime" | "norelatime" => a.noatime = false,
                "nodiratime" => a.nodiratime = true,
                "diratime" => a.nodiratime = false,
                _ => {}
            }
        }
        a
    }

    fn bits(self) -> u8 {
        self.noatime as u8 | (self.nodiratime as u8) << 1
    }
}

/// Where a union keeps its mount's atime options (they change on remount), and for each layer
/// a noatime copy of its mount, made when first needed.
pub struct AtimeState {
    bits: AtomicU8,
    clones: Vec<OnceLock<Option<Arc<OwnedFd>>>>,
}

impl AtimeState {
    pub fn new(layers: usize) -> AtimeState {
        AtimeState {
            bits: AtomicU8::new(0),
            clones: (0..layers).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Union {
    pub fn set_atime(&self, a: Atime) {
        self.atime.bits.store(a.bits(), Ordering::Relaxed);
    }

    /// Layer `layer`'s root on a noatime copy of its mount, where strata may make one (as root,
    /// or in a user namespace that owns the mount): a file opened there is read without an
    /// atime stamp even through FUSE passthrough, where the kernel opens the backing file again
    /// with the caller's flags, so that O_NOATIME on strata's fd would not be kept. None: the
    /// caller falls back to O_NOATIME, which passthrough does not keep.
    pub(crate) fn noatime_root(&self, layer: usize) -> Option<Arc<OwnedFd>> {
        let slot = self.atime.clones.get(layer)?;
        slot.get_or_init(|| {
            let root = self.layer(layer).root.as_raw_fd();
            match sys::clone_noatime(root) {
                Ok(fd) => Some(Arc::new(fd)),
                Err(e) => {
                    log::info!(
                        "no noatime mount of layer {layer} (errno {e}): its files are read with O_NOATIME"
                    );
                    None
                }
            }
        })
        .clone()
    }

    /// O_NOATIME, or 0, for reading a file (or listing a directory) of `layer`.
    pub(crate) fn noatime(&self, layer: usize, dir: bool) -> i32 {
        let bits = self.atime.bits.load(Ordering::Relaxed);
        let off = if dir { bits != 0 } else { bits & 1 != 0 };
        if layer != 0 || off {
            libc::O_NOATIME
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_option_wins() {
        let a = Atime::from_options(&["noatime", "nodev", "relatime"]);
        assert_eq!(a, Atime::default());
        let a = Atime::from_options(&["relatime", "noatime"]);
        assert!(a.noatime && !a.nodiratime);
        let a = Atime::from_options(&["nodiratime"]);
        assert!(!a.noatime && a.nodiratime);
    }
}
