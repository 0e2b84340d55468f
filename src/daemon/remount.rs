//! `remount` of a live strata mount, as `mount -o remount,ro MNT` asks for it: mount(8) hands
//! it to mount.fuse3, which runs `strata SOURCE MNT -o ro,relatime,remount,user_id=0,...`
//! with the options the mount table shows passed back. The read-only flag is the superblock's
//! (mount(2) MS_REMOUNT, which the kernel's FUSE lets change) and the daemon's, which refuses
//! writes while read-only; nosuid, nodev, noexec and the atime flags are the kernel mount's.
//! Whatever else would change how the mount behaves is refused.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::options::{split_escaped, split_options};
use super::record::{self, MountRecord};
use super::{control, mount_table, MountEntry, MountRequest};
use crate::union::atime::{Atime, Mode};

/// The newest mount on `mp`, as the mount table shows it.
fn table_entry(mp: &Path) -> Option<MountEntry> {
    mount_table().into_iter().rev().find(|e| e.point == mp)
}

/// The kernel mount flags that remount may set, by option name: (flag, set or clear).
fn per_mount_flag(o: &str) -> Option<(libc::c_ulong, bool)> {
    Some(match o {
        "nosuid" => (libc::MS_NOSUID, true),
        "suid" => (libc::MS_NOSUID, false),
        "nodev" => (libc::MS_NODEV, true),
        "dev" => (libc::MS_NODEV, false),
        "noexec" => (libc::MS_NOEXEC, true),
        "exec" => (libc::MS_NOEXEC, false),
        "nodiratime" => (libc::MS_NODIRATIME, true),
        "diratime" => (libc::MS_NODIRATIME, false),
        "sync" => (libc::MS_SYNCHRONOUS, true),
        "async" => (libc::MS_SYNCHRONOUS, false),
        _ => return None,
    })
}

/// The atime flag an option asks for (the kernel keeps the mount's when none is given).
fn atime_flag(o: &str) -> Option<libc::c_ulong> {
    Some(match o {
        "noatime" => libc::MS_NOATIME,
        "relatime" => libc::MS_RELATIME,
        "strictatime" | "atime" | "norelatime" => libc::MS_STRICTATIME,
        _ => return None,
    })
}

/// What the remount asks for.
struct Wanted {
    read_only: bool,
    flags: libc::c_ulong,
}

fn same_paths(key: &str, val: &str, have: &[PathBuf]) -> Result<()> {
    let asked: Vec<PathBuf> = split_escaped(val, if key == "lowerdir" { ':' } else { '\0' })
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(p)))
        .collect();
    if asked != have {
        let have: Vec<String> = have.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "remount cannot change {key} (the mount has {key}={}): unmount it and mount it again",
            if have.is_empty() {
                "nothing".to_string()
            } else {
                have.join(":")
            }
        );
    }
    Ok(())
}

