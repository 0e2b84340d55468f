//! `strata cp`: files between a container and the host, or a tar stream on stdin/stdout, for a
//! running container (through its mounted root) and a stopped or created one (its root mounted
//! for the copy through the same code path as `run`, then taken down). Copying out reads the
//! merged view with the container's volumes and binds at their targets; copying in writes
//! through the union, so copy-ups and whiteouts are made as for any write. Where the copy lands
//! follows Docker's rules ([`rules`]); no path is ever resolved outside the container's root
//! ([`tree`]).

pub mod pack;
pub mod rules;
pub mod tree;
pub mod unpack;

use anyhow::{bail, Result};

use super::mount::{mount_root, RootMount};
use super::records::{Config, Store};
use crate::state::Root;
use tree::{errno_text, is_dir, is_symlink, Tree};
use unpack::{Owner, Unpacker};

/// One side of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Container {
        name: String,
        path: String,
    },
    Host(String),
    /// `-`: a tar stream on stdin or stdout.
    Stdio,
}

pub struct CpRequest {
    pub src: Place,
    pub dst: Place,
    /// `-a`: ownership from the source (out), or the container's user (in), as Docker 20.10.
    pub archive: bool,
    /// `-L`: follow a symlink the source path names.
    pub follow: bool,
}

/// A container's root, open for the copy; mounted for it if the container is not running,
/// and unmounted when dropped (after every fd into it is closed: the callers drop it last).
struct Opened {
    config: Config,
    tree: Tree,
    _mount: Option<Mounted>,
}

struct Mounted(RootMount);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.0.unmount() {
            eprintln!("strata: {e:#}");
        }
    }
}

/// A container's records, and this process moved into its user namespace if it is a
/// rootless one (its monitor's namespaces when it runs, new ones when it does not): from here
/// on, the owners of host files read as that namespace sees them, as they will be written.
fn find(root: &Root, key: &str) -> Result<(Config, bool)> {
    let store = Store::new(root);
    let (config, state) = {
        let lock = store.lock()?;
        let c = store.find(&lock, key)?;
        let s = store.live_state(&lock, &c.id)?;
        (c, s)
    };
    let running = state.status == "running";
    // A rootless container's root is mounted in its monitor's user and mount namespaces,
    // and served to processes there only.
    if let Some(ns) = &config.spec.userns {
        if running {
            crate::launcher::userns::join(state.monitor_pid as i32, true)?;
        } else {
            crate::launcher::userns::enter(ns)?;
        }
    }
    Ok((config, running))
}

/// The container's root, mounted for the copy if it is not running.
fn open(root: &Root, (config, running): (Config, bool)) -> Result<Opened> {
    let dir = Store::new(root).container_dir(&config.id);
    let mount = if running {
        None
    } else {
        let served = super::grafts::grafts(&config.grafts)?;
        Some(Mounted(mount_root(root, &config.lowers, served, &dir)?))
    };
    let tree = Tree::open(&dir.join("merged"))?;
    Ok(Opened {
        config,
        tree,
        _mount: mount,
    })
}

/// A host path made absolute (from the working directory), its trailing `/` or `/.` kept.
fn absolute(p: &str) -> Result<String> {
    if p.starts_with('/') {
        return Ok(p.to_string());
    }
    let cwd = std::env::current_dir()?;
    Ok(format!("{}/{p}", cwd.display()))
}

