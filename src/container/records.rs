//! Container records in the state root: `containers/<id>/config.json` (what was asked) and
//! `state.json` (pid, status, exit code, times), beside the container's `upper/`, `work/` and
//! `merged/`. Every reader and writer holds `containers/lock` (flock) for the short time it
//! looks or writes, so a name is taken once and verbs can run side by side with a monitor.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::launcher::cgroups::Limits;
use crate::launcher::Spec;
use crate::state::Root;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub name: String,
    /// The image or rootfs directory, as given.
    pub image: String,
    /// The image's id (`sha256:<hex>`), when run from an image: the image store keeps an
    /// image a container uses.
    #[serde(rename = "ImageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The union's read-only lower layers, top-most first.
    pub lowers: Vec<PathBuf>,
    /// The directory, for a container run from a rootfs directory (the image store looks here
    /// for a container run straight from one of its layer directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// Volumes, binds and tmpfs, as given (anonymous volumes named).
    #[serde(default)]
    pub grafts: Vec<super::grafts::GraftSpec>,
    /// The anonymous volumes' names (`rm -v` and `run --rm` remove them).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    pub created: String,
    pub auto_remove: bool,
    pub limits: Limits,
    /// `-t`: the process has a pty of its own (Docker's Config.Tty).
    #[serde(default)]
    pub tty: bool,
    /// `-i`: its stdin is kept open (Docker's Config.OpenStdin).
    #[serde(default)]
    pub interactive: bool,
    /// `--stop-signal`, or the image's StopSignal: what `stop` sends first (SIGTERM if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The image's labels (`ps --filter label=`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// What the launcher is given (its rootfs is the container's merged directory).
    pub spec: Spec,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// created, running, exited (Docker's words).
    pub status: String,
    /// The container's PID 1, as the host sees it (0 when not running).
    pub pid: i32,
    /// PID 1's start time (clock ticks after boot).
    #[serde(default)]
    pub pid_start: u64,
    /// The process that holds the mount and waits for the container.
    pub monitor_pid: u32,
    /// Its start time (clock ticks after boot), to tell it from a later process with its pid.
    #[serde(default)]
    pub monitor_start: u64,
    /// A rootless container's root daemon, which lives in its monitor's mount namespace, where
    /// no unmount from outside reaches it (0 when none is known).
    #[serde(default)]
    pub daemon_pid: u32,
    #[serde(default)]
    pub daemon_start: u64,
    pub exit_code: i32,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
}

pub struct Store {
    pub dir: PathBuf,
}

/// The lock over every container record; released when dropped.
pub struct Lock(#[allow(dead_code)] fs::File);

impl Store {
    pub fn new(root: &Root) -> Store {
        Store {
            dir: root.path.join("containers"),
        }
    }

    pub fn lock(&self) -> Result<Lock> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("state root {}", self.dir.display()))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .with_context(|| format!("state root {}", self.dir.display()))?;
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("lock the container records");
        }
        Ok(Lock(f))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every container's config (under the lock the caller holds).
    pub fn configs(&self, _lock: &Lock) -> Vec<Config> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| read_json(&e.ok()?.path().join("config.json")).ok())
            .collect()
    }

    /// Make the container's directory and records; refused if the name is in use. The
    /// directory is made under a temporary name and renamed into place whole.
    pub fn create(&self, config: &Config) -> Result<PathBuf> {
        let lock = self.lock()?;
        self.create_locked(&lock, config)
    }

    /// The same for a container that was given no name: its generated name is first made one
    /// no container has, under the same lock (there are only 288 adjective_scientist pairs, so
    /// a hundred containers share some; Docker's generator then appends a digit, as here).
    pub fn create_unnamed(&self, config: &mut Config) -> Result<PathBuf> {
        let lock = self.lock()?;
        let taken: std::collections::HashSet<String> =
            self.configs(&lock).into_iter().map(|c| c.name).collect();
        let base = name_for(&config.id);
        config.name = (0..)
            .map(|k| match k {
                0 => base.clone(),
                k => format!("{base}{k}"),
            })
            .find(|n| !taken.contains(n))
            .unwrap();
        self.create_locked(&lock, config)
    }

    fn create_locked(&self, lock: &Lock, config: &Config) -> Result<PathBuf> {
        if let Some(other) = self.configs(lock).iter().find(|c| c.name == config.name) {
            bail!(
                "Conflict. The container name \"/{}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                config.name,
                other.id
            );
        }
        let dir = self.container_dir(&config.id);
        let tmp = self.dir.join(format!(".new-{}", config.id));
        let r = (|| {
            for sub in ["", "upper", "work", "merged"] {
                fs::create_dir_all(tmp.join(sub))?;
            }
            write_json(&tmp.join("config.json"), config)?;
            write_json(
                &tmp.join("state.json"),
                &State {
                    status: "created".into(),
                    ..Default::default()
                },
            )?;
            fs::rename(&tmp, &dir)?;
            Ok::<_, anyhow::Error>(())
        })();
        if let Err(e) = r {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e).context("cannot create the container's directory");
        }
        Ok(dir)
    }

    /// A container by full id, name, or a unique prefix of its id (Docker's lookup).
    pub fn find(&self, lock: &Lock, key: &str) -> Result<Config> {
        let all = self.configs(lock);
        if let Some(c) = all.iter().find(|c| c.id == key || c.name == key) {
            return Ok(c.clone());
        }
        let by_prefix: Vec<&Config> = all.iter().filter(|c| c.id.starts_with(key)).collect();
        match by_prefix.as_slice() {
            [c] if !key.is_empty() => Ok((*c).clone()),
            [] | [_] => bail!("No such container: {key}"),
            _ => bail!("multiple IDs found with provided prefix: {key}"),
        }
    }

    /// A container's state as it is: one recorded as running whose monitor is gone (killed)
    /// has exited, its PID 1 killed with it.
    pub fn live_state(&self, _lock: &Lock, id: &str) -> Result<State> {
        let mut s: State = read_json(&self.container_dir(id).join("state.json"))?;
        if s.status == "running" && !crate::state::alive(s.monitor_pid, s.monitor_start) {
            s.status = "exited".into();
            s.exit_code = 137;
            s.pid = 0;
        }
        Ok(s)
    }

    pub fn state(&self, id: &str) -> Result<State> {
        let _l = self.lock()?;
        read_json(&self.container_dir(id).join("state.json"))
    }

    /// Change a container's state under the lock.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<()> {
        let _l = self.lock()?;
        let p = self.container_dir(id).join("state.json");
        let mut s: State = read_json(&p)?;
        f(&mut s);
        write_json(&p, &s)
    }

    /// Remove a container's directory (its writable layer with it).
    pub fn remove(&self, id: &str) -> Result<()> {
        let _l = self.lock()?;
        let dir = self.container_dir(id);
        // Never through a live mount: removing the tree would go down into the union and its
        // grafts (a bound host directory among them) and delete what they hold.
        let canon = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if let Some((p, _)) = crate::daemon::mount_points()
            .into_iter()
            .find(|(p, _)| p.starts_with(&canon))
        {
            bail!(
                "{} is still mounted; not removing the container",
                p.display()
            );
        }
        // Renamed first, so a crash halfway leaves no record that looks whole.
        let gone = self.dir.join(format!(".gone-{id}"));
        fs::rename(&dir, &gone).with_context(|| format!("remove {}", dir.display()))?;
        fs::remove_dir_all(&gone).with_context(|| format!("remove {}", dir.display()))
    }
}

