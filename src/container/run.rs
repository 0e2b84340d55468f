//! `strata run` in the foreground: make the container's record, mount its root, make its
//! cgroup, start its process and be its parent until it ends, then record the end and take
//! the mount and cgroup down. The exit code of the process is the result.
//!
//! A failure before the process runs its command leaves nothing behind: no mount, no cgroup,
//! no process, no container directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::attach::{Prepared, Stdin};
use super::monitor;
use super::mount::{mount_root, RootMount};
use super::records::{self, Config, Store};
use super::{etc, grafts, source};
use crate::launcher::cgroups::{self, Cgroup, Limits};
use crate::launcher::{clone, userns, Failure, Network, Spec};
use crate::state::Root;

pub struct RunRequest {
    pub detach: bool,
    /// `-i`: keep stdin open (the caller's in the foreground).
    pub interactive: bool,
    /// `-t`: a terminal of its own.
    pub tty: bool,
    /// `--read-only`: the root is read-only, its read-write volumes, binds and tmpfs not.
    pub read_only: bool,
    /// `--stop-signal`: what `stop` sends first.
    pub stop_signal: Option<String>,
    pub name: Option<String>,
    pub auto_remove: bool,
    /// An image, or a rootfs directory.
    pub source: String,
    pub entrypoint: Option<String>,
    pub args: Vec<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    /// `--volumes-from C[:ro|:rw]`.
    pub volumes_from: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: Network,
    pub chroot: bool,
    pub init: bool,
    pub caps: u64,
    pub no_new_privileges: bool,
    pub limits: Limits,
}

/// How a run ended: the exit code for `strata run`, and the line to print when the command
/// never ran (Docker's 125, 126, 127 cases).
#[derive(Debug)]
pub struct Outcome {
    /// With `-d`: the id, printed once the command runs.
    pub detached: Option<String>,
    pub code: i32,
    pub error: Option<String>,
}

impl Outcome {
    /// A foreground process's end: its exit code, or the launcher's failure to start it.
    pub fn waited(code: i32, started: Result<(), Failure>) -> Outcome {
        match started {
            Ok(()) => Outcome {
                detached: None,
                code,
                error: None,
            },
            Err(f) => Outcome {
                detached: None,
                code: f.code,
                error: Some(f.msg),
            },
        }
    }
}

/// Told once the container's command runs, or why it could not (`run -d` waits for it).
pub type Notify<'a> = &'a dyn Fn(&Result<(), Failure>);

