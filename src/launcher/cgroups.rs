//! Resource limits: `--memory`, `--cpus` and `--pids-limit`, in a cgroup per container.
//!
//! cgroup v2 is used when the unified hierarchy at the cgroup root has controllers
//! (`cgroup.controllers` not empty); otherwise cgroup v1, one directory per controller:
//! `ROOT/<memory|cpu|pids>/strata/<id>` (v2: `ROOT/strata/<id>`). An OOM kill is read back
//! from the memory controller's counters (v1 `memory.oom_control`, v2 `memory.events`).
//!
//! No crate: cgroups-rs and libcgroups both cover this, but each brings a large dependency tree
//! (libcgroups: the systemd D-Bus manager, oci-spec; cgroups-rs: its own hierarchy model) for
//! the dozen file writes a container needs here.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub const ROOT: &str = "/sys/fs/cgroup";

/// CFS period used for `--cpus` (Docker's).
const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    /// CPUs (fractional).
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

pub fn detect(root: &Path) -> Version {
    match fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(s) if !s.trim().is_empty() => Version::V2,
        _ => Version::V1,
    }
}

/// One container's cgroup (v1: a directory per controller).
#[derive(Debug)]
pub struct Cgroup {
    pub version: Version,
    pub dirs: Vec<PathBuf>,
}

/// Docker's sizes: a number with an optional b, k, m, g (or kb, mb, gb), any case.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    if n < 0.0 {
        bail!("invalid size: '{s}'");
    }
    Ok((n * mul as f64) as u64)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(dir.join(file), value)
        .with_context(|| format!("cannot write {value} to {}", dir.join(file).display()))
}

impl Cgroup {
    /// Make the cgroup for container `id` under `root` and set its limits.
    pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Cgroup> {
        let cg = match detect(root) {
            Version::V2 => Self::create_v2(root, id, limits),
            Version::V1 => Self::create_v1(root, id, limits),
        };
        cg.context("cannot create the container's cgroup")
    }

