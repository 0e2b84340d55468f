//! Overlay semantics, independent of FUSE.
//!
//! The merged tree is made of nodes. A node is one file as the user sees it; it knows its names
//! (parent node + name; several for hard links), whether it exists in the upper layer, and which
//! lower-layer entries stand beneath it (for a directory, every lower directory merged into it).
//! Node ids are the st_ino strata reports (see inode::encode), so the same file always gets the
//! same id, before and after copy-up and across remounts. Only the root differs: FUSE fixes its
//! id at 1.
//!
//! Concurrency: operations that change the namespace (create, remove, rename, putting a copy-up
//! in place) hold `ns` for writing; lookups, readdir and whatever reads a node by its path
//! (getattr, readlink, xattrs) hold it for reading, so a rename never comes between building a
//! path and using it. A file's data is copied up under a lock of that node only; data I/O on
//! open files takes no lock.

pub mod access;
pub mod acl;
pub mod atime;
pub mod copy_up;
pub mod dir;
pub mod events;
pub mod file;
pub mod fileattr;
pub mod graft;
pub mod idmap;
pub mod layer;
pub mod link;
pub mod lowerindex;
pub mod readdir;
pub mod recover;
pub mod xattr;

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use dashmap::{DashMap, DashSet};

use crate::inode::{encode, InodeTable};
use crate::sys::{self, Res};
use layer::{is_opaque, probe, redirect_of, refused_redirect, Layer, Probe, Redirect, XattrNs};
use lowerindex::{DirIndex, Lower, LowerDirs};

/// Where a walk down the lower layers goes next.
enum Step {
    Next,
    Stop,
    Redirect(PathBuf),
}

pub const ROOT_ID: u64 = 1;

/// An entry of a lower layer: the layer (1 = top-most lower) and the path inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    pub layer: usize,
    pub path: PathBuf,
}

impl Loc {
    fn parent_and_name(&self) -> (&Path, &OsStr) {
        (
            self.path.parent().unwrap_or(Path::new("")),
            self.path.file_name().unwrap_or(OsStr::new("")),
        )
    }
}

#[derive(Clone, Debug)]
pub struct NodeState {
    /// (parent id, name) of each known name; the first is the one operations use.
    pub names: Vec<(u64, OsString)>,
    /// S_IFMT bits.
    pub kind: u32,
    /// The entry exists in the upper layer at the node's path.
    pub upper: bool,
    /// Lower entries beneath, top-most first (directories: all merged dirs; others: at most one).
    pub lowers: Vec<Loc>,
}

impl NodeState {
    pub fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

pub struct Node {
    pub id: u64,
    /// Raised each time `id` is given to a new file while the kernel may still hold the
    /// old one (an upper inode number reused after a delete): the kernel then drops its old
    /// inode instead of taking the new file for it.
    pub generation: u64,
    pub lookups: AtomicU64,
    pub st: RwLock<NodeState>,
    /// Held while this node's data is copied up (see copy_up_for_write).
    pub copying: Mutex<()>,
}

impl Node {
    fn new(id: u64, lookups: u64, st: NodeState) -> Arc<Node> {
        Self::with_generation(id, 0, lookups, st)
    }