/// Check the options of a remount of `rec`'s mount (`t` from the mount table) and say what
/// they ask for; anything it cannot do is refused with a line naming it.
fn wanted(opts: &[String], rec: &MountRecord, t: &MountEntry) -> Result<Wanted> {
    let has = |list: &[String], o: &str| list.iter().any(|x| x == o);
    let mut read_only = has(&t.super_opts, "ro");
    let mut flags: libc::c_ulong = 0;
    // Start from the mount as it is: a remount that names no flag keeps it.
    for o in t.mount_opts.iter().chain(&t.super_opts) {
        if let Some((f, true)) = per_mount_flag(o) {
            flags |= f;
        }
    }
    for o in opts.iter().flat_map(|g| split_options(g)) {
        let (key, val) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        if let Some((f, set)) = per_mount_flag(key).filter(|_| val.is_none()) {
            if set {
                flags |= f;
            } else {
                flags &= !f;
            }
            continue;
        }
        if let Some(f) = atime_flag(key).filter(|_| val.is_none()) {
            flags &= !(libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME);
            flags |= f;
            continue;
        }
        match (key, val) {
            ("remount", None) => {}
            ("ro", None) => read_only = true,
            ("rw", None) => read_only = false,
            ("lowerdir", Some(v)) => same_paths(key, v, &rec.lowers)?,
            ("upperdir", Some(v)) => same_paths(key, v, rec.upper.as_slice())?,
            ("workdir", Some(v)) => same_paths(key, v, rec.work.as_slice())?,
            // What the kernel shows of the FUSE connection, and libmount of strata's utab
            // line, passed back as they are: they must be what the mount has.
            ("user_id" | "group_id", Some(_)) | ("default_permissions" | "allow_other", None) => {
                if !has(&t.super_opts, &o) {
                    bail!("remount cannot change {o}: unmount it and mount it again");
                }
            }
            ("fsname", Some(v)) => {
                if v != t.source {
                    bail!("remount cannot change fsname (the mount's is {})", t.source);
                }
            }
            ("helper", Some("strata")) | ("subtype", Some("strata")) => {}
            // libmount's userspace options (x-strata.control in utab): nothing for the kernel.
            (k, _) if k.starts_with("x-") => {}
            ("dirsync", None) => {
                if !has(&t.super_opts, "dirsync") {
                    bail!("remount cannot change dirsync: unmount it and mount it again");
                }
            }
            _ => {
                // A strata option is one of a mount's layers or behaviours: it stays as mounted.
                match super::options::parse(&[format!("lowerdir=/,{o}")]) {
                    Ok(_) => bail!(
                        "remount cannot change option '{o}' of a live mount: unmount it and mount it again"
                    ),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(Wanted { read_only, flags })
}

/// Tell the daemon serving `rec` to refuse writes or to take them again.
fn tell_daemon(rec: &MountRecord, read_only: bool, atime: Atime) -> Result<()> {
    let Some(work) = &rec.work else {
        // No upper: the daemon has never written and never will.
        return Ok(());
    };
    let own = work.join("strata");
    let sock = own.join(control::SOCKET);
    let (_dir, short) = control::short_path(&own, &sock)?;
    let what = format!(
        "{} {}",
        if read_only { "ro" } else { "rw" },
        atime.options()
    );
    let ask = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(&short)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        writeln!(s, "remount {what}")?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line)?;
        Ok(line.trim().to_string())
    };
    match ask() {
        Ok(l) if l == "ok" => Ok(()),
        Ok(l) => bail!(
            "the daemon of {} refused remount,{what}: {l}",
            rec.mountpoint.display()
        ),
        Err(e) => bail!(
            "cannot reach the daemon of {} ({}): {e}",
            rec.mountpoint.display(),
            sock.display()
        ),
    }
}

fn mount_remount(mp: &Path, flags: libc::c_ulong) -> nix::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        mp,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::from_bits_retain(flags),
        None::<&str>,
    )
}

pub fn remount(req: &MountRequest) -> Result<()> {
    let mp = std::fs::canonicalize(&req.mountpoint)
        .map_err(|e| anyhow!("remount {}: {}", req.mountpoint.display(), e))?;
    let t = match table_entry(&mp) {
        Some(t) if t.kind == "fuse.strata" => t,
        Some(t) => bail!(
            "remount: {} is not a strata mount (it is a {} mount)",
            mp.display(),
            t.kind
        ),
        None => bail!(
            "remount: {} is not a strata mount (nothing is mounted there)",
            mp.display()
        ),
    };
    if crate::sys::geteuid() != 0 {
        bail!(
            "remount of {} needs root: the kernel lets only root remount, so unmount it and mount it again with the options wanted",
            mp.display()
        );
    }
    let rec = record::read(&mp)?;
    let w = wanted(&req.options, &rec, &t)?;
    if !w.read_only && rec.upper.is_none() {
        bail!(
            "remount,rw of {}: the mount has no upperdir, so it can only be read-only",
            mp.display()
        );
    }
    let flags = w.flags | if w.read_only { libc::MS_RDONLY } else { 0 };
    // What the mount's atime options are afterwards: the kernel keeps its atime flag when the
    // remount names none.
    let atime = Atime {
        mode: match w.flags & (libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME) {
            0 => Atime::from_mountinfo(&t.mount_opts).mode,
            libc::MS_NOATIME => Mode::No,
            libc::MS_STRICTATIME => Mode::Strict,
            _ => Mode::Relatime,
        },
        nodiratime: w.flags & libc::MS_NODIRATIME != 0,
    };
    let kernel =
        |flags| mount_remount(&mp, flags).with_context(|| format!("remount of {}", mp.display()));
    if w.read_only {
        // The kernel first: from then on no write reaches the daemon.
        kernel(flags)?;
        tell_daemon(&rec, true, atime)
    } else {
        tell_daemon(&rec, false, atime)?;
        kernel(flags).inspect_err(|_| {
            let _ = tell_daemon(&rec, rec.read_only, Atime::from_mountinfo(&t.mount_opts));
        })
    }
}
