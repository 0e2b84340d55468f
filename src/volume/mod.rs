//! Volumes and bind mounts: the graft table of a mount (which path is served from where) and
//! the volume store behind named and anonymous volumes.
//!
//! Grafts are set up before the mount goes live: each target is resolved in the merged tree
//! (through symlinks, never out of it), a missing one is created in the upper as an empty
//! directory (or file, for a single-file bind) that shows in the upper and nothing more, a new
//! empty volume is filled from the image, and each source is joined in as a part of the tree
//! (see union::graft).

pub mod fill;
pub mod spec;
pub mod store;
pub mod tmpfs;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use crate::inode::InodeTable;
use crate::state::Root;
use crate::sys;
use crate::union::copy_up::errstr;
use crate::union::dir::{Caller, NewEntry};
use crate::union::graft::Tree;
use crate::union::layer::{Layer, XattrNs};
use crate::union::{self, Union};
use spec::{Graft, Source};
use store::Store;
use tmpfs::Tmpfs;

/// Checks that need nothing but the command line and the host: run before the daemon starts.
/// A bind source must not lie under the (canonical) `mountpoint`: the mount covers it.
pub fn check(grafts: &[Graft], mountpoint: &Path) -> Result<()> {
    for g in grafts {
        if let Source::Bind(src) = &g.source {
            let why = match src.canonicalize() {
                Ok(p) if p.starts_with(mountpoint) => {
                    format!("is inside the mountpoint {}", mountpoint.display())
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist".into(),
                Err(e) => e.to_string(),
            };
            bail!("{}: bind source {} {why}", g.given, src.display());
        }
    }
    Ok(())
}

/// What a mount holds for its grafts while it serves them, and what it made for them.
#[derive(Default)]
pub struct Attached {
    root: Option<PathBuf>,
    volumes: Vec<String>,
    tmpfs: Vec<Tmpfs>,
    /// Volumes this mount created.
    created: Vec<String>,
    /// Entries made in the tree for grafts to stand on, in the order they were made:
    /// (parent, name, is a directory).
    made: Vec<(u64, OsString, bool)>,
    /// What each graft serves, in the order they were joined in (for the mount's record).
    pub served: Vec<Served>,
}

/// One graft as joined in: where, and from which directory.
#[derive(Clone, Debug)]
pub struct Served {
    pub target: PathBuf,
    /// bind, volume or tmpfs.
    pub kind: &'static str,
    pub source: PathBuf,
    /// For a single-file bind: the file's name in `source`.
    pub file: Option<OsString>,
    pub volume: Option<String>,
    pub read_only: bool,
}

impl Attached {
    /// The mount failed: take away what was made for it (the entries made in the tree for
    /// grafts, the volumes it created), then let go of the rest.
    pub fn undo(&mut self, tree: &Tree) {
        for (parent, name, dir) in self.made.drain(..).rev() {
            let (_, fs, local) = tree.route(parent);
            if let Err(e) = fs.unlink(local, &name, dir) {
                log::warn!("cannot remove {name:?}, made for a graft: {}", errstr(e));
            }
        }
        let created = std::mem::take(&mut self.created);
        self.release();
        if created.is_empty() {
            return;
        }
        let root = Root::locate(self.root.clone());
        match Store::open(&root) {
            Ok(s) => {
                for v in created {
                    if let Err(e) = s.remove(&v) {
                        log::warn!("volume {v}: {e:#}");
                    }
                }
            }
            Err(e) => log::warn!("volume store: {e:#}"),
        }
    }

    /// Let go: the volumes are no longer used by this mount, tmpfs stand-ins are removed.
    pub fn release(&mut self) {
        for t in self.tmpfs.drain(..) {
            t.remove();
        }
        if self.volumes.is_empty() {
            return;
        }
        let root = Root::locate(self.root.clone());
        match Store::open(&root) {
            Ok(s) => {
                for v in self.volumes.drain(..) {
                    if let Err(e) = s.remove_user(&v) {
                        log::warn!("volume {v}: {e:#}");
                    }
                }
            }
            Err(e) => log::warn!("volume store: {e:#}"),
        }
    }
}

fn caller() -> Caller {
    Caller {
        uid: sys::geteuid(),
        gid: unsafe { libc::getegid() },
        pid: std::process::id(),
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// A graft's source, opened.
struct Opened {
    layer: Layer,
    /// For a single-file graft, its name in `layer` (the source's directory).
    file: Option<OsString>,
    what: String,
}

/// Join `grafts` (in spec::order) into `tree`, for the mount at `mountpoint`.
pub fn attach(
    tree: &mut Tree,
    grafts: &[Graft],
    root: &Root,
    mountpoint: &Path,
) -> Result<Attached> {
    let mut held = Attached {
        root: Some(root.path.clone()),
        ..Default::default()
    };
    let r = attach_all(tree, grafts, root, mountpoint, &mut held);
    match r {
        Ok(()) => Ok(held),
        Err(e) => {
            held.undo(tree);
            Err(e)
        }
    }
}

fn attach_all(
    tree: &mut Tree,
    grafts: &[Graft],
    root: &Root,
    mountpoint: &Path,
    held: &mut Attached,
) -> Result<()> {
    // Nothing is written before every target has been checked against the image.
    let image = Tree::new(tree.union().clone());
    for (i, g) in grafts.iter().enumerate() {
        if grafts[..i].iter().any(|o| g.target.starts_with(&o.target)) {
            continue; // inside another graft: checked when that one is in place
        }
        match image.resolve(&g.target, None) {
            Ok((p, name)) => match image.lookup(p, &name) {
                Ok((_, st)) => fits(g, &st, is_file_source(g))?,
                Err(libc::ENOENT) => {}
                Err(e) => bail!("{}: target {}: {}", g.given, g.target.display(), errstr(e)),
            },
            Err(libc::ENOENT) => {}
            Err(e) => bail!("{}: target {}: {}", g.given, g.target.display(), errstr(e)),
        }
    }
    let store = if grafts.iter().any(|g| matches!(g.source, Source::Volume(_))) {
        Some(Store::open(root)?)
    } else {
        None
    };
    if grafts
        .iter()
        .any(|g| matches!(g.source, Source::Tmpfs { .. }))
    {
        tmpfs::remove_stale();
    }
    for (i, g) in grafts.iter().enumerate() {
        let opened = match &g.source {
            Source::Bind(src) => open_bind(g, src)?,
            Source::Volume(name) => {
                let s = store
                    .as_ref()
                    .expect("store is open when volumes are grafted");
                open_volume(s, &image, g, name.as_deref(), mountpoint, held)?
            }
            Source::Tmpfs { size, mode } => {
                let (layer, t) = Tmpfs::new(*size, *mode, i).with_context(|| g.given.clone())?;
                held.tmpfs.push(t);
                Opened {
                    layer,
                    file: None,
                    what: "tmpfs".into(),
                }
            }
        };
        let (parent, name) = mountpoint_of(tree, g, opened.file.is_some(), &mut held.made)?;
        held.served.push(Served {
            target: g.target.clone(),
            kind: match &g.source {
                Source::Bind(_) => "bind",
                Source::Volume(_) => "volume",
                Source::Tmpfs { .. } => "tmpfs",
            },
            // A detached tmpfs has no path: it is reached through the daemon's fd of it.
            source: if opened.layer.path.is_absolute() {
                opened.layer.path.clone()
            } else {
                use std::os::fd::AsRawFd;
                PathBuf::from(format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    opened.layer.root.as_raw_fd()
                ))
            },
            file: opened.file.clone(),
            volume: held
                .volumes
                .last()
                .cloned()
                .filter(|_| matches!(g.source, Source::Volume(_))),
            read_only: g.read_only,
        });
        let fs = Union::new(
            Some(opened.layer),
            Vec::new(),
            None,
            InodeTable::in_memory(),
            union::Options {
                redirect_follow: false,
                redirect_create: false,
                read_only: g.read_only,
                xattr_ns: XattrNs::User,
                kernel_whiteouts: false,
                xattr_permissions: false,
                plain: true,
                id_base: tree.next_id_base(),
                check_permissions: tree.union().opts.check_permissions,
                show: tree.union().opts.show.clone(),
            },
        )
        .map_err(|e| anyhow!("{}: {}", g.given, errstr(e)))?;
        fs.events.set_graft(union::events::GraftOrigin {
            target: g.target.clone(),
            file: opened.file.clone(),
            source: opened.what.clone(),
        });
        tree.graft(parent, &name, Arc::new(fs), opened.file)
            .map_err(|e| anyhow!("{}: {}", g.given, errstr(e)))?;
        log::info!(
            "graft {}: {}{}",
            g.target.display(),
            opened.what,
            if g.read_only { " (read-only)" } else { "" }
        );
    }
    Ok(())
}

fn is_file_source(g: &Graft) -> bool {
    match &g.source {
        Source::Bind(p) => fs::metadata(p).map(|m| !m.is_dir()).unwrap_or(false),
        _ => false,
    }
}

/// Can graft `g` stand on an existing entry `st`?
fn fits(g: &Graft, st: &libc::stat, file_source: bool) -> Result<()> {
    match (is_dir(st), file_source) {
        (true, true) => bail!(
            "{}: cannot mount a file onto the directory {}",
            g.given,
            g.target.display()
        ),
        (false, false) => bail!(
            "{}: cannot mount a directory onto {}, which is not a directory",
            g.given,
            g.target.display()
        ),
        _ => Ok(()),
    }
}

fn open_bind(g: &Graft, src: &Path) -> Result<Opened> {
    let src = src
        .canonicalize()
        .with_context(|| format!("{}: bind source {}", g.given, src.display()))?;
    let open = |p: &Path| Layer::open(p).with_context(|| format!("{}: {}", g.given, p.display()));
    if src.is_dir() {
        return Ok(Opened {
            layer: open(&src)?,
            file: None,
            what: format!("bind {}", src.display()),
        });
    }
    let dir = src.parent().unwrap_or(Path::new("/"));
    Ok(Opened {
        layer: open(dir)?,
        file: Some(src.file_name().unwrap_or_default().to_os_string()),
        what: format!("bind {} (file)", src.display()),
    })
}

fn open_volume(
    s: &Store,
    image: &Tree,
    g: &Graft,
    name: Option<&str>,
    mountpoint: &Path,
    held: &mut Attached,
) -> Result<Opened> {
    let (mut v, new) = s
        .create(name, Default::default())
        .with_context(|| g.given.clone())?;
    if new {
        held.created.push(v.name.clone());
        if name.is_none() {
            s.mark_anonymous(&mut v)?;
        }
    }
    let data = s.data(&v.name);
    fs::create_dir_all(&data).with_context(|| format!("volume {}", data.display()))?;
    let empty = fs::read_dir(&data)
        .with_context(|| format!("volume {}", data.display()))?
        .next()
        .is_none();
    let mut what = format!("volume {}", v.name);
    // Docker's copy-on-first-mount: only a volume nobody uses yet, and only while it is empty.
    if !g.nocopy && empty && s.users(&v.name)?.is_empty() {
        if let Some(src) = image_dir(image, &g.target) {
            let n = fill::fill(image.union(), src, &data).with_context(|| g.given.clone())?;
            log::info!(
                "volume {}: filled from the image's {} ({n} entries)",
                v.name,
                g.target.display()
            );
            what.push_str(&format!(", filled with {n} entries from the image"));
        }
    }
    s.add_user(&v.name, mountpoint)?;
    held.volumes.push(v.name.clone());
    Ok(Opened {
        layer: Layer::open(&data).with_context(|| format!("volume {}", data.display()))?,
        file: None,
        what,
    })
}

/// The image's directory at `target`, if it has one.
fn image_dir(image: &Tree, target: &Path) -> Option<u64> {
    let (p, name) = image.resolve(target, None).ok()?;
    let (id, st) = image.lookup(p, &name).ok()?;
    is_dir(&st).then_some(id)
}

/// The (parent, name) a graft stands at, made if missing: directories on the way, and the
/// mountpoint itself, an empty directory (or file, for a single-file graft). What is made is
/// added to `made`.
fn mountpoint_of(
    tree: &Tree,
    g: &Graft,
    file: bool,
    made: &mut Vec<(u64, OsString, bool)>,
) -> Result<(u64, OsString)> {
    let who = caller();
    let ctx = |e: i32| anyhow!("{}: target {}: {}", g.given, g.target.display(), errstr(e));
    // The directories on the way that are missing (resolve makes them): from the first one
    // that does not exist down to the target's parent.
    let ancestors: Vec<&Path> = {
        let mut a: Vec<&Path> = g.target.ancestors().skip(1).collect();
        a.retain(|p| p.file_name().is_some());
        a.reverse();
        a
    };
    let exists = |p: &Path| match tree.resolve(p, None) {
        Ok((parent, name)) => tree.lookup(parent, &name).is_ok(),
        Err(_) => false,
    };
    let missing: Vec<&Path> = match ancestors.iter().position(|p| !exists(p)) {
        Some(i) => ancestors[i..].to_vec(),
        None => Vec::new(),
    };
    let r = tree.resolve(&g.target, Some(who));
    for p in missing {
        match tree.resolve(p, None) {
            Ok((dp, dn)) if tree.lookup(dp, &dn).is_ok() => made.push((dp, dn, true)),
            _ => break,
        }
    }
    let (parent, name) = r.map_err(ctx)?;
    match tree.lookup(parent, &name) {
        Ok((_, st)) => fits(g, &st, file)?,
        Err(libc::ENOENT) => {
            let (what, mode) = if file {
                (
                    NewEntry::File {
                        flags: libc::O_WRONLY,
                    },
                    0o644,
                )
            } else {
                (NewEntry::Dir, 0o755)
            };
            let (_, fs, local) = tree.route(parent);
            fs.make_entry(local, &name, what, mode, 0, who)
                .map_err(ctx)?;
            made.push((parent, name.clone(), !file));
        }
        Err(e) => return Err(ctx(e)),
    }
    Ok((parent, name))
}
