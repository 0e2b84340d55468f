//! The container's filesystem around its root: mounts made private, the root bound onto itself
//! (pivot_root needs a mount point), /proc, /sys read-only, a tmpfs /dev holding only the nodes
//! Docker gives (bound from the host's), and, once inside, Docker's masked and read-only paths.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::syscall::{under, Syscall};
use super::{step, Failure, Spec};

/// Device nodes bound from the host's /dev (Docker's default devices less /dev/console, which
/// is the caller's terminal when it has one).
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in /dev: (link, target).
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
    ("ptmx", "pts/ptmx"),
];

/// Docker's masked paths: a file gets /dev/null bound over it, a directory an empty read-only
/// tmpfs. Missing ones are skipped.
pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Docker's read-only paths: bound onto themselves and remounted read-only.
pub const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount(
    sys: &dyn Syscall,
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Failure> {
    step(
        sys.mount(source.map(Path::new), target, fstype, flags, data),
        || {
            format!(
                "mount {} on {}",
                fstype.or(source).unwrap_or("-"),
                target.display()
            )
        },
    )
}

fn mkdir(sys: &dyn Syscall, p: &Path) -> Result<(), Failure> {
    step(sys.mkdir_all(p, 0o755), || format!("mkdir {}", p.display()))
}

/// Private mounts, the root as a mount point of its own, /proc and /sys.
pub fn prepare(sys: &dyn Syscall, spec: &Spec) -> Result<(), Failure> {
    let root = &spec.rootfs;
    // Nothing mounted in here propagates back to the host, nor the host's later mounts in.
    mount(
        sys,
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let r = root
        .to_str()
        .ok_or_else(|| Failure::setup("rootfs path is not UTF-8"))?;
    mount(
        sys,
        Some(r),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let proc_ = under(root, "proc");
    mkdir(sys, &proc_)?;
    mount(
        sys,
        Some("proc"),
        &proc_,
        Some("proc"),
        NOSUID_NODEV_NOEXEC,
        None,
    )?;
    let sys_ = under(root, "sys");
    mkdir(sys, &sys_)?;
    if spec.userns.is_some() && spec.network == super::Network::Host {
        return host_sys(sys, &sys_);
    }
    // A sysfs of its own (it shows the network namespace it is mounted in: the host's with
    // --network host), read-only, with none of the host's mounts below /sys.
    mount(
        sys,
        Some("sysfs"),
        &sys_,
        Some("sysfs"),
        NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY,
        None,
    )?;
    Ok(())
}

/// A user namespace may mount a sysfs only for a network namespace it owns: with the
/// host's network a rootless container gets the host's /sys bound in instead (as podman
/// does), read-only, its mount flags kept (the kernel locks them for a user namespace).
fn host_sys(sys: &dyn Syscall, target: &Path) -> Result<(), Failure> {
    mount(
        sys,
        Some("/sys"),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let kept = step(sys.mount_flags(target), || {
        format!("statvfs {}", target.display())
    })?;
    mount(
        sys,
        None,
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept,
        None,
    )
}

/// A tmpfs /dev with the host's device nodes bound in, a private devpts, shm, mqueue, the
/// console and the fd links.
pub fn dev(sys: &dyn Syscall, spec: &Spec) -> Result<(), Failure> {
    let dev = under(&spec.rootfs, "dev");
    mkdir(sys, &dev)?;
    mount(
        sys,
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for name in DEVICES {
        let host = PathBuf::from("/dev").join(name);
        bind_file(sys, &host, &dev.join(name))?;
    }
    let pts = dev.join("pts");
    mkdir(sys, &pts)?;
    mount(
        sys,
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(devpts_options(spec)),
    )?;
    let shm = dev.join("shm");
    mkdir(sys, &shm)?;
    mount(
        sys,
        Some("shm"),
        &shm,
        Some("tmpfs"),
        NOSUID_NODEV_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mq = dev.join("mqueue");
    mkdir(sys, &mq)?;
    mount(
        sys,
        Some("mqueue"),
        &mq,
        Some("mqueue"),
        NOSUID_NODEV_NOEXEC,
        None,
    )?;
    if spec.tty {
        let slave = step(sys.open_console(&pts), || {
            "make the container's terminal".into()
        })?;
        bind_file(sys, &slave, &dev.join("console"))?;
    } else if let Some(tty) = &spec.console {
        bind_file(sys, tty, &dev.join("console"))?;
    }
    for (link, target) in DEV_LINKS {
        let l = dev.join(link);
        step(sys.symlink(Path::new(target), &l), || {
            format!("symlink {}", l.display())
        })?;
    }
    Ok(())
}

/// `--read-only`: each writable graft bound onto itself (a mount of its own, which keeps
/// its write access), then the root's own mount remounted read-only (its flags kept). The
/// mounts made on it before (/proc, /dev, /sys) are mounts of their own and stay as they are.
pub fn read_only(sys: &dyn Syscall, spec: &Spec) -> Result<(), Failure> {
    if !spec.read_only {
        return Ok(());
    }
    for w in &spec.writable {
        let p = under(&spec.rootfs, w);
        let s = p
            .to_str()
            .ok_or_else(|| Failure::setup("volume path is not UTF-8"))?;
        mount(
            sys,
            Some(s),
            &p,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
    }
    let kept = step(sys.mount_flags(&spec.rootfs), || {
        format!("statvfs {}", spec.rootfs.display())
    })?;
    mount(
        sys,
        None,
        &spec.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept,
        None,
    )
}

/// Docker's devpts options; the tty group (5) only where the namespace maps it (a rootless
/// container without subordinate ids maps only root).
pub fn devpts_options(spec: &Spec) -> &'static str {
    match &spec.userns {
        Some(ns) if !ns.maps_gid(5) => "newinstance,ptmxmode=0666,mode=0620",
        _ => "newinstance,ptmxmode=0666,mode=0620,gid=5",
    }
}

fn bind_file(sys: &dyn Syscall, src: &Path, dst: &Path) -> Result<(), Failure> {
    step(sys.touch(dst), || format!("create {}", dst.display()))?;
    let s = src
        .to_str()
        .ok_or_else(|| Failure::setup("device path is not UTF-8"))?;
    mount(sys, Some(s), dst, None, MsFlags::MS_BIND, None)
}

fn remount_ro(sys: &dyn Syscall, p: &Path) -> Result<(), Failure> {
    mount(
        sys,
        None,
        p,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | NOSUID_NODEV_NOEXEC,
        None,
    )
}

/// Inside the new root: hide the masked paths, make the read-only ones read-only.
pub fn mask(sys: &dyn Syscall) -> Result<(), Failure> {
    for p in MASKED {
        let path = Path::new(p);
        // A file takes /dev/null; a directory refuses that bind (ENOTDIR) and takes an empty
        // read-only tmpfs instead; what this kernel does not have is skipped.
        match sys.mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        ) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => mount(
                sys,
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Err(e) => return Err(Failure::setup(format!("mask {p}: {}", e.desc()))),
        }
    }
    for p in READONLY {
        let path = Path::new(p);
        match sys.mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => remount_ro(sys, path)?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Failure::setup(format!("read-only {p}: {}", e.desc()))),
        }
    }
    Ok(())
}
