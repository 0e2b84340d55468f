//! Serving a checked mount: open the layers and the inode table, mount the kernel side, join
//! the grafts in, and answer requests until the mount goes away.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::kernel::{mount_direct, mount_fusermount, unmount_flags, unmount_path};
use super::options::MountOptions;
use super::unmount::pid_file;
use super::{control, utab, Layout};
use crate::fuse::StrataFs;
use crate::inode::InodeTable;
use crate::union::graft::Tree;
use crate::union::layer::{Layer, XattrNs};
use crate::union::{self, Union};

/// Clear what an earlier run left in `workdir/work` (a copy that never got renamed in, a
/// discarded directory) and make the directories strata keeps there.
fn prepare_workdir(work: &Path) -> Result<(OwnedFd, fs::File)> {
    let w = work.join("work");
    match fs::create_dir(&w) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("workdir {}", w.display())),
    }
    let own = work.join("strata");
    fs::create_dir_all(&own).with_context(|| format!("workdir {}", own.display()))?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(own.join("lock"))?;
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "workdir {} is in use by another strata mount",
            work.display()
        );
    }
    let fd = crate::sys::openat2(libc::AT_FDCWD, &w, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(std::io::Error::from_raw_os_error)?;
    for (name, dtype, _) in crate::sys::read_dir(fd.as_raw_fd()).unwrap_or_default() {
        let r = if dtype == libc::DT_DIR {
            union::dir::remove_tree(fd.as_raw_fd(), &name)
        } else {
            crate::sys::unlinkat(fd.as_raw_fd(), &name, false)
        };
        if let Err(e) = r {
            log::warn!("workdir: cannot remove leftover {:?}: errno {e}", name);
        }
    }
    Ok((fd, lock))
}

/// Can this process make kernel-format whiteouts and trusted.* xattrs in `work`?
fn probe_privileges(work: i32) -> (bool, bool) {
    let name = OsStr::new("#strata-probe");
    let dev = crate::sys::mknodat(work, name, libc::S_IFCHR, 0).is_ok();
    if dev {
        let _ = crate::sys::unlinkat(work, name, false);
    }
    // On the work directory itself, as kernel overlayfs probes its workdir: no directory to
    // make and remove.
    let probe = OsStr::new("trusted.overlay.strata.probe");
    let trusted = crate::sys::xattr_path(work, OsStr::new("")).is_ok_and(|p| {
        let ok = crate::sys::lsetxattr(&p, probe, b"y", 0).is_ok();
        if ok {
            let _ = crate::sys::lremovexattr(&p, probe);
        }
        ok
    });
    (dev, trusted)
}

