//! What a container changed, read from its upper layer only (the cost follows the size of the
//! change, not of the image), through union/'s readers of whiteouts, opaque markers and
//! redirects. `diff` prints it; `commit` writes it as a layer tar.
//!
//! - a whiteout: the name is deleted;
//! - a redirected (renamed) directory: deleted at its origin, added at its new path with all of
//!   its merged content (the upper's and the lower layers' at the origin);
//! - an opaque directory: changed (added, if no lower has it), its content added;
//! - any other entry: added, or changed when a lower layer has it. A directory that only
//!   leads to changes is changed; one whose every change below is left out is left out too,
//!   unless its own owner or mode differ from the lower's.
//!
//! Left out, as Docker leaves them: the mountpoints of volumes, binds and tmpfs (kept as
//! directories by `commit`, their content never read) and the generated /etc/hosts,
//! /etc/hostname and /etc/resolv.conf, and the runtime's /proc, /sys and /dev.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::sys;
use crate::union::layer::{
    is_opaque, is_whiteout_name, probe, redirect_of, Layer, Probe, Redirect, WH_OPAQUE,
};

/// What a changes walk reads: a container's upper over its lower layers (top-most first).
pub struct Target {
    pub upper: PathBuf,
    pub lowers: Vec<PathBuf>,
    /// Mountpoints of volumes, binds and tmpfs: kept as directories, content left out.
    pub mountpoints: Vec<PathBuf>,
    /// The image the container runs from, if it runs from one.
    pub image_id: Option<String>,
    /// The container's command, for the new layer's history.
    pub created_by: String,
}

