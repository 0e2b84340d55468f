//! Access times, as kernel overlayfs keeps them: a lower layer's files are read with O_NOATIME
//! on a noatime copy of its mount (a read through the mount never writes an image layer's
//! inodes), and an upper file's atime follows the strata mount's own options (`noatime`,
//! `relatime`, `strictatime`, `nodiratime`, and none at all while read-only), not those of the
//! mount the upper directory is on. Overlayfs gets there by clearing the atime flags of its
//! private copy of the upper mount; strata reads the real files, so where the two rules differ
//! it opens upper files on a detached copy of the upper's mount carrying the strata mount's rule.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::Union;
use crate::sys::{self, Res};

/// When a read stamps an access time, as mount(8) names the choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Only when the atime is older than the mtime or ctime, or a day old (the default).
    #[default]
    Relatime,
    /// On every read.
    Strict,
    /// Never.
    No,
}

/// The mount's atime options: the mode, and whether directories are left alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Atime {
    pub mode: Mode,
    pub nodiratime: bool,
}

impl Atime {
    /// From mount options, the last one of each kind winning as with mount(8).
    pub fn from_options<S: AsRef<str>>(opts: &[S]) -> Atime {
        let mut a = Atime::default();
        for o in opts {
            match o.as_ref() {
                "noatime" => a.mode = Mode::No,
                "relatime" => a.mode = Mode::Relatime,
                "strictatime" | "norelatime" => a.mode = Mode::Strict,
                "atime" if a.mode == Mode::No => a.mode = Mode::Relatime,
                "nodiratime" => a.nodiratime = true,
                "diratime" => a.nodiratime = false,
                _ => {}
            }
        }
        a
    }

    /// From a mount's options as /proc/self/mountinfo lists them, where a strictatime mount
    /// shows neither `relatime` nor `noatime`.
    pub fn from_mountinfo<S: AsRef<str>>(opts: &[S]) -> Atime {
        let has = |o: &str| opts.iter().any(|x| x.as_ref() == o);
        Atime {
            mode: if has("noatime") {
                Mode::No
            } else if has("relatime") {
                Mode::Relatime
            } else {
                Mode::Strict
            },
            nodiratime: has("nodiratime"),
        }
    }

    /// As mount options that from_options reads back.
    pub fn options(self) -> String {
        let mode = match self.mode {
            Mode::Relatime => "relatime",
            Mode::Strict => "strictatime",
            Mode::No => "noatime",
        };
        if self.nodiratime {
            format!("{mode} nodiratime")
        } else {
            mode.to_string()
        }
    }

    /// The rule of the mount `fd` is on (statvfs's ST_NOATIME, ST_RELATIME, ST_NODIRATIME).
    fn of_mount(fd: i32) -> Res<Atime> {
        let f = sys::fstatvfs(fd)?.f_flag;
        let mode = if f & libc::ST_NOATIME != 0 {
            Mode::No
        } else if f & libc::ST_RELATIME != 0 {
            Mode::Relatime
        } else {
            Mode::Strict
        };
        Ok(Atime {
            mode,
            nodiratime: f & libc::ST_NODIRATIME != 0,
        })
    }

    /// As mount_setattr(2) attributes.
    fn mount_attr(self) -> u64 {
        let mode = match self.mode {
            Mode::Relatime => libc::MOUNT_ATTR_RELATIME,
            Mode::Strict => libc::MOUNT_ATTR_STRICTATIME,
            Mode::No => libc::MOUNT_ATTR_NOATIME,
        };
        mode | if self.nodiratime {
            libc::MOUNT_ATTR_NODIRATIME
        } else {
            0
        }
    }

    fn bits(self) -> u8 {
        self.mode as u8 | (self.nodiratime as u8) << 2
    }

    fn from_bits(b: u8) -> Atime {
        let mode = match b & 3 {
            0 => Mode::Relatime,
            1 => Mode::Strict,
            _ => Mode::No,
        };
        Atime {
            mode,
            nodiratime: b & 4 != 0,
        }
    }
}

/// The upper's copy carrying the strata mount's rule, and the rule it carries now.
enum UpperCopy {
    NotMade,
    Refused,
    Made(u8, Arc<OwnedFd>),
}

/// Where a union keeps its mount's atime options (they change on remount), for each layer a
/// noatime copy of its mount, and for the upper a copy with the mount's rule, each made when
/// first needed.
pub struct AtimeState {
    bits: AtomicU8,
    clones: Vec<OnceLock<Option<Arc<OwnedFd>>>>,
    upper_own: OnceLock<Option<Atime>>,
    upper: Mutex<UpperCopy>,
}

