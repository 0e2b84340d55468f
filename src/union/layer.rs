//! A layer: a directory tree reached only through its root fd, and the on-disk overlay formats
//! (whiteouts, opaque markers, redirects) read from it and written to it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::sys::{self, Res};

pub const WH_PREFIX: &[u8] = b".wh.";
pub const WH_OPAQUE: &str = ".wh..wh..opq";

/// Longest relative path opened in one openat2 call.
const CHUNK: usize = 2048;

/// Which xattr namespace carries overlay metadata in a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrNs {
    Trusted,
    User,
}

impl XattrNs {
    pub fn opaque(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.opaque",
            XattrNs::User => "user.overlay.opaque",
        }
    }
    pub fn redirect(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.redirect",
            XattrNs::User => "user.overlay.redirect",
        }
    }
    /// The st_ino a copied-up file keeps (union::recover). In the overlay namespace, so kernel
    /// overlayfs hides it too and never copies it.
    pub fn ino(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.strata.ino",
            XattrNs::User => "user.overlay.strata.ino",
        }
    }
}

/// Xattrs that are overlay bookkeeping and never shown to or settable by users.
pub fn is_private_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"trusted.overlay.")
        || b.starts_with(b"user.overlay.")
        || b.starts_with(b"user.strata.")
        || b == b"user.fuseoverlayfs.override_stat"
        || b == b"user.containers.override_stat"
}

/// Does /proc/self/mountinfo say that mount `id` is idmapped (its per-mount options hold
/// `idmapped`)?
fn is_idmapped_mount(id: u64) -> bool {
    let Ok(info) = sys::read_proc("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 5 && f[0].parse() == Ok(id) && f[5].split(',').any(|o| o == "idmapped")
    })
}

pub fn is_whiteout_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

pub fn whiteout_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsStr::from_bytes(&v).to_os_string()
}

pub struct Layer {
    pub path: PathBuf,
    pub root: OwnedFd,
    /// The layer is seen through an idmapped mount (mount_setattr(2) MOUNT_ATTR_IDMAP, as
    /// containers/storage makes for a container with its own id mapping): the kernel already
    /// shows its owners as the container's ids on the host, so uidmapping= must not map them
    /// again.
    pub idmapped: bool,
    /// The directories opened last, for a layer that nothing changes while it is mounted (a
    /// lower: overlayfs leaves changes to a lower under a mount undefined, and strata never
    /// writes one). `ls -l` of a directory reads each entry's link and xattrs: one open of
    /// the directory instead of one per request.
    recent: Option<Mutex<Vec<OpenDir>>>,
}

/// A directory of a layer by its relative path, and its fd.
type OpenDir = (PathBuf, Arc<OwnedFd>);

/// How many directories a lower keeps open for `dir_shared`.
const RECENT_DIRS: usize = 8;

/// A directory of a layer, opened for this request or shared from the lower's recent ones.
pub enum DirRef {
    Own(OwnedFd),
    Shared(Arc<OwnedFd>),
}

impl AsRawFd for DirRef {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            DirRef::Own(f) => f.as_raw_fd(),
            DirRef::Shared(f) => f.as_raw_fd(),
        }
    }
}

impl Layer {
    /// A lower layer (or a graft's source): as the upper, and seen through an idmapped mount
    /// or not.
    pub fn open(path: &Path) -> std::io::Result<Layer> {
        let mut layer = Layer::open_upper(path)?;
        layer.idmapped = sys::mount_id(layer.root.as_raw_fd()).is_some_and(is_idmapped_mount);
        Ok(layer)
    }

    /// The upper layer: its owners are never taken as shown through an idmapped mount
    /// (Union::mapped_by_mount asks only of lowers), so its mount is not looked up.
    pub fn open_upper(path: &Path) -> std::io::Result<Layer> {
        let root = sys::openat2(libc::AT_FDCWD, path, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .map_err(std::io::Error::from_raw_os_error)?;
        Ok(Layer::from_root(path.to_path_buf(), root))
    }

    /// A layer at an fd opened elsewhere (a detached tmpfs).
    pub fn from_root(path: PathBuf, root: OwnedFd) -> Layer {
        Layer {
            path,
            root,
            idmapped: false,
            recent: None,
        }
    }

    /// A layer that stays as it is while mounted (a lower): `dir_shared` may keep its
    /// directories open.
    pub fn unchanging(mut self) -> Layer {
        self.recent = Some(Mutex::new(Vec::with_capacity(RECENT_DIRS)));
        self
    }

    /// `dir`, shared with the requests before it where the layer is unchanging.
    pub fn dir_shared(&self, rel: &Path) -> Res<DirRef> {
        let Some(recent) = &self.recent else {
            return self.dir(rel).map(DirRef::Own);
        };
        let lock = || recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, fd)) = lock().iter().find(|(p, _)| p == rel) {
            return Ok(DirRef::Shared(fd.clone()));
        }
        let fd = Arc::new(self.dir(rel)?);
        let mut r = lock();
        if r.len() == RECENT_DIRS {
            r.remove(0);
        }
        r.push((rel.to_path_buf(), fd.clone()));
        Ok(DirRef::Shared(fd))
    }

    /// Open directory `rel` (relative to the layer root) without following any symlink on the
    /// way and without leaving the layer.
    pub fn dir(&self, rel: &Path) -> Res<OwnedFd> {
        let open = |at: i32, p: &Path| {
            sys::openat2(
                at,
                p,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                sys::RESOLVE_SAFE,
            )
        };
        if rel.as_os_str().len() < CHUNK {
            return open(self.root.as_raw_fd(), rel);
        }
        // A path near or past PATH_MAX (the merged tree may be deeper than any one path the
        // kernel hands us): walk it in pieces, each resolved beneath the one before.
        let mut cur: Option<OwnedFd> = None;
        let mut piece = PathBuf::new();
        for c in rel.components() {
            if piece.as_os_str().len() + c.as_os_str().len() + 1 >= CHUNK {
                let at = cur
                    .as_ref()
                    .map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
                cur = Some(open(at, &piece)?);
                piece = PathBuf::new();
            }
            piece.push(c);
        }
        let at = cur
            .as_ref()
            .map_or(self.root.as_raw_fd(), |f| f.as_raw_fd());
        open(at, &piece)
    }
}