/// What the runtime makes in every container's root, never the container's own change (Docker
/// keeps these in its init layer): the generated files, and the mountpoints of /proc, /sys
/// and /dev, whose content never reaches the upper.
pub const GENERATED: [&str; 7] = [
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/mtab",
    "dev",
    "proc",
    "sys",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// Where an entry's content is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum From {
    /// Nothing: a deletion.
    None,
    /// A file or directory of the upper or a lower layer, by its host path.
    Path(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Change {
    /// Relative to the container's root.
    pub path: PathBuf,
    pub kind: Kind,
    pub from: From,
    /// An opaque directory: what the lower layers had below it is gone.
    pub opaque: bool,
    /// A mountpoint: a directory kept, its content never read.
    pub mountpoint: bool,
}

pub struct Walker {
    upper: Layer,
    lowers: Vec<Layer>,
    /// The upper is in the OCI format (`.wh.` names) when it was written unprivileged.
    oci_upper: bool,
    mountpoints: Vec<PathBuf>,
    out: Vec<Change>,
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

fn rel_of(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect()
}

/// The changes of `t`, sorted as Docker prints them (a directory before what is in it, names
/// in order at each level).
pub fn changes(t: &Target) -> Result<Vec<Change>> {
    let upper = Layer::open(&t.upper).with_context(|| format!("{}", t.upper.display()))?;
    let lowers = t
        .lowers
        .iter()
        .map(|l| Layer::open(l).with_context(|| format!("{}", l.display())))
        .collect::<Result<Vec<_>>>()?;
    let mut w = Walker {
        upper,
        lowers,
        oci_upper: sys::geteuid() != 0,
        mountpoints: t.mountpoints.iter().map(|m| rel_of(m)).collect(),
        out: Vec::new(),
    };
    w.walk(Path::new(""), true)?;
    let mut out = w.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    // A renamed directory's old name is whited out too; a path deleted and made again is
    // the one change that makes it again.
    out.dedup_by(|a, b| a.path == b.path && a.kind == b.kind);
    let again: Vec<PathBuf> = out
        .iter()
        .filter(|c| c.kind != Kind::Deleted)
        .map(|c| c.path.clone())
        .collect();
    out.retain(|c| c.kind != Kind::Deleted || again.binary_search(&c.path).is_err());
    Ok(out)
}

impl Walker {
    fn upper_names(&self, rel: &Path) -> Result<Vec<OsString>> {
        let fd = self
            .upper
            .dir(rel)
            .map_err(errno)
            .with_context(|| format!("/{}", rel.display()))?;
        let mut names: Vec<OsString> = sys::read_dir(fd.as_raw_fd())
            .map_err(errno)?
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Walk the upper's directory `rel`; `lower_visible`: the lower layers' content at `rel`
    /// still shows (no opaque directory above). Returns whether anything below was kept.
    fn walk(&mut self, rel: &Path, lower_visible: bool) -> Result<bool> {
        let dfd = self.upper.dir(rel).map_err(errno)?;
        let mut kept = false;
        for name in self.upper_names(rel)? {
            let path = rel.join(&name);
            if self.oci_upper && is_whiteout_name(&name) {
                if name == WH_OPAQUE {
                    continue;
                }
                let gone = OsStr::from_bytes(&name.as_bytes()[4..]);
                self.push(rel.join(gone), Kind::Deleted, From::None, false);
                kept = true;
                continue;
            }
            let Some(st) = sys::stat_opt(dfd.as_raw_fd(), &name).map_err(errno)? else {
                continue;
            };
            if sys::is_whiteout_dev(&st) {
                self.push(path, Kind::Deleted, From::None, false);
                kept = true;
                continue;
            }
            if GENERATED.iter().any(|g| Path::new(g) == path) {
                continue;
            }
            let host = self.upper.path.join(&path);
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if self.mountpoints.contains(&path) {
                let kind = if lower_visible && self.lower_has(&path)?.is_some() {
                    Kind::Changed
                } else {
                    Kind::Added
                };
                self.out.push(Change {
                    path,
                    kind,
                    from: From::Path(host),
                    opaque: false,
                    mountpoint: true,
                });
                continue;
            }
            if !is_dir {
                let kind = if lower_visible && self.lower_has(&path)?.is_some() {
                    Kind::Changed
                } else {
                    Kind::Added
                };
                self.push(path, kind, From::Path(host), false);
                kept = true;
                continue;
            }
            if let Some(r) = redirect_of(dfd.as_raw_fd(), &name).map_err(errno)? {
                let origin = match r {
                    Redirect::Name(old) => rel.join(old),
                    Redirect::Abs(p) => p,
                };
                self.push(origin.clone(), Kind::Deleted, From::None, false);
                self.push(path.clone(), Kind::Added, From::Path(host), true);
                let opaque = is_opaque(dfd.as_raw_fd(), &name, self.oci_upper).map_err(errno)?;
                self.merged(&path, (!opaque).then_some(origin))?;
                kept = true;
                continue;
            }
            if is_opaque(dfd.as_raw_fd(), &name, self.oci_upper).map_err(errno)? {
                let kind = if lower_visible && self.lower_has(&path)?.is_some() {
                    Kind::Changed
                } else {
                    Kind::Added
                };
                self.push(path.clone(), kind, From::Path(host), true);
                self.all_added(&path)?;
                kept = true;
                continue;
            }
            let lower = if lower_visible {
                self.lower_has(&path)?
            } else {
                None
            };
            let at = self.out.len();
            let below = self.walk(&path, lower.is_some())?;
            let own = match &lower {
                None => true,
                Some(l) => {
                    l.st_mode != st.st_mode || l.st_uid != st.st_uid || l.st_gid != st.st_gid
                }
            };
            // A directory the runtime made only to hold generated files (/etc in an image
            // without one): Docker's init layer has it, the container's changes do not.
            if lower.is_none() && !below && self.only_generated(&path)? {
                continue;
            }
            if below || own {
                let kind = if lower.is_some() {
                    Kind::Changed
                } else {
                    Kind::Added
                };
                self.out.insert(
                    at,
                    Change {
                        path,
                        kind,
                        from: From::Path(host),
                        opaque: false,
                        mountpoint: false,
                    },
                );
                kept = true;
            }
        }
        Ok(kept)
    }

    /// Is the upper's directory `rel` the parent of generated files and holds nothing else?
    fn only_generated(&self, rel: &Path) -> Result<bool> {
        if !GENERATED.iter().any(|g| Path::new(g).parent() == Some(rel)) {
            return Ok(false);
        }
        let names = self.upper_names(rel)?;
        Ok(names
            .iter()
            .all(|n| GENERATED.iter().any(|g| Path::new(g) == rel.join(n))))
    }

    fn push(&mut self, path: PathBuf, kind: Kind, from: From, opaque: bool) {
        self.out.push(Change {
            path,
            kind,
            from,
            opaque,
            mountpoint: false,
        });
    }

    /// Everything below the upper's directory `rel`, added (the content of an opaque
    /// directory).
    fn all_added(&mut self, rel: &Path) -> Result<()> {
        let dfd = self.upper.dir(rel).map_err(errno)?;
        for name in self.upper_names(rel)? {
            if self.oci_upper && is_whiteout_name(&name) {
                continue;
            }
            let Some(st) = sys::stat_opt(dfd.as_raw_fd(), &name).map_err(errno)? else {
                continue;
            };
            if sys::is_whiteout_dev(&st) {
                continue;
            }
            let path = rel.join(&name);
            let host = self.upper.path.join(&path);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // A redirect below an opaque directory still names lower content.
                if let Some(r) = redirect_of(dfd.as_raw_fd(), &name).map_err(errno)? {
                    let origin = match r {
                        Redirect::Name(old) => rel.join(old),
                        Redirect::Abs(p) => p,
                    };
                    self.push(path.clone(), Kind::Added, From::Path(host), true);
                    self.merged(&path, Some(origin))?;
                    continue;
                }
                self.push(path.clone(), Kind::Added, From::Path(host), false);
                self.all_added(&path)?;
            } else {
                self.push(path, Kind::Added, From::Path(host), false);
            }
        }
        Ok(())
    }

    /// The merged content below directory `rel` of a renamed directory, added: the upper's at
    /// `rel` over the lower layers' at `origin` (None: an opaque one, the upper's only).
    fn merged(&mut self, rel: &Path, origin: Option<PathBuf>) -> Result<()> {
        self.all_added(rel)?;
        let Some(origin) = origin else {
            return Ok(());
        };
        let seen: Vec<OsString> = self
            .upper_names(rel)?
            .into_iter()
            .map(|n| {
                if self.oci_upper && is_whiteout_name(&n) {
                    OsStr::from_bytes(&n.as_bytes()[4..]).to_os_string()
                } else {
                    n
                }
            })
            .collect();
        self.lower_tree(0, &origin, rel, seen)
    }

    /// A lower directory's merged content (layers `i` and below), added at `dst`, but for the
    /// names in `seen` (shown or whited out above it).
    fn lower_tree(
        &mut self,
        i: usize,
        src: &Path,
        dst: &Path,
        mut seen: Vec<OsString>,
    ) -> Result<()> {
        for j in i..self.lowers.len() {
            let Ok(fd) = self.lowers[j].dir(src) else {
                continue;
            };
            for n in lower_names(&fd)? {
                if n == WH_OPAQUE || seen.contains(&n) {
                    continue;
                }
                if is_whiteout_name(&n) {
                    seen.push(OsStr::from_bytes(&n.as_bytes()[4..]).to_os_string());
                    continue;
                }
                seen.push(n.clone());
                let Some(st) = sys::stat_opt(fd.as_raw_fd(), &n).map_err(errno)? else {
                    continue;
                };
                if sys::is_whiteout_dev(&st) {
                    continue;
                }
                let host = self.lowers[j].path.join(src.join(&n));
                let path = dst.join(&n);
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    self.push(path.clone(), Kind::Added, From::Path(host), false);
                    self.lower_tree(j, &src.join(&n), &path, Vec::new())?;
                } else {
                    self.push(path, Kind::Added, From::Path(host), false);
                }
            }
            if is_opaque_dir(&fd)? {
                break;
            }
        }
        Ok(())
    }

    /// What the lower layers show at `rel` (its stat), if anything: the top-most layer that
    /// has it, unless a layer above whites it out or hides it under an opaque directory.
    fn lower_has(&self, rel: &Path) -> Result<Option<libc::stat>> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(name) = rel.file_name() else {
            return Ok(None);
        };
        'layers: for l in &self.lowers {
            // An ancestor whited out or opaque in this layer ends the search.
            let mut sofar = PathBuf::new();
            for c in parent.components() {
                let Ok(fd) = l.dir(&sofar) else {
                    continue 'layers;
                };
                match probe(fd.as_raw_fd(), c.as_os_str(), true).map_err(errno)? {
                    Probe::Whiteout => return Ok(None),
                    Probe::Absent => continue 'layers,
                    Probe::Entry(_) => {}
                }
                sofar.push(c);
            }
            let Ok(fd) = l.dir(parent) else {
                continue;
            };
            match probe(fd.as_raw_fd(), name, true).map_err(errno)? {
                Probe::Whiteout => return Ok(None),
                Probe::Entry(st) => return Ok(Some(st)),
                Probe::Absent => {}
            }
            if is_opaque_dir(&fd)? {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

fn lower_names(fd: &OwnedFd) -> Result<Vec<OsString>> {
    let mut names: Vec<OsString> = sys::read_dir(fd.as_raw_fd())
        .map_err(errno)?
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    names.sort();
    Ok(names)
}

/// Is the directory open at `fd` opaque (by xattr, or by `.wh..wh..opq` in a lower layer)?
fn is_opaque_dir(fd: &OwnedFd) -> Result<bool> {
    is_opaque(fd.as_raw_fd(), OsStr::new("."), true).map_err(|e| errno(e).into())
}
