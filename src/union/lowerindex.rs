//! An in-memory index of lower-layer directories.
//!
//! Lower layers never change under a mount, so each lower directory is read once (one getdents
//! pass and two xattr reads) and kept: its entries with their types and inode numbers, the
//! names its whiteouts hide, whether it is opaque, and where its redirect points. A lookup that
//! crosses many lower layers then costs a hash probe per layer instead of several syscalls.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::layer::{parse_redirect, Redirect, WH_OPAQUE, WH_PREFIX};
use super::Union;
use crate::sys::{self, Res};

pub struct DirIndex {
    /// Visible entries in directory order: name, d_type, inode number in the layer.
    pub entries: Vec<(OsString, u8, u64)>,
    pos: HashMap<OsString, usize>,
    /// Names hidden by a whiteout in this directory (either format).
    pub whiteouts: HashSet<OsString>,
    pub opaque: bool,
    /// Its redirect xattr, or the errno of a value that is refused.
    pub redirect: Res<Option<Redirect>>,
}

/// What one lower directory says about one name.
pub enum Lower {
    Absent,
    Whiteout,
    /// d_type and inode number in the layer.
    Entry(u8, u64),
}

impl DirIndex {
    pub fn get(&self, name: &OsStr) -> Lower {
        if self.whiteouts.contains(name) {
            return Lower::Whiteout;
        }
        match self.pos.get(name) {
            Some(&i) => Lower::Entry(self.entries[i].1, self.entries[i].2),
            None => Lower::Absent,
        }
    }

    fn build(dirfd: i32) -> Res<DirIndex> {
        let mut idx = DirIndex {
            entries: Vec::new(),
            pos: HashMap::new(),
            whiteouts: HashSet::new(),
            opaque: false,
            redirect: Ok(None),
        };
        for (name, dtype, ino) in sys::read_dir_flags(dirfd, libc::O_NOATIME)? {
            let b = name.as_bytes();
            if b == WH_OPAQUE.as_bytes() {
                idx.opaque = true;
                continue;
            }
            if let Some(rest) = b.strip_prefix(WH_PREFIX) {
                idx.whiteouts.insert(OsStr::from_bytes(rest).to_os_string());
                continue;
            }
            let mut dtype = dtype;
            if dtype == libc::DT_CHR || dtype == libc::DT_UNKNOWN {
                let st = sys::fstatat(dirfd, &name)?;
                if sys::is_whiteout_dev(&st) {
                    idx.whiteouts.insert(name);
                    continue;
                }
                dtype = dtype_of(st.st_mode);
            }
            idx.pos.insert(name.clone(), idx.entries.len());
            idx.entries.push((name, dtype, ino));
        }
        // Both xattr namespaces are read: a lower layer may come from a privileged overlay
        // (trusted.*) or an unprivileged one (user.*).
        let real = sys::openat2(
            dirfd,
            Path::new(""),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            0,
        )?;
        for ns in ["trusted", "user"] {
            let opaque = format!("{ns}.overlay.opaque");
            if sys::fgetxattr(real.as_raw_fd(), OsStr::new(&opaque)).is_some_and(|v| v == b"y") {
                idx.opaque = true;
            }
            if idx.redirect == Ok(None) {
                let key = format!("{ns}.overlay.redirect");
                if let Some(v) = sys::fgetxattr(real.as_raw_fd(), OsStr::new(&key)) {
                    idx.redirect = parse_redirect(&v);
                }
            }
        }
        Ok(idx)
    }
}

pub fn dtype_of(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_REG,
    }
}

pub fn mode_of(dtype: u8) -> u32 {
    match dtype {
        libc::DT_DIR => libc::S_IFDIR,
        libc::DT_LNK => libc::S_IFLNK,
        libc::DT_FIFO => libc::S_IFIFO,
        libc::DT_CHR => libc::S_IFCHR,
        libc::DT_BLK => libc::S_IFBLK,
        libc::DT_SOCK => libc::S_IFSOCK,
        _ => libc::S_IFREG,
    }
}