    fn with_generation(id: u64, generation: u64, lookups: u64, st: NodeState) -> Arc<Node> {
        Arc::new(Node {
            id,
            generation,
            lookups: AtomicU64::new(lookups),
            st: RwLock::new(st),
            copying: Mutex::new(()),
        })
    }
}

impl Node {
    pub fn state(&self) -> NodeState {
        self.st.read().unwrap().clone()
    }
}

pub struct Options {
    /// redirect_dir: follow the redirects found in the layers (on, follow, off) ...
    pub redirect_follow: bool,
    /// ... and write them when a lower or merged directory is renamed (on).
    pub redirect_create: bool,
    pub read_only: bool,
    /// Where overlay metadata xattrs go in the upper layer.
    pub xattr_ns: XattrNs,
    /// Whiteouts as char devices 0:0 (needs CAP_MKNOD) rather than `.wh.NAME` files.
    pub kernel_whiteouts: bool,
    /// Owners, modes and special file types the upper's filesystem refuses are kept in an xattr.
    pub xattr_permissions: bool,
    /// A plain directory tree (a graft's source), not an overlay layer: no whiteouts, no
    /// overlay xattrs, every name and attribute shown as it is.
    pub plain: bool,
    /// Added to layer indexes in node ids, so that several unions served in one tree (the
    /// union and its grafts, see graft) never hand out the same id.
    pub id_base: usize,
    /// The kernel does not check permissions (no default_permissions): strata does, for
    /// access(2) and open (see access).
    pub check_permissions: bool,
    /// How entries are shown: fuse-overlayfs's owner mapping and presentation options.
    pub show: Shown,
}

/// fuse-overlayfs's options that change what users see, not what is stored.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    /// uidmapping=, gidmapping= and the squash options (see idmap).
    pub owners: idmap::Owners,
    /// static_nlink: directories report st_nlink 1.
    pub static_nlink: bool,
    /// noacl: POSIX ACL xattrs are refused.
    pub noacl: bool,
    /// fsync=0: fsync and fsyncdir return at once.
    pub no_fsync: bool,
}

impl Shown {
    /// What is shown of a stat taken from a layer: owners through the mapping (unless the
    /// layer's mount `mapped` them already), and the link count of directories.
    pub fn apply(&self, st: &mut libc::stat, mapped: bool) {
        if !mapped {
            self.owners.show_stat(st);
        }
        if self.static_nlink && st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            st.st_nlink = 1;
        }
    }
}

/// What a directory holds under one name, across all layers.
pub struct Found {
    pub upper: Option<libc::stat>,
    pub lowers: Vec<(Loc, libc::stat)>,
}

impl Found {
    pub fn top(&self) -> &libc::stat {
        self.upper.as_ref().unwrap_or_else(|| &self.lowers[0].1)
    }
    pub fn kind(&self) -> u32 {
        self.top().st_mode & libc::S_IFMT
    }
    pub fn lower_locs(&self) -> Vec<Loc> {
        self.lowers.iter().map(|(l, _)| l.clone()).collect()
    }
    /// The node state of this entry, known as `name` in `parent`.
    pub fn state(&self, parent: u64, name: &OsStr) -> NodeState {
        NodeState {
            names: vec![(parent, name.to_os_string())],
            kind: self.kind(),
            upper: self.upper.is_some(),
            lowers: self.lower_locs(),
        }
    }
}

