//! A mount's lifecycle: check everything first, then mount and serve, and unmount.
//!
//! Nothing is created or mounted until every check has passed. In the background form the
//! process forks before any thread exists; the parent returns only when the child reports the
//! mount live (or prints the child's error), so scripts can use the mount right after.
//! `strata mount`, `image mount` and containers all mount through here.

mod control;
mod kernel;
pub mod options;
pub mod record;
mod remount;
mod serve;
pub mod trace;
mod unmount;
mod utab;

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::state::Root;
use crate::volume::spec::Graft;
use options::MountOptions;
pub use unmount::{umount, umount_helper};

pub struct MountRequest {
    pub options: Vec<String>,
    pub source: Option<String>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub log: Option<PathBuf>,
    /// Binds, volumes and tmpfs to join into the tree, outer ones first.
    pub grafts: Vec<Graft>,
    /// The state root given on the command line (volumes live there).
    pub root: Option<PathBuf>,
}

/// Canonical, checked paths of a mount.
pub(crate) struct Layout {
    opts: MountOptions,
    lowers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    mountpoint: PathBuf,
    grafts: Vec<Graft>,
    root: Root,
}

fn canonical_dir(what: &str, p: &Path) -> Result<PathBuf> {
    let md = fs::metadata(p).map_err(|e| anyhow!("{what} {}: {}", p.display(), io_msg(&e)))?;
    if !md.is_dir() {
        bail!("{what} {}: not a directory", p.display());
    }
    p.canonicalize()
        .map_err(|e| anyhow!("{what} {}: {}", p.display(), io_msg(&e)))
}

pub(crate) fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such directory".into(),
        _ => e.to_string(),
    }
}

fn inside(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// One line of /proc/self/mountinfo, octal escapes undone.
pub(crate) struct MountEntry {
    pub point: PathBuf,
    pub kind: String,
    pub source: String,
    /// The per-mount options (field 6) and the superblock's (after the filesystem's source).
    pub mount_opts: Vec<String>,
    pub super_opts: Vec<String>,
}

/// The mount table, oldest mount first.
pub(crate) fn mount_table() -> Vec<MountEntry> {
    let text = crate::sys::read_proc("/proc/self/mountinfo").unwrap_or_default();
    let opts = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(MountEntry {
                point: PathBuf::from(unescape_mount(f.get(4)?)),
                kind: f.get(dash + 1)?.to_string(),
                source: unescape_mount(f.get(dash + 2)?),
                mount_opts: opts(f.get(5)?),
                super_opts: opts(f.get(dash + 3)?),
            })
        })
        .collect()
}

/// Mount points and their filesystem types, from the mount table.
pub fn mount_points() -> Vec<(PathBuf, String)> {
    mount_table()
        .into_iter()
        .map(|e| (e.point, e.kind))
        .collect()
}

/// The mount `p` (absolute, its directories resolved) is on, as df finds it: the longest
/// mountpoint above it, the later of two on one path (it covers the earlier). Its mountpoint and
/// filesystem type.
pub fn mount_containing(p: &Path) -> Option<(PathBuf, String)> {
    let mut best: Option<(PathBuf, String)> = None;
    for (mp, kind) in mount_points() {
        if p.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|(b, _)| mp.components().count() >= b.components().count())
        {
            best = Some((mp, kind));
        }
    }
    best
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b[i + 1..].len() >= 3 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check(req: &MountRequest) -> Result<Layout> {
    let opts = options::parse(&req.options)?;
    let mut lowers = Vec::new();
    for l in &opts.lowerdir {
        lowers.push(canonical_dir("lowerdir", l)?);
    }
    let upper = opts
        .upperdir
        .as_deref()
        .map(|p| canonical_dir("upperdir", p))
        .transpose()?;
    let work = opts
        .workdir
        .as_deref()
        .map(|p| canonical_dir("workdir", p))
        .transpose()?;
    if let (Some(u), Some(w)) = (&upper, &work) {
        for l in &lowers {
            if inside(u, l) {
                bail!(
                    "upperdir {} is inside lowerdir {}",
                    u.display(),
                    l.display()
                );
            }
            if inside(l, u) {
                bail!(
                    "lowerdir {} is inside upperdir {}",
                    l.display(),
                    u.display()
                );
            }
        }
        if inside(w, u) || inside(u, w) {
            bail!(
                "workdir {} and upperdir {} must not contain each other",
                w.display(),
                u.display()
            );
        }
        let (ud, wd) = (fs::metadata(u)?.dev(), fs::metadata(w)?.dev());
        if ud != wd {
            bail!(
                "workdir {} is on another filesystem than upperdir {}: they must share one",
                w.display(),
                u.display()
            );
        }
    }
    let mp = req.mountpoint.as_path();
    let mountpoint = canonical_dir("mountpoint", mp)?;
    let mounted = crate::sys::is_mount_root(&mountpoint)
        .unwrap_or_else(|| mount_points().iter().any(|(p, _)| *p == mountpoint));
    if mounted {
        bail!(
            "mountpoint {} is already a mount point",
            mountpoint.display()
        );
    }
    crate::volume::check(&req.grafts, &mountpoint)?;
    Ok(Layout {
        opts,
        lowers,
        upper,
        work,
        mountpoint,
        grafts: req.grafts.clone(),
        root: Root::locate(req.root.clone()),
    })
}

pub fn mount(req: MountRequest) -> Result<()> {
    if options::is_remount(&req.options) {
        return remount::remount(&req);
    }
    let layout = check(&req)?;
    if req.foreground {
        init_log(req.log.as_deref(), true)?;
        return serve::serve(&layout, req.source.as_deref(), None);
    }
    // Background: fork now, while this process has no threads.
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(rd);
            crate::fds::close_inherited();
            unsafe { libc::setsid() };
            let code = match daemon_child(&layout, &req, &wr) {
                Ok(()) => 0,
                Err(e) => {
                    let mut f = fs::File::from(wr);
                    let _ = writeln!(f, "{e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
        _ => {
            drop(wr);
            // One line: "ok", or the error. The daemon keeps its end open while it serves.
            let mut msg = Vec::new();
            let mut f = fs::File::from(rd);
            let mut b = [0u8; 1];
            while let Ok(1) = f.read(&mut b) {
                if b[0] == b'\n' {
                    break;
                }
                msg.push(b[0]);
            }
            let msg = String::from_utf8_lossy(&msg);
            let msg = msg.trim();
            if msg == "ok" {
                Ok(())
            } else if msg.is_empty() {
                bail!("the daemon exited before the mount was live")
            } else {
                bail!("{msg}")
            }
        }
    }
}

fn daemon_child(layout: &Layout, req: &MountRequest, notify: &OwnedFd) -> Result<()> {
    // stdio leaves the terminal (or the caller's pipes) so the caller is not held open.
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
    }
    match &req.log {
        Some(p) => {
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("log file {}", p.display()))?;
            unsafe { libc::dup2(f.as_raw_fd(), 2) };
        }
        None => unsafe {
            libc::dup2(null.as_raw_fd(), 2);
        },
    }
    init_log(None, req.log.is_some())?;
    serve::serve(layout, req.source.as_deref(), Some(notify))
}

fn init_log(file: Option<&Path>, enabled: bool) -> Result<()> {
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("strata=warn"));
    if let Some(p) = file {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("log file {}", p.display()))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    if !enabled {
        b.filter_level(log::LevelFilter::Off);
    }
    let _ = b.try_init();
    Ok(())
}