/// Docker's rule for names.
fn check_name(n: &str) -> Result<()> {
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

pub fn run(root: &Root, req: RunRequest) -> Result<Outcome> {
    let detach = req.detach;
    let (store, config) = create(root, req)?;
    if detach {
        return super::detach::start(root, &store, &config, true);
    }
    let stdin = if config.interactive {
        Stdin::Caller
    } else {
        Stdin::Null
    };
    launch(root, &store, &config, true, stdin, None)
}

/// `create`: the container's record and directory, ready for `start`. Its id.
pub fn create_only(root: &Root, req: RunRequest) -> Result<String> {
    Ok(create(root, req)?.1.id)
}

/// Outer paths before the ones inside them (each is bound onto itself in that order).
fn writable_outer_first(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort_by_key(|p| p.components().count());
    paths
}

/// Check the request and make the container's record.
fn create(root: &Root, req: RunRequest) -> Result<(Store, Config)> {
    let userns = if userns::rootless() {
        super::rootless::refuse_limits(&req.limits)?;
        Some(userns::for_caller()?)
    } else {
        None
    };
    let src = source::resolve(root, &req.source)?;
    let args = source::command(&src, req.entrypoint.as_deref(), &req.args);
    if args.is_empty() {
        bail!("no command specified");
    }
    let cwd = match req.workdir {
        Some(w) => w,
        None if !src.working_dir.is_empty() => PathBuf::from(&src.working_dir),
        None => PathBuf::from("/"),
    };
    let user = req
        .user
        .or_else(|| (!src.user.is_empty()).then(|| src.user.clone()));
    let (mut graft_specs, anonymous) =
        grafts::prepare(&req.volumes, &req.mounts, &req.tmpfs, &src.volumes)?;
    let inherited = grafts::volumes_from(root, &req.volumes_from, &graft_specs)?;
    graft_specs.splice(0..0, inherited);
    let id = records::new_id()?;
    let generated = req.name.is_none();
    let name = match req.name {
        Some(n) => {
            check_name(&n)?;
            n
        }
        None => records::name_for(&id),
    };
    if let Some(s) = &req.stop_signal {
        super::verbs::parse_signal(s)?;
    }
    let writable = graft_specs
        .iter()
        .map(grafts::parse)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|g| !g.read_only)
        .map(|g| g.target)
        .collect::<Vec<_>>();
    let store = Store::new(root);
    let dir = store.container_dir(&id);
    graft_specs.extend(etc::grafts(&dir, &graft_specs)?);
    let spec = Spec {
        rootfs: dir.join("merged"),
        args,
        env: source::environment(&src, &req.env),
        cwd,
        user,
        hostname: req.hostname.unwrap_or_else(|| id[..12].to_string()),
        network: req.network,
        chroot: req.chroot,
        init: req.init,
        // What the host withholds from strata it cannot give (--cap-add ALL included).
        caps: req.caps
            & match userns {
                Some(_) => crate::launcher::caps::available_in_userns(),
                None => crate::launcher::caps::available(),
            },
        no_new_privileges: req.no_new_privileges,
        // Docker's /dev/console: the container's pty with -t, none without.
        console: None,
        tty: req.tty,
        read_only: req.read_only,
        writable: writable_outer_first(writable),
        userns,
    };
    let mut config = Config {
        id,
        name,
        image: src.image,
        rootfs: src.image_id.is_none().then(|| src.lowers[0].clone()),
        image_id: src.image_id,
        lowers: src.lowers,
        grafts: graft_specs,
        anonymous_volumes: anonymous,
        created: records::now(),
        auto_remove: req.auto_remove,
        limits: req.limits,
        tty: req.tty,
        interactive: req.interactive,
        stop_signal: req.stop_signal.or(src.stop_signal),
        labels: src.labels,
        spec,
    };
    if generated {
        store.create_unnamed(&mut config)?;
    } else {
        store.create(&config)?;
    }
    if let Err(e) = etc::write(&dir, &config.spec.hostname, config.spec.network) {
        let _ = store.remove(&config.id);
        return Err(e);
    }
    Ok((store, config))
}

