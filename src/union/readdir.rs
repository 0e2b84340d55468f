//! The merged directory listing: upper first, then each lower, top-most first; the first layer
//! that has a name decides it; whiteouts hide names below them; `.wh.*` names never show.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::layer::{is_opaque, WH_PREFIX};
use super::lowerindex::{dtype_of, mode_of};
use super::{NodeState, Union};
use crate::sys::{self, Res};

#[derive(Clone, Debug)]
pub struct Entry {
    pub name: OsString,
    pub ino: u64,
    /// S_IFMT bits.
    pub kind: u32,
}

impl Union {
    /// Every visible entry of directory `st` at merged path `path` ("." and ".." excluded).
    pub fn merged_entries(&self, st: &NodeState, path: &Path) -> Res<Vec<Entry>> {
        let mut out: Vec<Entry> = Vec::new();
        let mut seen: HashMap<OsString, usize> = HashMap::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        // Upper directories that also appear in a lower one: their number comes from below.
        let mut upper_dirs: HashSet<usize> = HashSet::new();
        let mut upper_fd: Option<std::os::fd::OwnedFd> = None;

        let mut stack: Vec<(usize, std::path::PathBuf)> = Vec::new();
        if st.upper {
            stack.push((0, path.to_path_buf()));
        }
        stack.extend(st.lowers.iter().map(|l| (l.layer, l.path.clone())));

        for (layer, lpath) in stack {
            // This layer's visible entries and the names its whiteouts hide below it.
            let (entries, new_hidden) = if layer == 0 {
                let fd = self.layer(0).dir(&lpath)?;
                let r = upper_listing(fd.as_raw_fd(), self.opts.plain)?;
                upper_fd = Some(fd);
                r
            } else {
                match self.lower_dir(layer, &lpath)? {
                    Some(idx) => (idx.entries.clone(), idx.whiteouts.iter().cloned().collect()),
                    None => continue,
                }
            };
            for (name, dtype, dino) in entries {
                if hidden.contains(&name) {
                    continue;
                }
                if let Some(&i) = seen.get(&name) {
                    // Already shown from above. An upper directory that merges with this lower
                    // one takes its number from here, unless the table knows it.
                    if upper_dirs.remove(&i) && dtype == libc::DT_DIR {
                        if let Some(ufd) = &upper_fd {
                            if !is_opaque(ufd.as_raw_fd(), &name).unwrap_or(true) {
                                out[i].ino = self.encode(layer, dino);
                            }
                        }
                    }
                    continue;
                }
                let kind = mode_of(dtype);
                let ino = if layer == 0 {
                    match self.inodes.get(dino) {
                        Some(i) => i,
                        None => {
                            if kind == libc::S_IFDIR {
                                upper_dirs.insert(out.len());
                            }
                            self.encode(0, dino)
                        }
                    }
                } else {
                    self.encode(layer, dino)
                };
                seen.insert(name.clone(), out.len());
                out.push(Entry { name, ino, kind });
            }
            hidden.extend(new_hidden);
        }
        Ok(out)
    }

    /// Open directory `id`. Its listing is taken at the first read, not here: when the kernel
    /// still has the listing cached (FOPEN_CACHE_DIR), it never reads, and an opendir costs
    /// nothing but the round trip.
    pub fn opendir(&self, id: u64) -> Res<u64> {
        if !self.node(id)?.st.read().unwrap().is_dir() {
            return Err(libc::ENOTDIR);
        }
        let fh = self.next_fh();
        self.dirs.insert(
            fh,
            Arc::new(OpenDir {
                id,
                entries: OnceLock::new(),
            }),
        );
        Ok(fh)
    }

    /// The listing of an open directory, snapshotted at its first read and kept until
    /// releasedir, so offsets stay valid while entries come and go.
    pub fn dir_entries(&self, fh: u64) -> Res<Arc<Vec<Entry>>> {
        let d = self.dirs.get(&fh).map(|e| e.clone()).ok_or(libc::EBADF)?;
        if let Some(e) = d.entries.get() {
            return Ok(e.clone());
        }
        let listing = {
            let _g = self.read_ns();
            let (st, path) = self.resolve(d.id)?;
            Arc::new(self.merged_entries(&st, &path)?)
        };
        Ok(d.entries.get_or_init(|| listing).clone())
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(&fh);
    }
}

/// An open directory handle.
pub struct OpenDir {
    id: u64,
    entries: OnceLock<Arc<Vec<Entry>>>,
}

type Listing = (Vec<(OsString, u8, u64)>, Vec<OsString>);

/// The upper directory's entries, without whiteouts, and the names those whiteouts hide
/// (in a plain tree: every entry, nothing hidden).
fn upper_listing(fd: i32, plain: bool) -> Res<Listing> {
    let mut entries = Vec::new();
    let mut hidden = Vec::new();
    for (name, dtype, dino) in sys::read_dir(fd)? {
        if plain {
            entries.push((name, dtype, dino));
            continue;
        }
        let b = name.as_bytes();
        if let Some(rest) = b.strip_prefix(WH_PREFIX) {
            if !rest.starts_with(b".wh.") {
                hidden.push(OsStr::from_bytes(rest).to_os_string());
            }
            continue;
        }
        let mut dtype = dtype;
        if dtype == libc::DT_UNKNOWN || dtype == libc::DT_CHR {
            match sys::fstatat(fd, &name) {
                Ok(s) if sys::is_whiteout_dev(&s) => {
                    hidden.push(name);
                    continue;
                }
                Ok(s) => dtype = dtype_of(s.st_mode),
                Err(_) => continue,
            }
        }
        entries.push((name, dtype, dino));
    }
    Ok((entries, hidden))
}
