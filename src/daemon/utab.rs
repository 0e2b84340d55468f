//! libmount's record of userspace mount options (/run/mount/utab). strata adds `helper=strata`
//! to its mounts there, so that util-linux's umount runs /sbin/umount.strata, which waits for
//! the daemon to exit: a FUSE unmount by itself returns while the daemon is still running.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

const DIR: &str = "/run/mount";
const FILE: &str = "/run/mount/utab";

fn mangle(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' => "\\040".to_string(),
            '\t' => "\\011".to_string(),
            '\n' => "\\012".to_string(),
            '\\' => "\\134".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn locked<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    fs::create_dir_all(DIR)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{FILE}.lock"))?;
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    f()
}

pub fn register(mountpoint: &Path, source: &str, control: Option<&Path>) -> Option<String> {
    let mut line = format!(
        "SRC={} TARGET={} ROOT=/ OPTS=helper=strata",
        mangle(source),
        mangle(&mountpoint.to_string_lossy())
    );
    // libmount keeps x-* options for userspace; `strata trace` reads this one.
    if let Some(c) = control {
        line.push_str(&format!(
            ",{CONTROL_OPT}{}",
            mangle_opt(&c.to_string_lossy())
        ));
    }
    let r = locked(|| {
        // Drop lines left by daemons that were killed: a later mount of another kind at
        // the same path must not be handed to umount.strata. The mount table is read only
        // when there are strata lines to check.
        let text = fs::read_to_string(FILE).unwrap_or_default();
        let live: Vec<String> = if text.contains("helper=strata") {
            super::mount_points()
                .into_iter()
                .filter(|(_, kind)| kind == "fuse.strata")
                .map(|(p, _)| format!("TARGET={}", mangle(&p.to_string_lossy())))
                .collect()
        } else {
            Vec::new()
        };
        let mut kept: String = text
            .lines()
            .filter(|l| {
                !l.contains("helper=strata") || l.split(' ').any(|f| live.iter().any(|t| t == f))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        kept.push_str(&line);
        kept.push('\n');
        let tmp = format!("{FILE}.strata.{}", std::process::id());
        fs::write(&tmp, kept)?;
        fs::rename(&tmp, FILE)
    });
    match r {
        Ok(()) => Some(line),
        Err(e) => {
            log::warn!("cannot record the mount in {FILE}: {e}");
            None
        }
    }
}

pub const CONTROL_OPT: &str = "x-strata.control=";

/// An option value also loses its commas (the option separator), as octal escapes.
fn mangle_opt(s: &str) -> String {
    mangle(s).replace(',', "\\054")
}

/// The control socket recorded for the mount at `mountpoint`, if any.
pub fn control_of(mountpoint: &Path) -> Option<std::path::PathBuf> {
    let target = format!("TARGET={}", mangle(&mountpoint.to_string_lossy()));
    let text = fs::read_to_string(FILE).ok()?;
    text.lines()
        .rev()
        .filter(|l| l.split(' ').any(|f| f == target))
        .find_map(|l| {
            let opts = l.split(' ').find_map(|f| f.strip_prefix("OPTS="))?;
            let v = opts.split(',').find_map(|o| o.strip_prefix(CONTROL_OPT))?;
            Some(std::path::PathBuf::from(super::unescape_mount(v)))
        })
}

pub fn unregister(line: &str) {
    let _ = locked(|| {
        let text = fs::read_to_string(FILE).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| *l != line)
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = format!("{FILE}.strata.{}", std::process::id());
        fs::write(&tmp, kept)?;
        fs::rename(&tmp, FILE)
    });
}