pub struct Union {
    pub upper: Option<Layer>,
    pub lowers: Vec<Layer>,
    /// `workdir/work`: where copies and new entries are built before being renamed into place.
    pub work: Option<OwnedFd>,
    pub inodes: InodeTable,
    pub opts: Options,
    nodes: DashMap<u64, Arc<Node>>,
    ns: RwLock<()>,
    tmp_seq: AtomicU64,
    pub(crate) files: DashMap<u64, Arc<file::Handle>>,
    /// Directory listings being read, by node (see `listing`).
    pub(crate) listings: DashMap<u64, Arc<Vec<readdir::Entry>>>,
    /// Directories removed while the kernel still holds them, by node: their last attributes
    /// with no links, what fstat of an open one reads (see `keep_removed_dir`).
    removed_dirs: DashMap<u64, libc::stat>,
    /// The key of listing offsets: the same for every listing of this mount.
    listing_key: std::hash::RandomState,
    lower_dirs: LowerDirs,
    fh_seq: AtomicU64,
    /// `workdir/strata/index`: copied-up hard links by node id (see link).
    index: OnceLock<OwnedFd>,
    /// Whether the index has held anything in this mount (see link::indexed).
    index_used: OnceLock<std::sync::atomic::AtomicBool>,
    /// Directories copied up whose entry in their parent no fsyncdir has made durable yet.
    unsynced_dirs: DashSet<u64>,
    /// Where `strata trace` gets what this union does (see events).
    pub events: events::Events,
    /// Read-only now: `opts.read_only`, until a remount changes it (see `set_read_only`).
    read_only: AtomicBool,
    /// The mount's noatime and nodiratime (see atime).
    atime: atime::AtimeState,
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Union {
    pub fn new(
        upper: Option<Layer>,
        lowers: Vec<Layer>,
        work: Option<OwnedFd>,
        inodes: InodeTable,
        opts: Options,
    ) -> Res<Union> {
        let opts_read_only = opts.read_only;
        let lowers_len = lowers.len();
        let u = Union {
            upper,
            lowers,
            work,
            inodes,
            opts,
            nodes: DashMap::new(),
            ns: RwLock::new(()),
            tmp_seq: AtomicU64::new(0),
            files: DashMap::new(),
            listings: DashMap::new(),
            removed_dirs: DashMap::new(),
            listing_key: std::hash::RandomState::new(),
            lower_dirs: LowerDirs::new(),
            fh_seq: AtomicU64::new(1),
            index: OnceLock::new(),
            index_used: OnceLock::new(),
            unsynced_dirs: DashSet::new(),
            events: events::Events::default(),
            read_only: AtomicBool::new(opts_read_only),
            atime: atime::AtimeState::new(1 + lowers_len),
        };
        let lowers: Vec<Loc> = (1..=u.lowers.len())
            .map(|layer| Loc {
                layer,
                path: PathBuf::new(),
            })
            .collect();
        let root = NodeState {
            names: Vec::new(),
            kind: libc::S_IFDIR,
            upper: u.upper.is_some(),
            lowers,
        };
        u.nodes.insert(ROOT_ID, Node::new(ROOT_ID, 1, root));
        if u.inodes.unclean() && u.upper.is_some() {
            let t = std::time::Instant::now();
            match u.recover_inodes() {
                Ok(n) => log::info!(
                    "inode table: not shut down cleanly; {n} record(s) restored from the upper in {:.1?}",
                    t.elapsed()
                ),
                Err(e) => {
                    log::error!("inode table: recovery from the upper failed: errno {e}");
                    return Err(e);
                }
            }
        }
        Ok(u)
    }

    /// The layer with index `i`: 0 is the upper, 1.. the lowers top-most first.
    pub fn layer(&self, i: usize) -> &Layer {
        if i == 0 {
            self.upper.as_ref().expect("upper layer")
        } else {
            &self.lowers[i - 1]
        }
    }

    /// A remount turned the mount read-only or read-write: writes are refused, or taken.
    pub fn set_read_only(&self, ro: bool) {
        self.read_only.store(ro, Ordering::Relaxed);
    }

    pub fn writable(&self) -> Res<&Layer> {
        match &self.upper {
            Some(u) if !self.read_only.load(Ordering::Relaxed) => Ok(u),
            _ => Err(libc::EROFS),
        }
    }

    pub(crate) fn next_fh(&self) -> u64 {
        self.fh_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn tmp_name(&self) -> OsString {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#strata-{}-{n}", std::process::id()))
    }

    pub(crate) fn work_fd(&self) -> Res<i32> {
        self.work.as_ref().map(|f| f.as_raw_fd()).ok_or(libc::EROFS)
    }

    pub fn node(&self, id: u64) -> Res<Arc<Node>> {
        self.nodes.get(&id).map(|n| n.clone()).ok_or_else(|| {
            log::warn!("no node {id}: the kernel asked for one strata has forgotten");
            libc::ESTALE
        })
    }

    /// The merged path of a node (also its path in the upper layer).
    pub fn path_of(&self, id: u64) -> Res<PathBuf> {
        let mut names = Vec::new();
        let mut cur = id;
        while cur != ROOT_ID {
            let (p, name) = self.reachable_name(&*self.node(cur)?)?;
            names.push(name);
            cur = p;
            if names.len() > 4096 {
                return Err(libc::ELOOP);
            }
        }
        Ok(names.iter().rev().collect())
    }

    /// A node's state and merged path; its names are those `path_of` left (each in a
    /// directory strata holds), so that callers taking the first name can resolve it.
    pub fn resolve(&self, id: u64) -> Res<(NodeState, PathBuf)> {
        let path = self.path_of(id)?;
        let st = self.node(id)?.state();
        Ok((st, path))
    }

    /// The name node `n` is reached by: its first in a directory strata still holds. The
    /// kernel forgets a directory once nothing in it is cached, even while it holds a file of
    /// it open through a hard link elsewhere, and strata drops the directory's node then: the
    /// file's names in that directory cannot be resolved any more and are dropped here (a
    /// lookup of one of them adds it again).
    fn reachable_name(&self, n: &Node) -> Res<(u64, OsString)> {
        let held = |p: &u64| *p == ROOT_ID || self.nodes.contains_key(p);
        {
            let st = n.st.read().unwrap();
            match st.names.first() {
                None => return Err(libc::ENOENT),
                Some((p, name)) if held(p) => return Ok((*p, name.clone())),
                Some(_) => {}
            }
        }
        let mut st = n.st.write().unwrap();
        st.names.retain(|(p, _)| held(p));
        st.names.first().cloned().ok_or_else(|| {
            log::warn!(
                "node {}: none of its names is in a directory strata holds",
                n.id
            );
            libc::ESTALE
        })
    }

    pub(crate) fn read_ns(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.ns.read().unwrap()
    }

    pub(crate) fn write_ns(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.ns.write().unwrap()
    }

    // ---- lookup ----

    /// What directory `pst` (at merged path `ppath`) holds under `name`, in every layer, with
    /// the attributes of the entry shown.
    pub fn find(&self, pst: &NodeState, ppath: &Path, name: &OsStr) -> Res<Option<Found>> {
        self.find_with(pst, ppath, name, true)
    }

    /// As `find`, but a lower entry's stat holds only its type and inode number (from the
    /// directory index, no syscall): enough to decide an unlink, rename or create.
    pub(crate) fn find_shallow(
        &self,
        pst: &NodeState,
        ppath: &Path,
        name: &OsStr,
    ) -> Res<Option<Found>> {
        self.find_with(pst, ppath, name, false)
    }

    fn find_with(
        &self,
        pst: &NodeState,
        ppath: &Path,
        name: &OsStr,
        attrs: bool,
    ) -> Res<Option<Found>> {
        if !pst.is_dir() {
            return Err(libc::ENOTDIR);
        }
        let mut upper = None;
        let mut stop = false;
        let mut redirect = None;
        if pst.upper {
            let u = self.layer(0);
            let fd = u.dir(ppath)?;
            match self.probe(fd.as_raw_fd(), name)? {
                Probe::Whiteout => return Ok(None),
                Probe::Entry(st) => {
                    if self.opts.plain {
                        stop = true;
                    } else if is_dir(&st) {
                        if is_opaque(fd.as_raw_fd(), name, !self.opts.kernel_whiteouts)? {
                            stop = true;
                        } else {
                            redirect = redirect_of(fd.as_raw_fd(), name)?;
                            if !self.opts.redirect_follow {
                                let below = match &redirect {
                                    Some(Redirect::Abs(_)) => !self.lowers.is_empty(),
                                    Some(Redirect::Name(_)) => !pst.lowers.is_empty(),
                                    None => false,
                                };
                                if below {
                                    return Err(refused_redirect(&ppath.join(name)));
                                }
                                redirect = None;
                            }
                        }
                    } else {
                        stop = true;
                    }
                    upper = Some(st);
                }
                Probe::Absent => {}
            }
        }
        let lowers = if stop {
            Vec::new()
        } else {
            self.lower_chain(pst, name, upper.is_some(), redirect, 1, attrs)?
        };
        if upper.is_none() && lowers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Found { upper, lowers }))
    }