/// Mount, make the cgroup, start, wait, record the end and take everything down. `notify` is
/// told once the command runs (or why it could not); `stdin` is the process's stdin.
///
/// A `fresh` container (just made by `run`) that fails to start is removed whole; one started
/// again (`start`) keeps its record and writable layer, and is recorded as exited.
pub fn launch(
    root: &Root,
    store: &Store,
    config: &Config,
    fresh: bool,
    stdin: Stdin,
    notify: Option<Notify>,
) -> Result<Outcome> {
    let id = &config.id;
    let dir = store.container_dir(id);
    let gone = |e: anyhow::Error| -> Result<Outcome> {
        if fresh {
            let _ = store.remove(id);
        } else {
            let _ = store.update(id, |s| {
                s.status = "exited".into();
                s.exit_code = crate::launcher::EXIT_FAILED;
                s.finished_at = records::now();
            });
        }
        Err(e)
    };
    let served = match grafts::grafts(&config.grafts) {
        Ok(g) => g,
        Err(e) => return gone(e),
    };
    // A rootless container's monitor moves into its user namespace before anything is
    // mounted: the root's daemon, forked next, and the container's process live there too.
    if let Some(ns) = &config.spec.userns {
        if let Err(e) = userns::enter(ns) {
            return gone(e);
        }
    }
    let m = match mount_root(root, &config.lowers, served, &dir) {
        Ok(m) => m,
        Err(e) => return gone(e),
    };
    if config.spec.userns.is_some() {
        if let Some(d) = super::rootless::newest_child() {
            let _ = store.update(id, |s| {
                s.daemon_pid = d;
                s.daemon_start = crate::state::start_time(d).unwrap_or(0);
            });
        }
    }
    let cg = if config.spec.userns.is_some() {
        Ok(Cgroup::none(Path::new(cgroups::ROOT)))
    } else {
        Cgroup::create(Path::new(cgroups::ROOT), id, &config.limits)
    };
    let cg = match cg {
        Ok(cg) => cg,
        Err(e) => {
            teardown(store, id, &m, None, false);
            return gone(e);
        }
    };
    let r = start_and_wait(store, config, &cg, stdin, notify);
    let failed = !matches!(r, Ok(Outcome { error: None, .. }));
    let remove = config.auto_remove || (fresh && failed);
    let oom = cg.oom_kills() > 0;
    teardown(store, id, &m, Some(&cg), remove);
    if remove {
        for e in grafts::remove_anonymous(root, &config.anonymous_volumes) {
            eprintln!("strata: {e}");
        }
    }
    if let (
        Some(n),
        Ok(Outcome {
            code,
            error: Some(msg),
            ..
        }),
    ) = (notify, &r)
    {
        n(&Err(Failure {
            code: *code,
            msg: msg.clone(),
        }));
    }
    if !remove {
        let code = match &r {
            Ok(o) => o.code,
            Err(_) => crate::launcher::EXIT_FAILED,
        };
        store.update(id, |s| {
            s.status = "exited".into();
            s.pid = 0;
            s.monitor_pid = 0;
            s.exit_code = code;
            s.daemon_pid = 0;
            s.oom_killed = oom;
            s.finished_at = records::now();
        })?;
    }
    r
}

fn start_and_wait(
    store: &Store,
    config: &Config,
    cg: &Cgroup,
    stdin: Stdin,
    notify: Option<Notify>,
) -> Result<Outcome> {
    // Detached (`notify`): the monitor serves the container's stdio (log, attach socket).
    let serve = notify.map(|_| store.container_dir(&config.id));
    let io = Prepared::new(stdin, config.tty, serve)?;
    let started = clone::spawn(&config.spec, io.io())?;
    let pid = started.pid;
    if let Err(e) = cg.add(pid.as_raw()) {
        io.abandon();
        // Dropping `started` lets the child see the caller give up; it exits at once.
        drop(started);
        monitor::wait(pid);
        return Err(e);
    }
    monitor::proxy_signals(pid);
    let started = started.release();
    let attached = io.attach();
    // Running once the command is: a signal passed on before that could reach a PID 1 that
    // has not set up its handling yet, and be dropped.
    if started.is_ok() {
        let r = store.update(&config.id, |s| {
            s.status = "running".into();
            s.pid = pid.as_raw();
            s.pid_start = crate::state::start_time(pid.as_raw() as u32).unwrap_or(0);
            s.monitor_pid = std::process::id();
            s.monitor_start = crate::state::start_time(std::process::id()).unwrap_or(0);
            s.started_at = records::now();
        });
        if let Err(e) = r {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            attached.wait(pid);
            monitor::stop_proxy();
            return Err(e);
        }
    }
    // A failure is told after the teardown (in launch), so that nothing is left when the
    // caller hears of it.
    if let (Some(n), Ok(())) = (notify, &started) {
        n(&Ok(()));
    }
    let code = attached.wait(pid);
    monitor::stop_proxy();
    Ok(Outcome::waited(code, started))
}

/// Cgroup, mount, and (with `remove`) the record: each is tried even if another fails.
fn teardown(store: &Store, id: &str, m: &RootMount, cg: Option<&Cgroup>, remove: bool) {
    if let Some(cg) = cg {
        cg.remove();
    }
    if let Err(e) = m.unmount() {
        eprintln!("strata: {e:#}");
    }
    if remove {
        if let Err(e) = store.remove(id) {
            eprintln!("strata: {e:#}");
        }
    }
}