/// Everything a single layer says about one name in one directory.
pub enum Probe {
    /// Nothing here: look further down.
    Absent,
    /// A whiteout (char device 0:0, or `.wh.NAME` in an OCI-format layer): the name is deleted
    /// from here down.
    Whiteout,
    Entry(libc::stat),
}

/// What `name` is in `dirfd`. With `oci`, the layer is in the OCI format as well as the
/// kernel's: a file `.wh.NAME` deletes NAME. Without it `.wh.` names are plain names, as
/// kernel overlayfs has them.
pub fn probe(dirfd: RawFd, name: &OsStr, oci: bool) -> Res<Probe> {
    match sys::stat_opt(dirfd, name)? {
        Some(st) if sys::is_whiteout_dev(&st) => Ok(Probe::Whiteout),
        Some(st) => Ok(Probe::Entry(st)),
        None if !oci => Ok(Probe::Absent),
        None => match sys::stat_opt(dirfd, &whiteout_name(name)) {
            Ok(Some(_)) => Ok(Probe::Whiteout),
            // `.wh.` + a name near NAME_MAX cannot exist, so nothing whites that name out.
            Ok(None) | Err(libc::ENAMETOOLONG) => Ok(Probe::Absent),
            Err(e) => Err(e),
        },
    }
}