    fn create_v1(root: &Path, id: &str, l: &Limits) -> Result<Cgroup> {
        let mut cg = Cgroup {
            version: Version::V1,
            dirs: Vec::new(),
        };
        for (ctrl, wanted) in [
            ("memory", l.memory.is_some()),
            ("cpu", l.cpus.is_some()),
            ("pids", l.pids.is_some()),
        ] {
            let base = root.join(ctrl);
            if !base.is_dir() {
                if wanted {
                    bail!(
                        "the {ctrl} cgroup controller is not mounted at {}",
                        base.display()
                    );
                }
                continue;
            }
            let dir = base.join("strata").join(id);
            fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            cg.dirs.push(dir.clone());
            let r = match ctrl {
                "memory" => l.memory.map_or(Ok(()), |m| {
                    write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                    // No swap beyond the limit (memsw exists only with swap accounting).
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(&dir, "memory.memsw.limit_in_bytes", &m.to_string())?;
                    }
                    Ok(())
                }),
                "cpu" => l.cpus.map_or(Ok(()), |c| {
                    write(&dir, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &quota(c).to_string())
                }),
                _ => l
                    .pids
                    .map_or(Ok(()), |p| write(&dir, "pids.max", &pids_value(p))),
            };
            if let Err(e) = r {
                cg.remove();
                return Err(e);
            }
        }
        Ok(cg)
    }

    fn create_v2(root: &Path, id: &str, l: &Limits) -> Result<Cgroup> {
        let parent = root.join("strata");
        fs::create_dir_all(&parent).with_context(|| format!("mkdir {}", parent.display()))?;
        for dir in [root, parent.as_path()] {
            for c in ["memory", "cpu", "pids"] {
                // A controller this kernel lacks is only an error if a limit needs it (below).
                let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        let dir = parent.join(id);
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let cg = Cgroup {
            version: Version::V2,
            dirs: vec![dir.clone()],
        };
        let r = (|| {
            if let Some(m) = l.memory {
                write(&dir, "memory.max", &m.to_string())?;
                write(&dir, "memory.swap.max", "0")?;
            }
            if let Some(c) = l.cpus {
                write(&dir, "cpu.max", &format!("{} {PERIOD_US}", quota(c)))?;
            }
            if let Some(p) = l.pids {
                write(&dir, "pids.max", &pids_value(p))?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// No cgroup (a rootless container: an unprivileged user has none to make here); adding
    /// to it and removing it do nothing.
    pub fn none(root: &Path) -> Cgroup {
        Cgroup {
            version: detect(root),
            dirs: Vec::new(),
        }
    }

    /// The cgroup `create` made for container `id`, as far as its directories exist.
    pub fn existing(root: &Path, id: &str) -> Cgroup {
        let version = detect(root);
        let dirs = match version {
            Version::V2 => vec![root.join("strata").join(id)],
            Version::V1 => ["memory", "cpu", "pids"]
                .iter()
                .map(|c| root.join(c).join("strata").join(id))
                .collect(),
        };
        Cgroup {
            version,
            dirs: dirs.into_iter().filter(|d| d.is_dir()).collect(),
        }
    }

    /// Move process `pid` into the cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, dir) = match self.version {
            Version::V1 => (
                "memory.oom_control",
                self.dirs.iter().find(|d| {
                    d.parent()
                        .and_then(|p| p.parent())
                        .is_some_and(|p| p.ends_with("memory"))
                }),
            ),
            Version::V2 => ("memory.events", self.dirs.first()),
        };
        dir.and_then(|d| fs::read_to_string(d.join(file)).ok())
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Remove the cgroup's directories (once its processes are gone; a process still exiting
    /// makes rmdir EBUSY for a moment).
    pub fn remove(&self) {
        for d in &self.dirs {
            for _ in 0..100 {
                match fs::remove_dir(d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    // A plain directory (the unit tests' stand-in for cgroupfs) has files.
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                        let _ = fs::remove_dir_all(d);
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

fn quota(cpus: f64) -> u64 {
    ((cpus * PERIOD_US as f64) as u64).max(1000)
}

fn pids_value(p: i64) -> String {
    if p <= 0 {
        "max".into()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu", "pids"] {
            fs::create_dir(d.path().join(c)).unwrap();
        }
        // The hybrid layout's empty unified hierarchy.
        fs::create_dir(d.path().join("unified")).unwrap();
        d
    }

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("16m").unwrap(), 16 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn v1_writes_one_directory_per_controller() {
        let r = v1_root();
        assert_eq!(detect(r.path()), Version::V1);
        let l = Limits {
            memory: Some(32 << 20),
            cpus: Some(1.5),
            pids: Some(50),
        };
        let cg = Cgroup::create(r.path(), "abc", &l).unwrap();
        let read = |p: &str| fs::read_to_string(r.path().join(p)).unwrap();
        assert_eq!(read("memory/strata/abc/memory.limit_in_bytes"), "33554432");
        assert_eq!(read("cpu/strata/abc/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu/strata/abc/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/strata/abc/pids.max"), "50");
        cg.add(42).unwrap();
        assert_eq!(read("pids/strata/abc/cgroup.procs"), "42");
        fs::write(
            r.path().join("memory/strata/abc/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 1);
        cg.remove();
        assert!(!r.path().join("memory/strata/abc").exists());
    }

    #[test]
    fn v1_without_a_controller_fails_only_if_a_limit_needs_it() {
        let r = v1_root();
        fs::remove_dir(r.path().join("pids")).unwrap();
        Cgroup::create(r.path(), "a", &Limits::default()).unwrap();
        let e = Cgroup::create(
            r.path(),
            "b",
            &Limits {
                pids: Some(5),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("pids cgroup controller"), "{e:#}");
    }

    #[test]
    fn v2_when_the_unified_root_has_controllers() {
        let r = tempfile::tempdir().unwrap();
        fs::write(r.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(detect(r.path()), Version::V2);
        let l = Limits {
            memory: Some(1 << 20),
            cpus: Some(0.5),
            pids: Some(0),
        };
        let cg = Cgroup::create(r.path(), "x", &l).unwrap();
        let read = |p: &str| fs::read_to_string(r.path().join("strata/x").join(p)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "max");
        fs::write(
            r.path().join("strata/x/memory.events"),
            "oom 2\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 2);
    }
}
