//! The merged directory listing: upper first, then each lower, top-most first; the first layer
//! that has a name decides it; whiteouts hide names below them; `.wh.*` names never show.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::BuildHasher;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

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
    /// The offset a reader resumes after this entry at (set by `listing`).
    pub off: u64,
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
                let fd = self.upper_dir_to_list(&lpath)?;
                let oci = !self.opts.kernel_whiteouts;
                let noatime = self.noatime(0, true);
                let r = upper_listing(fd.as_raw_fd(), self.opts.plain, oci, noatime)?;
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
                            let oci = !self.opts.kernel_whiteouts;
                            if !is_opaque(ufd.as_raw_fd(), &name, oci).unwrap_or(true) {
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
                out.push(Entry {
                    name,
                    ino,
                    kind,
                    off: 0,
                });
            }
            hidden.extend(new_hidden);
        }
        Ok(out)
    }

    /// The listing of directory `id`, in offset order. A read from the start (`fresh`) takes it
    /// anew; later reads continue in the one taken then, or in a new one if it was dropped.
    ///
    /// There are no directory handles: the kernel opens directories without asking
    /// (FUSE_NO_OPENDIR_SUPPORT), so a listing belongs to the directory, not to one opener.
    /// Each entry's offset is a keyed hash of its name, as ext4's htree offsets are, so a
    /// reader that resumes in a listing taken after its own — another reader started over, or
    /// the listing was dropped — neither misses nor repeats an entry that stayed.
    pub fn listing(&self, id: u64, fresh: bool) -> Res<Arc<Vec<Entry>>> {
        if !fresh {
            if let Some(l) = self.listings.get(&id) {
                return Ok(l.clone());
            }
        }
        let mut entries = {
            let _g = self.read_ns();
            let (st, path) = self.resolve(id)?;
            if !st.is_dir() {
                return Err(libc::ENOTDIR);
            }
            self.merged_entries(&st, &path)?
        };
        for e in entries.iter_mut() {
            // 3.. (1 and 2 are "." and ".."), below i64::MAX (the kernel's f_pos is signed).
            e.off = 3 + (self.listing_key.hash_one(&e.name) >> 2);
        }
        entries.sort_unstable_by(|a, b| (a.off, &a.name).cmp(&(b.off, &b.name)));
        for i in 1..entries.len() {
            if entries[i].off <= entries[i - 1].off {
                entries[i].off = entries[i - 1].off + 1; // a collision: the later name moves up
            }
        }
        let l = Arc::new(entries);
        if self.listings.len() >= LISTINGS_KEPT {
            // Readers in the middle of a dropped listing continue in a new one (see above).
            self.listings.clear();
        }
        self.listings.insert(id, l.clone());
        Ok(l)
    }

    /// A read of `id`'s listing at `offset`: the listing and where in it the read goes on.
    /// A read that finds nothing left ends the listing's life.
    pub fn listing_at(&self, id: u64, offset: u64) -> Res<(Arc<Vec<Entry>>, usize)> {
        let entries = self.listing(id, offset == 0)?;
        let from = resume_at(&entries, offset);
        if from == entries.len() {
            self.drop_listing(id);
        }
        Ok((entries, from))
    }

    /// A reader reached the end of `id`'s listing, or the kernel forgot the directory.
    pub fn drop_listing(&self, id: u64) {
        self.listings.remove(&id);
    }
}

/// Listings kept for readers part-way through them, before they are all dropped.
const LISTINGS_KEPT: usize = 1024;

/// Where a read at `offset` continues in `entries`: after the entry at that offset.
fn resume_at(entries: &[Entry], offset: u64) -> usize {
    entries.partition_point(|e| e.off <= offset)
}

type Listing = (Vec<(OsString, u8, u64)>, Vec<OsString>);

/// The upper directory's entries, without whiteouts, and the names those whiteouts hide
/// (in a plain tree: every entry, nothing hidden). `.wh.` names are whiteouts only in an upper
/// of the OCI format (`oci`); in the kernel's they are entries like any other.
fn upper_listing(fd: i32, plain: bool, oci: bool, noatime: i32) -> Res<Listing> {
    let mut entries = Vec::new();
    let mut hidden = Vec::new();
    for (name, dtype, dino) in sys::read_dir_flags(fd, noatime)? {
        if plain {
            entries.push((name, dtype, dino));
            continue;
        }
        let b = name.as_bytes();
        if let Some(rest) = b.strip_prefix(WH_PREFIX).filter(|_| oci) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inode::InodeTable;
    use crate::union::layer::{Layer, XattrNs};
    use crate::union::{Options, ROOT_ID};
    use std::collections::BTreeSet;

    /// A reader part-way through a listing when the directory changes and another reader
    /// starts over (taking a new listing) resumes in the new one: every name that stayed is
    /// seen exactly once.
    #[test]
    fn a_reader_resuming_in_a_newer_listing_misses_and_repeats_nothing_that_stayed() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..400).map(|i| format!("entry-{i:03}")).collect();
        for n in &names {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let u = Union::new(
            Some(Layer::open(dir.path()).unwrap()),
            Vec::new(),
            None,
            InodeTable::in_memory(),
            Options {
                redirect_follow: false,
                redirect_create: false,
                read_only: false,
                xattr_ns: XattrNs::User,
                kernel_whiteouts: false,
                xattr_permissions: false,
                plain: true,
                id_base: 0,
                check_permissions: false,
                show: Default::default(),
            },
        )
        .unwrap();
        let first = u.listing(ROOT_ID, true).unwrap();
        assert_eq!(first.len(), 400);
        let mut seen: Vec<String> = Vec::new();
        let mut offset = 0;
        for e in &first[..150] {
            seen.push(e.name.to_string_lossy().into_owned());
            offset = e.off;
        }
        // Meanwhile: 100 names go (some already read, some not), 50 come, and another
        // reader starts over.
        let mut removed = BTreeSet::new();
        for n in names.iter().step_by(4) {
            std::fs::remove_file(dir.path().join(n)).unwrap();
            removed.insert(n.clone());
        }
        for i in 0..50 {
            std::fs::write(dir.path().join(format!("new-{i}")), "").unwrap();
        }
        let second = u.listing(ROOT_ID, true).unwrap();
        assert_eq!(second.len(), 350);
        let rest = &u.listing(ROOT_ID, false).unwrap()[..];
        for e in &rest[resume_at(rest, offset)..] {
            seen.push(e.name.to_string_lossy().into_owned());
        }
        let mut counts = std::collections::BTreeMap::new();
        for n in &seen {
            *counts.entry(n.clone()).or_insert(0) += 1;
        }
        for n in names.iter().filter(|n| !removed.contains(*n)) {
            assert_eq!(
                counts.get(n),
                Some(&1),
                "{n} stayed, seen {:?} times",
                counts.get(n)
            );
        }
        assert!(counts.values().all(|&c| c == 1), "a name came twice");
    }
}