fn xattr_of(dirfd: RawFd, name: &OsStr, key: &str) -> Res<Option<Vec<u8>>> {
    let p = sys::xattr_path(dirfd, name)?;
    match sys::lgetxattr(&p, OsStr::new(key)) {
        Ok(v) => Ok(Some(v)),
        Err(libc::ENODATA) | Err(libc::EOPNOTSUPP) | Err(libc::EPERM) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Is directory `name` in `dirfd` opaque, by an xattr in either namespace or (with `oci`, in a
/// layer of the OCI format) by a `.wh..wh..opq` file inside it?
pub fn is_opaque(dirfd: RawFd, name: &OsStr, oci: bool) -> Res<bool> {
    for ns in [XattrNs::Trusted, XattrNs::User] {
        if let Some(v) = xattr_of(dirfd, name, ns.opaque())? {
            if v.as_slice() == b"y" {
                return Ok(true);
            }
        }
    }
    if !oci {
        return Ok(false);
    }
    let sub = sys::openat(dirfd, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    Ok(sys::stat_opt(sub.as_raw_fd(), OsStr::new(WH_OPAQUE))?.is_some())
}

/// Where the lower layers of a renamed directory are, as recorded by its redirect xattr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// Renamed within the same parent: the old name.
    Name(OsString),
    /// Renamed elsewhere: path from the overlay root (stored with a leading '/').
    Abs(PathBuf),
}

/// The redirect of `name` in `dirfd`; an error for a value kernel overlayfs refuses.
pub fn redirect_of(dirfd: RawFd, name: &OsStr) -> Res<Option<Redirect>> {
    for ns in [XattrNs::Trusted, XattrNs::User] {
        if let Some(v) = xattr_of(dirfd, name, ns.redirect())? {
            return parse_redirect(&v);
        }
    }
    Ok(None)
}

/// With redirect_dir=nofollow a directory whose redirect points into the lower layers is not
/// looked up at all, as the kernel refuses it: following one is like a symlink into the lower
/// layers, and not following it would show the directory without its content.
pub fn refused_redirect(path: &Path) -> i32 {
    log::warn!(
        "refusing to follow the redirect of /{} (redirect_dir=nofollow)",
        path.display()
    );
    libc::EPERM
}

/// A redirect xattr's value, refused as kernel overlayfs refuses it (its
/// ovl_get_redirect_xattr and lookup_one_len): an empty component (`/`, `//a`, `/a/`) is EINVAL,
/// a `.` or `..` component EACCES, so that no value can name anything outside the layers' tree.
pub fn parse_redirect(v: &[u8]) -> Res<Option<Redirect>> {
    let v = v.strip_suffix(b"\0").unwrap_or(v);
    if v.is_empty() {
        return Ok(None);
    }
    let dots = |c: &[u8]| c == b"." || c == b"..";
    if let Some(abs) = v.strip_prefix(b"/") {
        let comps: Vec<&[u8]> = abs.split(|&b| b == b'/').collect();
        if comps.iter().any(|c| c.is_empty()) {
            return Err(libc::EINVAL);
        }
        if comps.iter().any(|c| dots(c)) {
            return Err(libc::EACCES);
        }
        Ok(Some(Redirect::Abs(
            Path::new(OsStr::from_bytes(abs)).into(),
        )))
    } else if v.contains(&b'/') {
        Ok(None)
    } else if dots(v) {
        Err(libc::EACCES)
    } else {
        Ok(Some(Redirect::Name(OsStr::from_bytes(v).to_os_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_forms() {
        assert_eq!(
            parse_redirect(b"old"),
            Ok(Some(Redirect::Name("old".into())))
        );
        assert_eq!(
            parse_redirect(b"/a/b"),
            Ok(Some(Redirect::Abs("a/b".into())))
        );
        assert_eq!(
            parse_redirect(b"a/b"),
            Ok(None),
            "relative paths are not a redirect form"
        );
        assert_eq!(parse_redirect(b""), Ok(None));
    }

    #[test]
    fn redirects_leaving_the_tree_are_refused_as_the_kernel_refuses_them() {
        for v in [&b"/a/../b"[..], b"/../../etc", b"/.", b"..", b"."] {
            assert_eq!(parse_redirect(v), Err(libc::EACCES), "{v:?}");
        }
        for v in [&b"/"[..], b"//a", b"/a/", b"/a//b"] {
            assert_eq!(parse_redirect(v), Err(libc::EINVAL), "{v:?}");
        }
    }

    #[test]
    fn private_xattrs_are_hidden() {
        assert!(is_private_xattr(OsStr::new("trusted.overlay.opaque")));
        assert!(is_private_xattr(OsStr::new("user.overlay.redirect")));
        assert!(!is_private_xattr(OsStr::new("user.mime_type")));
        assert!(!is_private_xattr(OsStr::new("security.capability")));
    }

    #[test]
    fn whiteouts_in_both_formats() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".wh.gone"), b"").unwrap();
        std::fs::write(d.path().join("here"), b"x").unwrap();
        let l = Layer::open(d.path()).unwrap();
        let fd = l.dir(Path::new("")).unwrap();
        assert!(matches!(
            probe(fd.as_raw_fd(), OsStr::new("gone"), true).unwrap(),
            Probe::Whiteout
        ));
        // In a kernel-format layer `.wh.gone` is a file like any other and hides nothing.
        assert!(matches!(
            probe(fd.as_raw_fd(), OsStr::new("gone"), false).unwrap(),
            Probe::Absent
        ));
        assert!(matches!(
            probe(fd.as_raw_fd(), OsStr::new(".wh.gone"), false).unwrap(),
            Probe::Entry(_)
        ));
        assert!(matches!(
            probe(fd.as_raw_fd(), OsStr::new("here"), true).unwrap(),
            Probe::Entry(_)
        ));
        assert!(matches!(
            probe(fd.as_raw_fd(), OsStr::new("never"), true).unwrap(),
            Probe::Absent
        ));
        if sys::geteuid() == 0 {
            sys::mknodat(fd.as_raw_fd(), OsStr::new("dev"), libc::S_IFCHR, 0).unwrap();
            assert!(matches!(
                probe(fd.as_raw_fd(), OsStr::new("dev"), false).unwrap(),
                Probe::Whiteout
            ));
        }
    }

    #[test]
    fn layer_paths_never_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("x")).unwrap();
        let l = Layer::open(d.path()).unwrap();
        assert!(l.dir(Path::new("etc")).is_err());
        assert!(l.dir(Path::new("x")).is_err());
        assert!(l.dir(Path::new("x/etc")).is_err());
        assert!(l.dir(Path::new("../")).is_err());
    }

    #[test]
    fn paths_longer_than_path_max_are_walked() {
        let d = tempfile::tempdir().unwrap();
        let comp = "d".repeat(200);
        let mut rel = PathBuf::new();
        let l = Layer::open(d.path()).unwrap();
        for _ in 0..25 {
            let fd = l.dir(&rel).unwrap();
            sys::mkdirat(fd.as_raw_fd(), OsStr::new(&comp), 0o755).unwrap();
            rel.push(&comp);
        }
        assert!(rel.as_os_str().len() > libc::PATH_MAX as usize);
        assert!(l.dir(&rel).is_ok());
        // A symlink inside a long path is still refused.
        let fd = l.dir(&rel).unwrap();
        sys::symlinkat(OsStr::new("/etc"), fd.as_raw_fd(), OsStr::new("esc")).unwrap();
        assert!(l.dir(&rel.join("esc")).is_err());
    }
}
