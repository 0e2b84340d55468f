//! The mount a path is in (the longest strata mountpoint above it, as df finds a filesystem),
//! and its layers opened read-only as unions: the image's layers and the upper, and each graft.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::daemon::record::{self, GraftRecord, MountRecord};
use crate::inode::InodeTable;
use crate::union::graft::GRAFT_ID_BASE;
use crate::union::layer::{Layer, XattrNs};
use crate::union::{self, Union};

pub struct View {
    pub rec: MountRecord,
    pub union: Union,
    /// Each graft with a union over its source, in the record's order.
    pub grafts: Vec<(GraftRecord, Union)>,
}

/// `p` made absolute and cleaned of `.` and `..` without touching the filesystem.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("the current directory")?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The path with its directories resolved (symlinks followed, as far as they exist) and its
/// last name kept as it is: explain describes a symlink itself, as lstat does.
fn resolved(p: &Path) -> Result<PathBuf> {
    let abs = absolute(p)?;
    let Some(name) = abs.file_name() else {
        return Ok(abs);
    };
    let mut dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut rest: Vec<OsString> = Vec::new();
    loop {
        match dir.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for r in rest.iter().rev() {
                    out.push(r);
                }
                out.push(name);
                return Ok(out);
            }
            Err(_) => match (dir.file_name(), dir.parent()) {
                (Some(n), Some(parent)) => {
                    rest.push(n.to_os_string());
                    dir = parent.to_path_buf();
                }
                _ => return Ok(abs),
            },
        }
    }
}

fn strata_mounts() -> Vec<PathBuf> {
    crate::daemon::mount_points()
        .into_iter()
        .filter(|(_, kind)| kind == "fuse.strata")
        .map(|(p, _)| p)
        .collect()
}

/// The mountpoint `path` is in and its path inside the mount (relative, "" for the root).
/// With `mount`, that mount; `path` may then also be given as a path inside it.
pub fn locate(path: &Path, mount: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    if let Some(m) = mount {
        let mounts = strata_mounts();
        let mp = m
            .canonicalize()
            .map_err(|e| anyhow!("--mount {}: {}", m.display(), crate::daemon::io_msg(&e)))?;
        if !mounts.contains(&mp) {
            bail!("--mount {}: not a strata mount", m.display());
        }
        let r = resolved(path)?;
        if let Ok(rel) = r.strip_prefix(&mp) {
            return Ok((mp.clone(), rel.to_path_buf()));
        }
        // A path as the mount's own processes see it (/etc/hosts of a container).
        let inside: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        return Ok((mp, inside));
    }
    let r = resolved(path)?;
    let best = match crate::daemon::mount_containing(&r) {
        Some((mp, kind)) if kind == "fuse.strata" => mp,
        _ => bail!("{}: not inside a strata mount", path.display()),
    };
    let rel = r.strip_prefix(&best).unwrap_or(Path::new("")).to_path_buf();
    Ok((best, rel))
}

fn read_only_opts(rec: &MountRecord, plain: bool, id_base: usize) -> union::Options {
    union::Options {
        redirect_follow: !plain && rec.redirect_follow,
        redirect_create: false,
        read_only: true,
        xattr_ns: if rec.xattr_ns == "trusted" && !plain {
            XattrNs::Trusted
        } else {
            XattrNs::User
        },
        kernel_whiteouts: !plain && rec.kernel_whiteouts,
        xattr_permissions: false,
        plain,
        id_base,
        check_permissions: false,
        show: Default::default(),
    }
}

fn open_layer(what: &str, p: &Path) -> Result<Layer> {
    Layer::open(p).with_context(|| format!("{what} {}", p.display()))
}

impl View {
    /// The layers of the live mount at `mountpoint`, as its record names them.
    pub fn open(mountpoint: &Path) -> Result<View> {
        let rec = record::read(mountpoint)?;
        let mut lowers = Vec::new();
        for l in &rec.lowers {
            lowers.push(open_layer("lowerdir", l)?);
        }
        let upper = rec
            .upper
            .as_deref()
            .map(|u| open_layer("upperdir", u))
            .transpose()?;
        let inodes = match &rec.work {
            Some(w) => {
                let t = InodeTable::open(&w.join("strata").join("inodes"))?;
                // Read only: the daemon has read the copies' own numbers back already, and
                // explain reads them from the copies where the table lacks them.
                t.recovered();
                t
            }
            None => InodeTable::in_memory(),
        };
        let union = Union::new(upper, lowers, None, inodes, read_only_opts(&rec, false, 0))
            .map_err(|e| anyhow!("{}: errno {e}", mountpoint.display()))?;
        let mut grafts = Vec::new();
        for (i, g) in rec.grafts.iter().enumerate() {
            let layer = open_layer(&format!("graft {}", g.target.display()), &g.source)?;
            let u = Union::new(
                Some(layer),
                Vec::new(),
                None,
                InodeTable::in_memory(),
                read_only_opts(&rec, true, GRAFT_ID_BASE + i),
            )
            .map_err(|e| anyhow!("graft {}: errno {e}", g.target.display()))?;
            grafts.push((g.clone(), u));
        }
        Ok(View { rec, union, grafts })
    }

    /// The graft `rel` (a path inside the mount) is in: the innermost one.
    pub fn graft_of(&self, rel: &Path) -> Option<usize> {
        let abs = Path::new("/").join(rel);
        self.grafts
            .iter()
            .enumerate()
            .filter(|(_, (g, _))| abs.starts_with(&g.target))
            .max_by_key(|(_, (g, _))| g.target.as_os_str().len())
            .map(|(i, _)| i)
    }

    /// Is graft `g` one of the files a container's runtime writes for it (/etc/hosts,
    /// /etc/hostname, /etc/resolv.conf in the container's own directory)?
    pub fn is_init_file(&self, g: &GraftRecord) -> bool {
        let Some(file) = &g.file else {
            return false;
        };
        crate::container::etc::FILES
            .iter()
            .any(|(name, dst)| name == file && g.target == Path::new(dst))
            && self.rec.mountpoint.parent() == Some(g.source.as_path())
    }

    /// A layer's name as explain and layers print it.
    pub fn layer_name(i: usize) -> String {
        if i == 0 {
            "upper".into()
        } else {
            format!("lower {i}")
        }
    }

    pub fn layer_dir(&self, i: usize) -> &Path {
        &self.union.layer(i).path
    }

    /// Layer indexes top-most first: the upper (if any) and each lower.
    pub fn layer_indexes(&self) -> Vec<usize> {
        let first = if self.union.upper.is_some() { 0 } else { 1 };
        (first..=self.union.lowers.len()).collect()
    }
}