    /// The lower entries under `name` in the lower directories of `pst`. With `need_dir`, only
    /// directories count (something above is a directory and only directories merge). The
    /// lower layers are read through their directory index (see lowerindex).
    pub fn lower_chain(
        &self,
        pst: &NodeState,
        name: &OsStr,
        mut need_dir: bool,
        redirect: Option<Redirect>,
        from_layer: usize,
        attrs: bool,
    ) -> Res<Vec<(Loc, libc::stat)>> {
        if let Some(Redirect::Abs(p)) = redirect {
            return self.lower_chain_abs(&p, from_layer, need_dir, attrs);
        }
        let target: OsString = match redirect {
            Some(Redirect::Name(n)) => n,
            _ => name.to_os_string(),
        };
        // Only the top-most entry's attributes are ever shown, and only when nothing is above it.
        let full_first = attrs && !need_dir;
        let mut out = Vec::new();
        for pl in pst.lowers.iter().filter(|l| l.layer >= from_layer) {
            let Some(dir) = self.lower_dir(pl.layer, &pl.path)? else {
                continue;
            };
            let loc = Loc {
                layer: pl.layer,
                path: pl.path.join(&target),
            };
            match self.lower_step(&dir, &target, loc, &mut need_dir, full_first, &mut out)? {
                Step::Next => {}
                Step::Stop => break,
                Step::Redirect(abs) => {
                    out.extend(self.lower_chain_abs(&abs, pl.layer + 1, true, false)?);
                    break;
                }
            }
        }
        Ok(out)
    }

