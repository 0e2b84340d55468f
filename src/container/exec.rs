//! `strata exec`: a command in a running container, in its namespaces, root and cgroups, with
//! its environment (plus `-e`), its user (or `-u`) and workdir (or `-w`). This process waits for
//! the command, passing signals on, and its exit code is the command's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::attach::{Prepared, Stdin};
use super::monitor;
use super::records::Store;
use super::run::Outcome;
use crate::launcher::cgroups::{self, Cgroup};
use crate::launcher::exec::{self, Target};
use crate::launcher::{clone, syscall};
use crate::state::Root;

pub struct ExecRequest {
    pub container: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub user: Option<String>,
    /// `-i`: the caller's stdin (held open with -d).
    pub interactive: bool,
    /// `-t`: a pty of its own.
    pub tty: bool,
    /// `-d`: returns once the command runs; a process of its own waits for it.
    pub detach: bool,
}

pub fn exec(root: &Root, req: ExecRequest) -> Result<Outcome> {
    let store = Store::new(root);
    let (config, state) = {
        let lock = store.lock()?;
        let c = store.find(&lock, &req.container)?;
        let s = store.live_state(&lock, &c.id)?;
        (c, s)
    };
    if state.status != "running" {
        bail!("Container {} is not running", config.id);
    }
    if req.args.is_empty() {
        bail!("no command specified");
    }
    let mut spec = config.spec.clone();
    spec.args = req.args;
    spec.env.extend(req.env);
    if let Some(w) = req.workdir {
        spec.cwd = w;
    }
    if req.user.is_some() {
        spec.user = req.user;
    }
    let target = Target::open(state.pid)?;
    let cg = Cgroup::existing(Path::new(cgroups::ROOT), &config.id);
    let stdin = match (req.interactive, req.detach) {
        (false, _) => Stdin::Null,
        (true, false) => Stdin::Caller,
        (true, true) => Stdin::Held,
    };
    if req.detach {
        return super::detach::background(None, &|notify| {
            run_and_wait(&target, &spec, &cg, stdin, req.tty, Some(notify))
        });
    }
    run_and_wait(&target, &spec, &cg, stdin, req.tty, None)
}

/// Join, clone, start and wait: the command's outcome. `notify` hears once it runs.
fn run_and_wait(
    target: &Target,
    spec: &crate::launcher::Spec,
    cg: &Cgroup,
    stdin: Stdin,
    tty: bool,
    notify: Option<super::run::Notify>,
) -> Result<Outcome> {
    exec::join_pid(&syscall::Linux, target).map_err(|f| anyhow::anyhow!(f.msg))?;
    let io = Prepared::new(stdin, tty, None)?;
    let ioc = io.io();
    let started = clone::spawn_with(nix::sched::CloneFlags::empty(), ioc, &|report| {
        exec::start(target, spec, &ioc, report)
    })?;
    let pid = started.pid;
    if let Err(e) = cg.add(pid.as_raw()) {
        drop(started);
        io.abandon();
        monitor::wait(pid);
        return Err(e);
    }
    monitor::proxy_signals(pid);
    let r = started.release();
    let attached = io.attach();
    if let Some(n) = notify {
        n(&r);
    }
    let code = attached.wait(pid);
    monitor::stop_proxy();
    Ok(Outcome::waited(code, r))
}