/// A container path from its root.
fn in_root(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

pub fn cp(root: &Root, req: CpRequest) -> Result<()> {
    match (&req.src, &req.dst) {
        (Place::Container { .. }, Place::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
        (Place::Container { name, path }, dst) => copy_out(root, name, path, dst, &req),
        (src, Place::Container { name, path }) => copy_in(root, src, name, path, &req),
        _ => bail!("must specify at least one container source"),
    }
}

fn copy_out(root: &Root, name: &str, path: &str, dst: &Place, req: &CpRequest) -> Result<()> {
    // The host side before the container's is opened (which may move this process into
    // the container's mount namespace, and its working directory with it).
    let host = match dst {
        Place::Host(h) => Some((Tree::host()?, absolute(h)?)),
        _ => None,
    };
    let c = open(root, find(root, name)?)?;
    let path = in_root(path);
    let found = c.tree.entry(&path, req.follow).map_err(|e| match e {
        libc::ENOENT => anyhow::anyhow!("No such container:path: {name}:{path}"),
        e => anyhow::anyhow!("lstat {path}: {}", errno_text(e)),
    })?;
    let src = rules::src(&path, is_dir(&found.st));
    match dst {
        Place::Stdio => {
            // Docker names a followed link's entry after its target.
            let mut top = if src.contents_only {
                ".".into()
            } else {
                src.name.clone()
            };
            if req.follow {
                if let Ok(l) = c.tree.entry(&path, false) {
                    if is_symlink(&l.st) {
                        let t = crate::sys::readlinkat(
                            std::os::fd::AsRawFd::as_raw_fd(&l.fd),
                            std::ffi::OsStr::new(""),
                        )
                        .unwrap_or_default();
                        top = rules::split(&t.to_string_lossy()).1;
                    }
                }
            }
            let mut sink = pack::TarSink::new(std::io::stdout().lock());
            let r = pack::pack(&found, &top, &mut sink);
            drop((found, c));
            r
        }
        Place::Host(_) => {
            let (host, dpath) = host.expect("opened above");
            let d = find_dst(&host, &dpath)?;
            if !d.exists {
                let (parent, _) = rules::split(&dpath);
                match host.entry(&parent, true) {
                    Ok(p) if is_dir(&p.st) => {}
                    Ok(_) => bail!("invalid output path: \"{parent}\" is not a directory"),
                    Err(_) => bail!("invalid output path: directory \"{parent}\" does not exist"),
                }
            }
            let plan = rules::plan(&src, &d)?;
            let fd = host
                .dir(&plan.dir)
                .map_err(|e| anyhow::anyhow!("open {}: {}", plan.dir, errno_text(e)))?;
            let owner = if req.archive {
                Owner::Keep
            } else {
                Owner::Caller
            };
            let r = pack::pack(&found, &plan.top, &mut Unpacker::new(fd, owner));
            drop((found, c));
            r
        }
        Place::Container { .. } => unreachable!("refused above"),
    }
}

/// The destination as found (a symlink there followed, as Docker does).
fn find_dst(t: &Tree, path: &str) -> Result<rules::Dst> {
    match t.entry(path, true) {
        Ok(f) => Ok(rules::Dst {
            path: path.to_string(),
            exists: true,
            is_dir: is_dir(&f.st),
        }),
        // ENOTDIR: a parent is not a directory, which the parent's check tells.
        Err(libc::ENOENT | libc::ENOTDIR) => Ok(rules::Dst {
            path: path.to_string(),
            exists: false,
            is_dir: false,
        }),
        Err(e) => bail!("lstat {path}: {}", errno_text(e)),
    }
}

fn copy_in(root: &Root, src: &Place, name: &str, path: &str, req: &CpRequest) -> Result<()> {
    // The host side first: a bad source mounts nothing. Its root and path are taken before
    // a rootless container's namespaces are entered (which move the working directory),
    // its owners read after (so they are the namespace's).
    let host = Tree::host()?;
    let spath = match src {
        Place::Host(h) => Some(absolute(h)?),
        _ => None,
    };
    let found = find(root, name)?;
    let source = match spath {
        Some(p) => {
            let f = host
                .entry(&p, req.follow)
                .map_err(|e| anyhow::anyhow!("lstat {p}: {}", errno_text(e)))?;
            Some((p, f))
        }
        None => None,
    };
    let c = open(root, found)?;
    let path = in_root(path);
    let d = find_dst(&c.tree, &path)?;
    let owner = if req.archive {
        user_ids(&c)?.map_or(Owner::Keep, |(u, g)| Owner::Set(u, g))
    } else {
        Owner::Keep
    };
    let Some((spath, found)) = source else {
        if !(d.exists && d.is_dir) {
            bail!("destination \"{name}:{path}\" must be a directory");
        }
        let fd = c
            .tree
            .dir(&path)
            .map_err(|e| anyhow::anyhow!("open {path}: {}", errno_text(e)))?;
        // Bound first: every fd into the root is closed before the root is unmounted.
        let r = unpack::from_tar(std::io::stdin().lock(), &mut Unpacker::new(fd, owner));
        drop(c);
        return r;
    };
    if !d.exists {
        let (parent, _) = rules::split(&path);
        match c.tree.entry(&parent, true) {
            Ok(p) if is_dir(&p.st) => {}
            Ok(_) => bail!("extraction point is not a directory"),
            Err(_) => bail!("No such container:path: {name}:{parent}"),
        }
    }
    let plan = rules::plan(&rules::src(&spath, is_dir(&found.st)), &d)?;
    let fd = c.tree.dir(&plan.dir).map_err(|e| match e {
        libc::ENOTDIR => anyhow::anyhow!("extraction point is not a directory"),
        e => anyhow::anyhow!("open {}: {}", plan.dir, errno_text(e)),
    })?;
    let r = pack::pack(&found, &plan.top, &mut Unpacker::new(fd, owner));
    drop(c);
    r
}

/// The container's configured user as ids, looked up in its own /etc/passwd and /etc/group
/// for names (`cp -a` into it); None when it runs as the image's default.
fn user_ids(c: &Opened) -> Result<Option<(u32, u32)>> {
    let Some(user) = c.config.spec.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = c.tree.read("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == u || f[2] == u));
    let uid = match (u.parse::<u32>(), &entry) {
        (Ok(n), _) => n,
        (_, Some(f)) => f[2].parse().unwrap_or(0),
        _ => bail!("unable to find user {u}: no matching entries in passwd file"),
    };
    let gid = match g {
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => c
                .tree
                .read("/etc/group")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok(Some((uid, gid)))
}