impl Union {
    /// The index of directory `path` in lower layer `layer`, or None where the layer has no
    /// directory there.
    pub fn lower_dir(&self, layer: usize, path: &Path) -> Res<Option<Arc<DirIndex>>> {
        let key = (layer, path.to_path_buf());
        if let Some(i) = self.lower_dirs.get(&key) {
            return Ok(i.clone());
        }
        let idx = match self.layer(layer).dir(path) {
            Ok(fd) => Some(Arc::new(DirIndex::build(fd.as_raw_fd())?)),
            Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ELOOP) => None,
            Err(e) => return Err(e),
        };
        self.lower_dirs.insert(key, idx.clone());
        Ok(idx)
    }

    /// A stat of a lower entry: full for the entry whose attributes are shown (the first),
    /// type-only for the ones merged beneath it.
    pub(crate) fn lower_stat(
        &self,
        loc: &super::Loc,
        dtype: u8,
        ino: u64,
        full: bool,
    ) -> Res<libc::stat> {
        if full {
            let (p, n) = (
                loc.path.parent().unwrap_or(Path::new("")),
                loc.path.file_name().unwrap_or_default(),
            );
            // A listing asks this for every entry of one directory: keep it open.
            let fd = self.layer(loc.layer).dir_shared(p)?;
            return sys::fstatat(fd.as_raw_fd(), n);
        }
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = mode_of(dtype);
        st.st_ino = ino;
        Ok(st)
    }
}

pub type LowerDirs = dashmap::DashMap<(usize, PathBuf), Option<Arc<DirIndex>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::union::layer::Layer;

    fn index_of(dir: &Path) -> DirIndex {
        let l = Layer::open(dir).unwrap();
        let fd = l.dir(Path::new("")).unwrap();
        DirIndex::build(fd.as_raw_fd()).unwrap()
    }

    #[test]
    fn entries_whiteouts_and_opaque_marker() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("kept"), b"x").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join(".wh.gone"), b"").unwrap();
        std::fs::write(d.path().join(WH_OPAQUE), b"").unwrap();
        let idx = index_of(d.path());
        assert!(matches!(
            idx.get(OsStr::new("kept")),
            Lower::Entry(libc::DT_REG, _)
        ));
        assert!(matches!(
            idx.get(OsStr::new("sub")),
            Lower::Entry(libc::DT_DIR, _)
        ));
        assert!(matches!(idx.get(OsStr::new("gone")), Lower::Whiteout));
        assert!(matches!(idx.get(OsStr::new("never")), Lower::Absent));
        assert!(idx.opaque, ".wh..wh..opq makes the directory opaque");
        let names: Vec<_> = idx.entries.iter().map(|e| e.0.clone()).collect();
        assert_eq!(names.len(), 2, "markers are not entries: {names:?}");
    }

    #[test]
    fn device_whiteouts_and_xattrs() {
        if sys::geteuid() != 0 {
            panic!("this test needs root (mknod of a whiteout, trusted.* xattrs)");
        }
        let d = tempfile::tempdir().unwrap();
        let l = Layer::open(d.path()).unwrap();
        let fd = l.dir(Path::new("")).unwrap();
        sys::mknodat(fd.as_raw_fd(), OsStr::new("dev"), libc::S_IFCHR, 0).unwrap();
        let dir = std::ffi::CString::new(d.path().as_os_str().as_bytes()).unwrap();
        sys::lsetxattr(&dir, OsStr::new("trusted.overlay.redirect"), b"/a/b", 0).unwrap();
        let idx = index_of(d.path());
        assert!(matches!(idx.get(OsStr::new("dev")), Lower::Whiteout));
        assert_eq!(idx.redirect, Ok(Some(Redirect::Abs("a/b".into()))));
        assert!(!idx.opaque);
    }
}