pub fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T> {
    let mut s = String::new();
    fs::File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&s).with_context(|| format!("parse {}", p.display()))
}

/// Written whole or not at all: a temporary file renamed over the old one.
pub fn write_json<T: Serialize>(p: &Path, v: &T) -> Result<()> {
    let tmp = p.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(v)?;
    fs::write(&tmp, text + "\n").with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, p).with_context(|| format!("write {}", p.display()))
}

/// A 64-hex-digit id, as Docker's.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("read /dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fervent", "gifted", "happy", "jolly", "keen", "lucid", "modest",
    "nifty", "quirky", "serene", "tender", "upbeat", "vibrant", "wizardly", "zen",
];
const SCIENTISTS: &[&str] = &[
    "babbage", "curie", "dijkstra", "euler", "feynman", "goldberg", "hopper", "knuth", "lamport",
    "liskov", "lovelace", "noether", "ritchie", "shannon", "thompson", "turing",
];

/// Docker-style name (adjective_scientist) picked from the id.
pub fn name_for(id: &str) -> String {
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    format!(
        "{}_{}",
        ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize],
        SCIENTISTS[((n / 97) % SCIENTISTS.len() as u64) as usize]
    )
}

/// Now, as RFC 3339 UTC with nanoseconds (Docker's State.StartedAt format).
pub fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Seconds since the epoch of a time [`rfc3339`] wrote (None for "" or anything else).
pub fn parse_time(t: &str) -> Option<f64> {
    crate::time::parse_rfc3339(t).map(|(s, n)| s as f64 + f64::from(n) / 1e9)
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    crate::time::rfc3339(secs, Some(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_709_210_096, 5), "2024-02-29T12:34:56.000000005Z");
        assert_eq!(
            parse_time("2024-02-29T12:34:56.500000000Z"),
            Some(1_709_210_096.5)
        );
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn names_are_unique_and_records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(&Root {
            path: d.path().to_path_buf(),
        });
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        let config = Config {
            id: id.clone(),
            name: name_for(&id),
            image: "/r".into(),
            image_id: None,
            lowers: vec!["/r".into()],
            rootfs: Some("/r".into()),
            grafts: vec![],
            anonymous_volumes: vec![],
            created: now(),
            auto_remove: false,
            limits: Limits::default(),
            spec: crate::launcher::Spec {
                rootfs: "/m".into(),
                args: vec!["true".into()],
                env: vec![],
                cwd: "/".into(),
                user: None,
                hostname: id[..12].into(),
                network: crate::launcher::Network::None,
                chroot: false,
                init: false,
                caps: 0,
                no_new_privileges: false,
                console: None,
                tty: false,
                read_only: false,
                writable: vec![],
                userns: None,
            },
            tty: false,
            interactive: false,
            stop_signal: None,
            labels: Default::default(),
        };
        let dir = store.create(&config).unwrap();
        assert!(dir.join("upper").is_dir() && dir.join("work").is_dir());
        assert_eq!(store.state(&id).unwrap().status, "created");
        let again = Config {
            id: new_id().unwrap(),
            ..config.clone()
        };
        let e = store.create(&again).unwrap_err();
        assert!(
            format!("{e}").contains("is already in use by container"),
            "{e}"
        );
        // Given no name, a container whose generated name is taken gets the next free one.
        let mut unnamed = Config {
            id: format!("{}{}", &id[..12], &new_id().unwrap()[12..]),
            ..config.clone()
        };
        store.create_unnamed(&mut unnamed).unwrap();
        assert_eq!(unnamed.name, format!("{}1", config.name));
        store.remove(&unnamed.id).unwrap();
        store
            .update(&id, |s| {
                s.status = "exited".into();
                s.exit_code = 3;
            })
            .unwrap();
        assert_eq!(store.state(&id).unwrap().exit_code, 3);
        store.remove(&id).unwrap();
        assert!(!dir.exists());
        store.create(&again).unwrap();
    }
}
