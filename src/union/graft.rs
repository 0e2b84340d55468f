//! The served tree: the union, with grafts (bind mounts, volumes, tmpfs) joined into it.
//!
//! A graft is served by a union of its own: upper-only and `plain`, whose one layer is the
//! graft's source, so creating, removing, renaming and attribute changes under it are the
//! union's code, minus whiteouts and copy-up. The tree joins the parts at their mountpoints,
//! which are keyed by (parent node id, name): like a kernel mount, a graft follows its parent
//! directory through renames, and hides whatever the parent holds under that name.
//!
//! Node ids stay unique across parts because each graft encodes st_ino with a layer range of its
//! own (`Options::id_base`); only a graft's root, id 1 inside its union as every union's root,
//! goes by its st_ino-derived id outside.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path};
use std::sync::Arc;

use super::dir::{Caller, NewEntry};
use super::{Union, ROOT_ID};
use crate::sys::Res;

/// Layer indexes from here up belong to grafts: graft n (1..) encodes its ids with
/// `GRAFT_ID_BASE + n - 1`. Lower layers stay below it.
pub const GRAFT_ID_BASE: usize = 0x8000;

pub struct Part {
    pub fs: Arc<Union>,
    /// The node id the kernel knows this part's root by.
    root: u64,
    /// For a single-file graft: the file's name in its union's root (the source's parent
    /// directory, never shown); the file is what stands at the mountpoint.
    file: Option<OsString>,
}

pub struct Tree {
    parts: Vec<Part>,
    /// (parent node id, name) → part shown there.
    mounts: HashMap<(u64, OsString), usize>,
    /// Parents of mountpoints, so lookups elsewhere skip the map.
    parents: HashSet<u64>,
}

/// Symlinks followed while resolving one graft target, as the kernel's limit.
const MAX_LINKS: usize = 40;

impl Tree {
    pub fn new(union: Arc<Union>) -> Tree {
        Tree {
            parts: vec![Part {
                fs: union,
                root: ROOT_ID,
                file: None,
            }],
            mounts: HashMap::new(),
            parents: HashSet::new(),
        }
    }

    /// The union of the image layers (part 0).
    /// The generation the kernel is told for node `id` (see `Union::remember_new`).
    pub fn generation(&self, id: u64) -> u64 {
        let (_, fs, local) = self.route(id);
        if local == ROOT_ID {
            return 0;
        }
        fs.generation(local)
    }

    pub fn union(&self) -> &Arc<Union> {
        &self.parts[0].fs
    }

    /// A remount made the mount read-only, or read-write again: the image's union follows it,
    /// and every graft too, a read-only graft staying read-only.
    pub fn set_read_only(&self, ro: bool) {
        for u in self.unions() {
            u.set_read_only(ro || u.opts.read_only && !Arc::ptr_eq(u, self.union()));
        }
    }

    /// The mount's atime options, at mount and after a remount: every union follows them.
    pub fn set_atime(&self, a: super::atime::Atime) {
        for u in self.unions() {
            u.set_atime(a);
        }
    }

    /// Every union of the tree: the image's, then each graft's.
    pub fn unions(&self) -> impl Iterator<Item = &Arc<Union>> {
        self.parts.iter().map(|p| &p.fs)
    }

    /// The `id_base` for the union of the next graft.
    pub fn next_id_base(&self) -> usize {
        GRAFT_ID_BASE + self.parts.len() - 1
    }

    /// Which part serves node `id`, that part's union, and the id inside it.
    pub fn route(&self, id: u64) -> (usize, &Arc<Union>, u64) {
        let layer = (id >> crate::inode::INO_BITS) as usize;
        if id != ROOT_ID && layer > GRAFT_ID_BASE {
            let p = layer - GRAFT_ID_BASE;
            if let Some(part) = self.parts.get(p) {
                let local = if id == part.root { ROOT_ID } else { id };
                return (p, &part.fs, local);
            }
        }
        (0, &self.parts[0].fs, id)
    }

    /// Is node `id` served from a graft (whose source may change behind the mount)?
    pub fn volatile(&self, id: u64) -> bool {
        self.route(id).0 != 0
    }

