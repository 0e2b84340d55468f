//! The verbs that work on containers by their records: ps, logs, stop, rm. Each reads the
//! records under the lock and acts on the container's processes from outside; the monitor
//! records the end and takes the mount down itself.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::log;
use super::records::{parse_time, Config, State, Store};
use crate::launcher::cgroups;
use crate::state::{alive, Root};

/// One line of `ps`: Docker's columns.
pub struct Row {
    pub id: String,
    pub image: String,
    pub command: String,
    pub created: String,
    pub status: String,
    pub ports: String,
    pub names: String,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// go-units' HumanDuration, as Docker prints ages.
pub fn human(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if d < 14 => format!("{d} days"),
        _ if d < 60 => format!("{} weeks", d / 7),
        _ if d < 730 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

fn ago(t: &str) -> String {
    parse_time(t)
        .map(|t| format!("{} ago", human(now() - t)))
        .unwrap_or_default()
}

/// Docker's COMMAND: the command line cut to 20 characters (…), in quotes.
fn command(c: &Config) -> String {
    let full = c.spec.args.join(" ");
    let cut = if full.chars().count() > 20 {
        format!("{}…", full.chars().take(19).collect::<String>())
    } else {
        full
    };
    format!("\"{cut}\"")
}

fn status(s: &State) -> String {
    match s.status.as_str() {
        "running" => format!(
            "Up {}",
            human(now() - parse_time(&s.started_at).unwrap_or(now()))
        ),
        "exited" => format!("Exited ({}) {}", s.exit_code, ago(&s.finished_at)),
        _ => "Created".into(),
    }
}

/// Containers, newest first; only running ones unless `all` (or a status filter); those
/// `filters` match.
pub fn ps(root: &Root, all: bool, filters: &super::filter::Filters) -> Result<Vec<Row>> {
    let all = all || filters.implies_all();
    let store = Store::new(root);
    let lock = store.lock()?;
    let mut window = super::filter::Window::default();
    for (o, key) in filters.order() {
        // Docker's line for a before=/since= naming no container.
        let c = store
            .find(&lock, key)
            .map_err(|_| anyhow::anyhow!("no such container {key}"))?;
        window.narrow(o, &c.created, &c.id);
    }
    let mut list: Vec<(Config, State)> = store
        .configs(&lock)
        .into_iter()
        .filter_map(|c| {
            let s = store.live_state(&lock, &c.id).ok()?;
            Some((c, s))
        })
        .filter(|(_, s)| all || s.status == "running")
        .filter(|(c, s)| filters.matches(c, s) && window.holds(&c.created, &c.id))
        .collect();
    list.sort_by(|a, b| b.0.created.cmp(&a.0.created));
    Ok(list
        .into_iter()
        .map(|(c, s)| Row {
            id: c.id[..12].to_string(),
            image: c.image.clone(),
            command: command(&c),
            created: ago(&c.created),
            status: status(&s),
            ports: String::new(),
            names: c.name.clone(),
        })
        .collect())
}

/// `logs`: the container's output (when run with -d or started), each piece given to `out`
/// with its stream ([`log::STDOUT`], [`log::STDERR`]); only the last `tail` lines if given,
/// and with `follow`, what it goes on writing until its monitor is gone.
pub fn logs(
    root: &Root,
    key: &str,
    follow: bool,
    tail: Option<usize>,
    out: &mut dyn FnMut(u8, &[u8]) -> Result<()>,
) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let store = Store::new(root);
    let id = {
        let lock = store.lock()?;
        store.find(&lock, key)?.id
    };
    let path = store.container_dir(&id).join("log");
    let data = std::fs::read(&path).unwrap_or_default();
    let (records, used) = log::read(&data);
    let records = match tail {
        Some(n) => log::tail(records, n),
        None => records,
    };
    for r in &records {
        out(r.stream, &r.data)?;
    }
    if !follow {
        return Ok(());
    }
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        // Never started detached: nothing will come.
        Err(_) => return Ok(()),
    };
    f.seek(SeekFrom::Start(used as u64))?;
    let mut buf = Vec::new();
    loop {
        let done = match store.state(&id) {
            Ok(s) => !alive(s.monitor_pid, s.monitor_start),
            Err(_) => true,
        };
        f.read_to_end(&mut buf)?;
        let (records, used) = log::parse(&buf);
        for r in &records {
            out(r.stream, &r.data)?;
        }
        buf.drain(..used);
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the container's monitor is gone (it has recorded the end and unmounted).
fn wait_monitor(store: &Store, id: &str, timeout: Duration) -> bool {
    let t = Instant::now();
    loop {
        let s = match store.state(id) {
            Ok(s) => s,
            // Removed by its own monitor (--rm).
            Err(_) => return true,
        };
        // The record says exited a moment before the monitor is done with the mount.
        if !alive(s.monitor_pid, s.monitor_start) {
            return true;
        }
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

/// The container's stop signal (or SIGTERM) to PID 1, SIGKILL after `timeout` seconds, as
/// `docker stop`.
pub fn stop(root: &Root, key: &str, timeout: u64) -> Result<()> {
    let store = Store::new(root);
    let (c, s) = {
        let lock = store.lock()?;
        let c = store.find(&lock, key)?;
        let s = store.live_state(&lock, &c.id)?;
        (c, s)
    };
    if s.status != "running" {
        return Ok(());
    }
    let first = match &c.stop_signal {
        Some(sig) => parse_signal(sig)?,
        None => libc::SIGTERM,
    };
    signal(s.pid, first);
    if !wait_monitor(&store, &c.id, Duration::from_secs(timeout)) {
        signal(s.pid, libc::SIGKILL);
        if !wait_monitor(&store, &c.id, Duration::from_secs(30)) {
            bail!("container {} did not stop", c.id);
        }
    }
    Ok(())
}

/// What a monitor killed before it could take its container down left: its PID 1 if still
/// there, the root's mount, the cgroups.
fn clean_leftovers(store: &Store, c: &Config) -> Result<()> {
    let dir = store.container_dir(&c.id);
    // A PID 1 left by a monitor killed before it could take it down.
    if let Ok(raw) = store.state(&c.id) {
        if raw.pid > 0 && alive(raw.pid as u32, raw.pid_start) {
            signal(raw.pid, libc::SIGKILL);
            let t = Instant::now();
            while alive(raw.pid as u32, raw.pid_start) && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    if let Ok(raw) = store.state(&c.id) {
        super::rootless::stop_daemon(raw.daemon_pid, raw.daemon_start);
    }
    let merged = dir.join("merged");
    let merged = merged.canonicalize().unwrap_or(merged);
    let mounted = crate::daemon::mount_points()
        .iter()
        .any(|(p, _)| *p == merged);
    if mounted {
        crate::daemon::umount(&merged).context("unmount the container's root")?;
    }
    for ctrl in ["memory", "cpu", "pids", ""] {
        let d = Path::new(cgroups::ROOT)
            .join(ctrl)
            .join("strata")
            .join(&c.id);
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}

/// Remove a container and its writable layer; a running one only with `force` (killed first).
/// What a killed monitor left (the mount, the cgroup) goes too.
pub fn rm(root: &Root, key: &str, force: bool, volumes: bool) -> Result<()> {
    let store = Store::new(root);
    let (c, s) = {
        let lock = store.lock()?;
        let c = store.find(&lock, key)?;
        let s = store.live_state(&lock, &c.id)?;
        (c, s)
    };
    if s.status == "running" {
        if !force {
            bail!(
                "You cannot remove a running container {}. Stop the container before attempting \
                 removal or force remove",
                c.id
            );
        }
        signal(s.pid, libc::SIGKILL);
        if !wait_monitor(&store, &c.id, Duration::from_secs(30)) {
            bail!("container {} did not stop", c.id);
        }
    }
    let dir = store.container_dir(&c.id);
    if !dir.exists() {
        return Ok(());
    }
    clean_leftovers(&store, &c)?;
    match &c.spec.userns {
        // Its upper holds files of its subordinate ids, which only its namespace can remove.
        Some(ns) => super::rootless::in_userns(ns, &|| store.remove(&c.id))?,
        None => store.remove(&c.id)?,
    }
    if volumes {
        if let Some(e) = super::grafts::remove_anonymous(root, &c.anonymous_volumes).first() {
            bail!("{e}");
        }
    }
    Ok(())
}

/// `start`: run a stopped container again, on the same writable layer. Detached unless
/// `attach` (then the exit code is the command's; with `stdin` too, the caller's stdin is
/// the container's, if it was made with -i). Returns None when it was already running.
pub fn start(
    root: &Root,
    key: &str,
    attach: bool,
    stdin: bool,
) -> Result<Option<super::run::Outcome>> {
    use super::attach::Stdin;
    let store = Store::new(root);
    let c = {
        let lock = store.lock()?;
        let c = store.find(&lock, key)?;
        if store.live_state(&lock, &c.id)?.status == "running" {
            return Ok(None);
        }
        c
    };
    // What a killed monitor left goes first (its mount would refuse the new one).
    clean_leftovers(&store, &c)?;
    store.update(&c.id, |s| {
        s.status = "created".into();
        s.oom_killed = false;
    })?;
    let o = if attach {
        let s = match (c.interactive, stdin) {
            (true, true) => Stdin::Caller,
            (true, false) => Stdin::Held,
            (false, _) => Stdin::Null,
        };
        super::run::launch(root, &store, &c, false, s, None)?
    } else {
        super::detach::start(root, &store, &c, false)?
    };
    Ok(Some(o))
}

/// Was the container made with -t?
pub fn is_tty(root: &Root, key: &str) -> Result<bool> {
    let store = Store::new(root);
    let lock = store.lock()?;
    Ok(store.find(&lock, key)?.tty)
}

/// `wait`: block until the container has exited; its exit code.
pub fn wait(root: &Root, key: &str) -> Result<i32> {
    let store = Store::new(root);
    let id = {
        let lock = store.lock()?;
        store.find(&lock, key)?.id
    };
    loop {
        let s = {
            let lock = store.lock()?;
            store.live_state(&lock, &id)?
        };
        // The monitor writes the exit code as it finishes.
        if !alive(s.monitor_pid, s.monitor_start) {
            return Ok(s.exit_code);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Docker's signal names (with or without SIG) and numbers.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    match format!("SIG{name}").parse::<nix::sys::signal::Signal>() {
        Ok(sig) => Ok(sig as i32),
        Err(_) => bail!("Invalid signal: {s}"),
    }
}

/// `kill`: send a signal to PID 1 (SIGKILL unless given).
pub fn kill(root: &Root, key: &str, sig: i32) -> Result<()> {
    let store = Store::new(root);
    let lock = store.lock()?;
    let c = store.find(&lock, key)?;
    let s = store.live_state(&lock, &c.id)?;
    if s.status != "running" {
        bail!(
            "Cannot kill container: {key}: Container {} is not running",
            c.id
        );
    }
    signal(s.pid, sig);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn ages_read_as_dockers() {
        assert_eq!(human(0.4), "Less than a second");
        assert_eq!(human(1.0), "1 second");
        assert_eq!(human(42.0), "42 seconds");
        assert_eq!(human(61.0), "About a minute");
        assert_eq!(human(3.0 * 3600.0), "3 hours");
    }
}