pub(super) fn serve(layout: &Layout, source: Option<&str>, notify: Option<&OwnedFd>) -> Result<()> {
    // Every thread started from here on (RocksDB's, the FUSE workers) inherits this mask, so
    // SIGINT/SIGTERM reach only the thread that unmounts cleanly.
    block_stop_signals();
    let o = &layout.opts;
    let root = crate::sys::geteuid() == 0;
    let mut lowers = Vec::new();
    for l in &layout.lowers {
        let layer = Layer::open(l).with_context(|| format!("lowerdir {}", l.display()))?;
        lowers.push(layer.unchanging());
    }
    let (upper, work, inodes, _lock, kernel_wh, trusted) = match (&layout.upper, &layout.work) {
        (Some(u), Some(w)) => {
            let (wfd, lock) = prepare_workdir(w)?;
            let (dev, trusted) = probe_privileges(wfd.as_raw_fd());
            let table = InodeTable::open(&w.join("strata").join("inodes"))?;
            let upper =
                Layer::open_upper(u).with_context(|| format!("upperdir {}", u.display()))?;
            (Some(upper), Some(wfd), table, Some(lock), dev, trusted)
        }
        _ => (None, None, InodeTable::in_memory(), None, false, false),
    };
    let xattr_ns = if trusted && !o.userxattr {
        XattrNs::Trusted
    } else {
        XattrNs::User
    };
    let opts = union::Options {
        redirect_follow: o.redirect_follow,
        redirect_create: o.redirect_create,
        read_only: o.read_only || upper.is_none(),
        xattr_ns,
        // Unprivileged mounts write OCI-style `.wh.` whiteouts even where the kernel would let
        // them make 0:0 devices, so the upper reads the same on any filesystem they land on.
        kernel_whiteouts: kernel_wh && root,
        xattr_permissions: !root,
        plain: false,
        id_base: 0,
        check_permissions: !root && !o.default_permissions,
        show: shown(o),
    };
    let read_only = opts.read_only;
    let fs =
        Arc::new(Union::new(upper, lowers, work, inodes, opts).map_err(|e| anyhow!("errno {e}"))?);

    let fsname = o
        .fsname
        .clone()
        .or(source.map(String::from))
        .unwrap_or_else(|| "strata".into());
    let allow_other = o.allow_other.unwrap_or(root);
    let mut config = fuser::Config::default();
    config.acl = if allow_other {
        fuser::SessionACL::All
    } else if o.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    let auto = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    config.n_threads = Some(match (o.threaded, o.max_threads) {
        (Some(false), _) => 1,
        (_, Some(n)) => n,
        _ => auto,
    });
    config.clone_fd = true;
    // The kernel's mount comes before anything is made for the grafts: what it refuses (a
    // mountpoint fusermount3 will not mount on, say) leaves nothing behind. No request is
    // answered until the session runs, so nobody sees the tree before its grafts are in.
    let dev = if root {
        mount_direct(&layout.mountpoint, &fsname, o, read_only, allow_other)?
    } else {
        mount_fusermount(&layout.mountpoint, &fsname, o, read_only)?
    };
    // A failed mount is taken down with its connection closed, so nothing waits on it.
    let take_down = || {
        if let Err(e) = unmount_flags(&layout.mountpoint, libc::MNT_DETACH) {
            log::warn!("{e:#}");
        }
    };
    let mut tree = Tree::new(fs.clone());
    // Grafts are joined in before the mount is served; from here on, what they hold (volumes
    // in use, tmpfs) is released on every way out, and what was made for them goes if the
    // mount fails.
    let mut attached =
        match crate::volume::attach(&mut tree, &layout.grafts, &layout.root, &layout.mountpoint) {
            Ok(a) => a,
            Err(e) => {
                drop(dev);
                take_down();
                return Err(e);
            }
        };
    let tree = Arc::new(tree);
    tree.set_atime(union::atime::Atime::from_options(&o.kernel_flags));
    // FUSE_POSIX_ACL turns the kernel's default_permissions on: unprivileged mounts without
    // it check permissions in the daemon (union::access) and keep doing so.
    let posix_acl = !o.noacl && (root || o.default_permissions);
    let fsys = StrataFs::new(tree.clone(), !o.no_passthrough, posix_acl);
    let notifier = fsys.notifier_slot();
    let session = match fuser::Session::from_fd(fsys, dev, config.acl, config) {
        Ok(s) => {
            let _ = notifier.set(s.notifier());
            s
        }
        Err(e) => {
            attached.undo(&tree);
            take_down();
            return Err(anyhow!(
                "cannot mount on {}: {e}",
                layout.mountpoint.display()
            ));
        }
    };
    let pidfile = pid_file(&layout.mountpoint);
    if let Some(p) = &pidfile {
        let _ = fs::write(p, std::process::id().to_string());
    }
    // `strata trace` finds this mount's control socket through utab (root) or the record
    // beside the pid file.
    let mut control = match &layout.work {
        Some(w) => match control::start(&w.join("strata"), &tree, {
            let (tree, mountpoint) = (tree.clone(), layout.mountpoint.clone());
            Box::new(move |ro, atime| {
                tree.set_read_only(ro);
                tree.set_atime(atime);
                super::record::set_read_only(&mountpoint, ro);
                log::info!(
                    "remounted {}: {}",
                    mountpoint.display(),
                    if ro { "read-only" } else { "read-write" }
                );
            })
        }) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!("no control socket (strata trace will not work): {e:#}");
                None
            }
        },
        None => None,
    };
    let control_record = control
        .as_ref()
        .and_then(|c| control::record(&layout.mountpoint, c.path()));
    log::info!(
        "mounted {} (lower: {}; upper: {}; whiteouts: {}; xattrs: {:?})",
        layout.mountpoint.display(),
        layout
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        layout
            .upper
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none, read-only".into()),
        if kernel_wh {
            "char device 0:0"
        } else {
            ".wh. files"
        },
        xattr_ns
    );
    let utab = root.then(|| {
        utab::register(
            &layout.mountpoint,
            &fsname,
            control.as_ref().map(|c| c.path()),
        )
    });
    let record = super::record::write(&super::record::MountRecord {
        mountpoint: layout.mountpoint.clone(),
        pid: std::process::id(),
        lowers: layout.lowers.clone(),
        upper: layout.upper.clone(),
        work: layout.work.clone(),
        read_only,
        redirect_follow: o.redirect_follow,
        kernel_whiteouts: kernel_wh && root,
        xattr_ns: match xattr_ns {
            XattrNs::Trusted => "trusted".into(),
            XattrNs::User => "user".into(),
        },
        grafts: attached
            .served
            .iter()
            .map(|g| super::record::GraftRecord {
                target: g.target.clone(),
                kind: g.kind.into(),
                source: g.source.clone(),
                file: g.file.as_ref().map(|f| f.to_string_lossy().into_owned()),
                volume: g.volume.clone(),
                read_only: g.read_only,
            })
            .collect(),
    });
    if let Some(n) = notify {
        let mut f = fs::File::from(n.try_clone()?);
        f.write_all(b"ok\n")?;
    }
    // A socket nobody would answer goes, so clients are refused instead of left waiting.
    if let Some(Err(e)) = control.as_mut().map(|c| c.serve()) {
        log::warn!("control socket not served (strata trace will not work): {e:#}");
        control = None;
    }
    spawn_signal_unmounter(layout.mountpoint.clone());
    let r = session.run();
    // Let go of the layers and the workdir at once: whoever unmounted us may be about to
    // unmount the filesystem they live on. The inode table's log is synced, and RocksDB
    // recovers from its log, so the process ends here without an orderly teardown.
    fs.flush_table();
    attached.release();
    if let Some(p) = &pidfile {
        let _ = fs::remove_file(p);
    }
    if let Some(p) = &record {
        super::record::remove(p);
    }
    if let Some(Some(line)) = &utab {
        utab::unregister(line);
    }
    if let Some(r) = &control_record {
        let _ = fs::remove_file(r);
    }
    drop(control);
    match r {
        Ok(()) => unsafe { libc::_exit(0) },
        Err(e) => Err(anyhow!("serving {}: {e}", layout.mountpoint.display())),
    }
}

fn stop_signals() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn block_stop_signals() {
    let set = stop_signals();
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// SIGINT/SIGTERM unmount, so the session ends and the inode table is flushed.
fn spawn_signal_unmounter(mountpoint: PathBuf) {
    std::thread::spawn(move || unsafe {
        let set = stop_signals();
        let mut sig = 0;
        if libc::sigwait(&set, &mut sig) == 0 {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            let _ = unmount_path(&mountpoint);
        }
    });
}

/// What fuse-overlayfs's owner and presentation options ask the union to show.
fn shown(o: &MountOptions) -> union::Shown {
    use union::idmap::{IdMap, Owners};
    let squash_root = o.squash_to_root.then_some(0);
    union::Shown {
        owners: Owners {
            uid: IdMap {
                ranges: o.uidmapping.clone(),
                squash: o.squash_to_uid.or(squash_root),
            },
            gid: IdMap {
                ranges: o.gidmapping.clone(),
                squash: o.squash_to_gid.or(squash_root),
            },
        },
        static_nlink: o.static_nlink,
        noacl: o.noacl,
        no_fsync: o.no_fsync,
    }
}