    fn mount_at(&self, parent: u64, name: &OsStr) -> Option<usize> {
        if self.parents.is_empty() || !self.parents.contains(&parent) {
            return None;
        }
        self.mounts.get(&(parent, name.to_os_string())).copied()
    }

    /// Look `name` up in directory `parent`; a mountpoint gives the graft's root.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<(u64, libc::stat)> {
        if let Some(p) = self.mount_at(parent, name) {
            let part = &self.parts[p];
            return match &part.file {
                None => part.fs.getattr(ROOT_ID).map(|st| (part.root, st)),
                Some(f) => part.fs.lookup(ROOT_ID, f),
            };
        }
        let (_, fs, local) = self.route(parent);
        fs.lookup(local, name)
    }

    pub fn unlink(&self, parent: u64, name: &OsStr, rmdir: bool) -> Res<()> {
        if self.mount_at(parent, name).is_some() {
            return Err(libc::EBUSY);
        }
        let (_, fs, local) = self.route(parent);
        fs.unlink(local, name, rmdir)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Res<()> {
        if self.mount_at(parent, name).is_some() || self.mount_at(newparent, newname).is_some() {
            return Err(libc::EBUSY);
        }
        let (p, fs, from) = self.route(parent);
        let (np, _, to) = self.route(newparent);
        if p != np {
            return Err(libc::EXDEV);
        }
        fs.rename(from, name, to, newname, flags)
    }

    pub fn link(
        &self,
        id: u64,
        newparent: u64,
        newname: &OsStr,
        who: Caller,
    ) -> Res<(u64, libc::stat)> {
        let (p, fs, local) = self.route(id);
        let (np, _, to) = self.route(newparent);
        if p != np {
            return Err(libc::EXDEV);
        }
        fs.link(local, to, newname, who)
    }

    /// Join `fs` in at `name` in directory `parent`: its root, or for a single-file graft its
    /// entry `file`.
    pub fn graft(
        &mut self,
        parent: u64,
        name: &OsStr,
        fs: Arc<Union>,
        file: Option<OsString>,
    ) -> Res<()> {
        let root = fs.getattr(ROOT_ID)?.st_ino;
        let p = self.parts.len();
        self.parts.push(Part { fs, root, file });
        self.mounts.insert((parent, name.to_os_string()), p);
        self.parents.insert(parent);
        Ok(())
    }

    /// Walk `path` (absolute, inside the tree) the way a container runtime resolves a mount
    /// target: symlinks are followed but never out of the tree (`..` stops at the root, absolute
    /// targets start from it). With `create`, missing directories on the way are made.
    /// Returns the parent directory's id and the last name, resolved through symlinks itself
    /// unless it does not exist.
    pub fn resolve(&self, path: &Path, create: Option<Caller>) -> Res<(u64, OsString)> {
        let mut todo: Vec<OsString> = comps(path);
        todo.reverse();
        // The directories walked so far, with the names they were reached by.
        let mut stack: Vec<(u64, OsString)> = vec![(ROOT_ID, OsString::new())];
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let dir = stack.last().unwrap().0;
            let last = todo.is_empty();
            let (id, st) = match self.lookup(dir, &name) {
                Err(libc::ENOENT) if last => return Ok((dir, name)),
                Err(libc::ENOENT) => match create {
                    Some(who) => {
                        let (_, fs, local) = self.route(dir);
                        fs.make_entry(local, &name, NewEntry::Dir, 0o755, 0, who)?;
                        self.lookup(dir, &name)?
                    }
                    None => return Err(libc::ENOENT),
                },
                r => r?,
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFLNK => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(libc::ELOOP);
                    }
                    let (_, fs, local) = self.route(id);
                    let target = fs.readlink(local)?;
                    if Path::new(&target).is_absolute() {
                        stack.truncate(1);
                    }
                    todo.extend(comps(Path::new(&target)).into_iter().rev());
                }
                libc::S_IFDIR => stack.push((id, name)),
                _ if last => return Ok((dir, name)),
                _ => return Err(libc::ENOTDIR),
            }
        }
        // The path ends at a directory.
        let (_, name) = stack.pop().unwrap();
        match stack.last() {
            Some((parent, _)) => Ok((*parent, name)),
            None => Err(libc::EBUSY), // the root itself
        }
    }
}

fn comps(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}