    fn lower_chain_abs(
        &self,
        path: &Path,
        from_layer: usize,
        mut need_dir: bool,
        attrs: bool,
    ) -> Res<Vec<(Loc, libc::stat)>> {
        let mut out = Vec::new();
        let parent = path.parent().unwrap_or(Path::new(""));
        let Some(name) = path.file_name() else {
            return Ok(out);
        };
        let full_first = attrs && !need_dir;
        for layer in from_layer..=self.lowers.len() {
            let Some(dir) = self.lower_dir(layer, parent)? else {
                continue;
            };
            let loc = Loc {
                layer,
                path: path.to_path_buf(),
            };
            match self.lower_step(&dir, name, loc, &mut need_dir, full_first, &mut out)? {
                Step::Next => {}
                Step::Stop => break,
                Step::Redirect(abs) => {
                    out.extend(self.lower_chain_abs(&abs, layer + 1, true, false)?);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One lower layer's say on `name` in `dir`: add what it has to `out` and tell whether to
    /// look further down, stop, or continue at a redirected path.
    fn lower_step(
        &self,
        dir: &DirIndex,
        name: &OsStr,
        loc: Loc,
        need_dir: &mut bool,
        full_first: bool,
        out: &mut Vec<(Loc, libc::stat)>,
    ) -> Res<Step> {
        let (dtype, ino) = match dir.get(name) {
            Lower::Whiteout => return Ok(Step::Stop),
            Lower::Absent => return Ok(Step::Next),
            Lower::Entry(dtype, ino) => (dtype, ino),
        };
        let full = full_first && out.is_empty();
        if dtype != libc::DT_DIR {
            // A non-directory ends the search; below a directory it is hidden.
            if !*need_dir && out.is_empty() {
                let st = self.lower_stat(&loc, dtype, ino, full)?;
                out.push((loc, st));
            }
            return Ok(Step::Stop);
        }
        *need_dir = true;
        let st = self.lower_stat(&loc, dtype, ino, full)?;
        let child = self.lower_dir(loc.layer, &loc.path)?;
        let parent = loc.path.parent().unwrap_or(Path::new("")).to_path_buf();
        out.push((loc, st));
        if let Some(c) = child {
            if c.opaque {
                return Ok(Step::Stop);
            }
            // A layer that was itself an overlay upper: continue where its redirect points.
            match &c.redirect {
                Err(e) => return Err(*e),
                Ok(Some(_)) if !self.opts.redirect_follow => {
                    let (l, _) = &out[out.len() - 1];
                    if l.layer < self.lowers.len() {
                        return Err(refused_redirect(&l.path));
                    }
                }
                Ok(Some(Redirect::Abs(p))) => return Ok(Step::Redirect(p.clone())),
                Ok(Some(Redirect::Name(n))) => return Ok(Step::Redirect(parent.join(n))),
                Ok(None) => {}
            }
        }
        Ok(Step::Next)
    }

    /// Is anything in a lower layer under `name` that a whiteout would have to hide?
    pub fn lower_exists(&self, pst: &NodeState, name: &OsStr) -> Res<bool> {
        Ok(!self
            .lower_chain(pst, name, false, None, 1, false)?
            .is_empty())
    }

    /// The st_ino (and node id) of what `found` describes.
    pub fn ino_of(&self, found: &Found) -> u64 {
        if let Some(u) = &found.upper {
            if let Some(ino) = self.inodes.get(u.st_ino) {
                return ino;
            }
            if is_dir(u) {
                if let Some((l, st)) = found.lowers.first() {
                    return self.encode(l.layer, st.st_ino);
                }
            }
            return self.encode(0, u.st_ino);
        }
        let (l, st) = &found.lowers[0];
        self.encode(l.layer, st.st_ino)
    }

    /// The st_ino (and node id) of inode `ino` of layer `layer`.
    pub(crate) fn encode(&self, layer: usize, ino: u64) -> u64 {
        encode(layer + self.opts.id_base, ino)
    }

    /// What the upper layer says about `name` in `dirfd` (a plain tree has no whiteouts).
    pub(crate) fn probe(&self, dirfd: i32, name: &OsStr) -> Res<Probe> {
        if self.opts.plain {
            return Ok(sys::stat_opt(dirfd, name)?.map_or(Probe::Absent, Probe::Entry));
        }
        probe(dirfd, name, !self.opts.kernel_whiteouts)
    }

    /// Is `name` overlay bookkeeping (a `.wh.` name) that users can neither see nor make?
    /// Only where the upper is in the OCI format: with kernel-format whiteouts, `.wh.` names are
    /// plain names, as under kernel overlayfs.
    pub(crate) fn is_marker_name(&self, name: &OsStr) -> bool {
        !self.opts.plain && !self.opts.kernel_whiteouts && layer::is_whiteout_name(name)
    }

    /// Is xattr `name` overlay bookkeeping, hidden from users?
    pub(crate) fn is_private_xattr(&self, name: &OsStr) -> bool {
        !self.opts.plain && layer::is_private_xattr(name)
    }

    /// Make (or refresh) the node for `found`, known as `name` in `parent`.
    pub fn remember(&self, parent: u64, name: &OsStr, found: &Found) -> Arc<Node> {
        self.remember_counted(parent, name, found, 0)
    }

    /// `remember`, counting `lookups` more lookups of the node for the kernel. The count is
    /// raised while the node's map entry is held, as `forget` lowers it and removes a node
    /// at zero: a lookup racing a FORGET of the same node (a new file that reuses a deleted
    /// one's inode number, say) either keeps the node or makes a new one, and never answers
    /// with a node that is gone from the map (which the next request finds ESTALE).
    pub(crate) fn remember_counted(
        &self,
        parent: u64,
        name: &OsStr,
        found: &Found,
        lookups: u64,
    ) -> Arc<Node> {
        let id = self.ino_of(found);
        let state = found.state(parent, name);
        let node = {
            let e = self
                .nodes
                .entry(id)
                .or_insert_with(|| Node::new(id, 0, state.clone()));
            e.lookups.fetch_add(lookups, Ordering::Relaxed);
            e.clone()
        };
        {
            let mut st = node.st.write().unwrap();
            let key = (parent, name.to_os_string());
            if st.kind != state.kind {
                *st = state;
            } else {
                st.upper = state.upper;
                st.lowers = state.lowers;
                st.names.retain(|n| n != &key);
                st.names.insert(0, key);
            }
        }
        node
    }

    /// The node for a file just made (create, mkdir, mknod, symlink), counted as one lookup.
    /// An upper filesystem hands a deleted file's inode number to the next new file, and the
    /// kernel may not have forgotten the old node yet: the id is then taken over by a node of
    /// the next generation, which keeps the old one's outstanding lookups (the kernel's
    /// FORGETs for the old inode carry no generation and count against the id).
    pub(crate) fn remember_new(&self, parent: u64, name: &OsStr, found: &Found) -> Arc<Node> {
        let id = self.ino_of(found);
        let state = found.state(parent, name);
        let node = match self.nodes.entry(id) {
            dashmap::mapref::entry::Entry::Occupied(mut e) => {
                let old = e.get();
                let n = Node::with_generation(
                    id,
                    old.generation + 1,
                    old.lookups.load(Ordering::Relaxed) + 1,
                    state,
                );
                e.insert(n.clone());
                n
            }
            dashmap::mapref::entry::Entry::Vacant(e) => {
                let n = Node::new(id, 1, state);
                e.insert(n.clone());
                n
            }
        };
        self.listings.remove(&id);
        node
    }

    /// The generation of node `id` (0 for one strata does not hold).
    pub fn generation(&self, id: u64) -> u64 {
        self.nodes.get(&id).map_or(0, |n| n.generation)
    }

    /// Drop a name from a node after unlink/rename-over.
    pub(crate) fn forget_name(&self, id: u64, parent: u64, name: &OsStr) {
        if let Ok(n) = self.node(id) {
            let mut st = n.st.write().unwrap();
            st.names.retain(|(p, nm)| !(*p == parent && nm == name));
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<(u64, libc::stat)> {
        if self.is_marker_name(name) {
            // Whiteout markers are bookkeeping: not listed, and not reachable by name either.
            return Err(libc::ENOENT);
        }
        let mut linked_up = false;
        loop {
            let g = self.read_ns();
            let (pst, ppath) = self.resolve(parent)?;
            let found = self.find(&pst, &ppath, name)?.ok_or(libc::ENOENT)?;
            if !linked_up && self.needs_link_up(&found) {
                // Another name of this hard link was copied up: this one must show that copy.
                drop(g);
                self.link_up(parent, name)?;
                linked_up = true;
                continue;
            }
            let node = self.remember_counted(parent, name, &found, 1);
            let mut st = *found.top();
            let layer = match found.upper {
                Some(_) => 0,
                None => found.lowers[0].0.layer,
            };
            self.fix_stat(node.id, &mut st, layer, &ppath.join(name));
            return Ok((node.id, st));
        }
    }

    pub fn forget(&self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        // Lowered and removed under the node's map entry (see `remember_counted`).
        let gone = match self.nodes.entry(id) {
            dashmap::mapref::entry::Entry::Occupied(e) => {
                let left = e.get().lookups.load(Ordering::Relaxed).saturating_sub(n);
                e.get().lookups.store(left, Ordering::Relaxed);
                if left == 0 {
                    e.remove();
                }
                left == 0
            }
            dashmap::mapref::entry::Entry::Vacant(_) => false,
        };
        if gone {
            self.listings.remove(&id);
            self.removed_dirs.remove(&id);
        }
    }

    /// Directory `id`, found as `found` at `path`, is about to be removed (rmdir, or a rename
    /// over it): if the kernel holds it (an open descriptor, a working directory), keep what
    /// fstat of it must read until the kernel forgets it, as on a disk filesystem: its last
    /// attributes, with no links.
    pub(crate) fn keep_removed_dir(&self, id: u64, found: &Found, path: &Path) {
        if !self.nodes.contains_key(&id) {
            return;
        }
        let mut st = *found.top();
        let layer = match (&found.upper, found.lowers.first()) {
            (None, Some((l, _))) => l.layer,
            _ => 0,
        };
        self.fix_stat(id, &mut st, layer, path);
        st.st_nlink = 0;
        self.removed_dirs.insert(id, st);
    }

    /// Put strata's identity on a stat taken from a layer.
    pub(crate) fn fix_stat(&self, id: u64, st: &mut libc::stat, layer: usize, path: &Path) {
        let in_upper = layer == 0;
        if in_upper {
            st.st_nlink = self.shown_nlink(st);
        }
        st.st_ino = if id == ROOT_ID { self.root_ino() } else { id };
        // Unprivileged, owners and special files the filesystem refused are in the override
        // xattr, in the upper and in lowers alike (a rootless `image import` records them so).
        if self.opts.xattr_permissions {
            if let Ok(fd) = self
                .layer(layer)
                .dir(path.parent().unwrap_or(Path::new("")))
            {
                let name = path.file_name().unwrap_or(OsStr::new(""));
                xattr::apply_override(fd.as_raw_fd(), name, st);
            }
        }
        self.opts.show.apply(st, self.mapped_by_mount(layer));
    }

    /// Are layer `layer`'s owners shown as they are, because an idmapped mount maps them?
    pub(crate) fn mapped_by_mount(&self, layer: usize) -> bool {
        layer > 0 && self.layer(layer).idmapped
    }

    fn root_ino(&self) -> u64 {
        // The root directory of the top-most layer gives the root's number.
        let (layer, fd) = match &self.upper {
            Some(u) => (0, u.root.as_raw_fd()),
            None => (1, self.lowers[0].root.as_raw_fd()),
        };
        sys::fstatat(fd, OsStr::new(""))
            .map(|st| self.encode(layer, st.st_ino))
            .unwrap_or(ROOT_ID)
    }

    /// Where the visible instance of a node is: (layer, parent dir path, name).
    pub fn top_of(&self, st: &NodeState, path: &Path) -> (usize, PathBuf, OsString) {
        if st.upper || st.lowers.is_empty() {
            (
                0,
                path.parent().unwrap_or(Path::new("")).to_path_buf(),
                path.file_name().unwrap_or(OsStr::new("")).to_os_string(),
            )
        } else {
            let (p, n) = st.lowers[0].parent_and_name();
            (st.lowers[0].layer, p.to_path_buf(), n.to_os_string())
        }
    }

    pub fn getattr(&self, id: u64) -> Res<libc::stat> {
        let _g = self.read_ns();
        let (st, path) = match self.resolve(id) {
            Ok(r) => r,
            // Its last name is gone, but it may still be open: stat it through an open handle,
            // or as it was removed (a directory holds no handle).
            Err(libc::ENOENT) => {
                return self
                    .open_file_stat(id)
                    .or_else(|e| self.removed_dirs.get(&id).map(|s| *s).ok_or(e))
            }
            Err(e) => return Err(e),
        };
        let (layer, parent, name) = self.top_of(&st, &path);
        let fd = self.layer(layer).dir_shared(&parent)?;
        let mut s = sys::fstatat(fd.as_raw_fd(), &name)?;
        self.fix_stat(id, &mut s, layer, &path);
        Ok(s)
    }

    pub fn statfs(&self) -> Res<libc::statvfs> {
        let fd = match &self.upper {
            Some(u) => u.root.as_raw_fd(),
            None => self.lowers[0].root.as_raw_fd(),
        };
        // O_PATH fds do not take fstatvfs; open the root for real.
        let real = sys::openat2(fd, Path::new(""), libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)?;
        sys::fstatvfs(real.as_raw_fd())
    }

    pub fn readlink(&self, id: u64) -> Res<OsString> {
        let _g = self.read_ns();
        let (st, path) = self.resolve(id)?;
        let (layer, parent, name) = self.top_of(&st, &path);
        let fd = self.layer(layer).dir_shared(&parent)?;
        sys::readlinkat(fd.as_raw_fd(), &name)
    }

    pub fn flush_table(&self) {
        self.inodes.flush();
    }
}