impl AtimeState {
    pub fn new(layers: usize) -> AtimeState {
        AtimeState {
            bits: AtomicU8::new(0),
            clones: (0..layers).map(|_| OnceLock::new()).collect(),
            upper_own: OnceLock::new(),
            upper: Mutex::new(UpperCopy::NotMade),
        }
    }
}

impl Union {
    pub fn set_atime(&self, a: Atime) {
        self.atime.bits.store(a.bits(), Ordering::Relaxed);
    }

    fn atime(&self) -> Atime {
        Atime::from_bits(self.atime.bits.load(Ordering::Relaxed))
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
            let no = Atime {
                mode: Mode::No,
                nodiratime: true,
            };
            match sys::clone_mount(root, no.mount_attr()) {
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
        let a = self.atime();
        let off = a.mode == Mode::No || dir && a.nodiratime;
        if layer != 0 || off || self.writable().is_err() {
            libc::O_NOATIME
        } else {
            0
        }
    }

    /// Where to open an upper file (or directory, `dir`) that a read may stamp, when the
    /// upper's own mount would stamp it by another rule than the strata mount's: the upper's
    /// root on a copy of its mount with the strata mount's rule. None: open it as it is.
    pub(crate) fn stamping_root(&self, dir: bool) -> Option<Arc<OwnedFd>> {
        let a = self.atime();
        let root = self.upper.as_ref()?.root.as_raw_fd();
        let own = *self
            .atime
            .upper_own
            .get_or_init(|| Atime::of_mount(root).ok());
        if own.is_some_and(|o| o.mode == a.mode && !(dir && o.nodiratime)) {
            return None;
        }
        let mut copy = self.atime.upper.lock().unwrap_or_else(|e| e.into_inner());
        match &*copy {
            UpperCopy::Refused => return None,
            UpperCopy::Made(b, fd) if *b == a.bits() => return Some(fd.clone()),
            UpperCopy::Made(_, fd) => match sys::set_mount_atime(fd.as_raw_fd(), a.mount_attr()) {
                Ok(()) => *copy = UpperCopy::Made(a.bits(), fd.clone()),
                Err(e) => {
                    log::warn!("cannot change the upper's atime rule (errno {e})");
                    return Some(fd.clone());
                }
            },
            UpperCopy::NotMade => match sys::clone_mount(root, a.mount_attr()) {
                Ok(fd) => *copy = UpperCopy::Made(a.bits(), Arc::new(fd)),
                Err(e) => {
                    log::info!(
                        "no copy of the upper's mount (errno {e}): its atimes follow that mount's options"
                    );
                    *copy = UpperCopy::Refused;
                    return None;
                }
            },
        }
        match &*copy {
            UpperCopy::Made(_, fd) => Some(fd.clone()),
            _ => None,
        }
    }

    /// Upper directory `rel`, O_PATH, to be listed: on the copy with the mount's atime rule
    /// where the upper's own mount has another.
    pub(crate) fn upper_dir_to_list(&self, rel: &Path) -> Res<OwnedFd> {
        if self.noatime(0, true) == 0 {
            if let Some(root) = self.stamping_root(true) {
                let flags = libc::O_PATH | libc::O_DIRECTORY;
                match sys::openat2(root.as_raw_fd(), rel, flags, 0, sys::RESOLVE_SAFE) {
                    Err(libc::ENAMETOOLONG) => {}
                    r => return r,
                }
            }
        }
        self.layer(0).dir(rel)
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
        assert!(a.mode == Mode::No && !a.nodiratime);
        let a = Atime::from_options(&["nodiratime", "strictatime"]);
        assert!(a.mode == Mode::Strict && a.nodiratime);
        let a = Atime::from_options(&["noatime", "atime"]);
        assert_eq!(a.mode, Mode::Relatime);
    }

    #[test]
    fn options_survive_their_stored_and_spoken_forms() {
        for mode in [Mode::Relatime, Mode::Strict, Mode::No] {
            for nodiratime in [false, true] {
                let a = Atime { mode, nodiratime };
                assert_eq!(Atime::from_bits(a.bits()), a);
                let words: Vec<String> = a.options().split(' ').map(String::from).collect();
                assert_eq!(Atime::from_options(&words), a);
            }
        }
    }

    #[test]
    fn mountinfo_without_an_atime_word_is_strictatime() {
        assert_eq!(Atime::from_mountinfo(&["rw", "nosuid"]).mode, Mode::Strict);
        let a = Atime::from_mountinfo(&["rw", "relatime", "nodiratime"]);
        assert!(a.mode == Mode::Relatime && a.nodiratime);
    }
}
