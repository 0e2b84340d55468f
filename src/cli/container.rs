//! Container verbs: `strata run`. Parse the flags as Docker takes them, hand the request to
//! src/container/, print what comes back.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::container::run::{self, RunRequest};
use crate::container::{attach, verbs};
use crate::launcher::cgroups::{parse_size, Limits};
use crate::launcher::{caps, Network};
use crate::state::Root;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container's id; its output goes to its log.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open: the caller's in the foreground, held open with -d.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal of its own (a pty).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container (its writable layer) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Set an environment variable: KEY=VALUE, or KEY to pass the caller's (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file: KEY=VALUE or KEY lines, # comments (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (made if missing).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// UID[:GID] or NAME[:GROUP] to run as.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Container host name [default: the short id].
    #[arg(long)]
    pub hostname: Option<String>,
    /// none: a network namespace of its own with only lo; host: the host's.
    #[arg(long, default_value = "none", value_name = "none|host")]
    pub network: String,
    /// Enter the root with chroot(2) instead of pivot_root(2) (to see the difference).
    #[arg(long)]
    pub chroot: bool,
    /// Run a small init as PID 1 that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Add a capability to Docker's default set (or ALL; repeatable).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from Docker's default set (or ALL; repeatable).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// no-new-privileges[:true|false].
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Memory limit (b, k, m, g).
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Number of CPUs (fractional).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1 or 0: unlimited).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// A volume at DST: NAME:DST[:ro|:nocopy], DST for an anonymous one, or /HOST:DST[:ro] to
    /// bind a host directory or file (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volumes: Vec<String>,
    /// Docker's long form: type=bind|volume|tmpfs,source=..,target=..[,readonly] (repeatable).
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// An in-memory directory: DST[:size=..,mode=..] (repeatable).
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount the volumes and binds of another container, with their modes, or all read-only
    /// with :ro (repeatable).
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|:rw]")]
    pub volumes_from: Vec<String>,
    /// Mount the container's root read-only (its volumes, binds and tmpfs stay writable).
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// The signal `stop` sends first [default: the image's StopSignal, or SIGTERM].
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Overwrite the image's entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// An image from `strata image import`, or a root filesystem directory (its files stay
    /// untouched: writes go to the container's own layer).
    #[arg(value_name = "IMAGE|ROOTFS-DIR")]
    pub image: String,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// Flags of `run` and `exec` that take a value (as a separate argument unless attached).
const VALUE_FLAGS: &[&str] = &[
    "--name",
    "-e",
    "--env",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "--hostname",
    "--network",
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "-m",
    "--memory",
    "--cpus",
    "--pids-limit",
    "--entrypoint",
    "--env-file",
    "-v",
    "--volume",
    "--mount",
    "--tmpfs",
    "--root",
    "--volumes-from",
    "--stop-signal",
];

/// Docker stops reading flags at `run`'s IMAGE and `exec`'s CONTAINER: what follows is the
/// command's (`run IMAGE ls -l`). clap would take a later `-u` as strata's, so a `--` is put
/// after that first positional argument.
pub fn end_flags_at_positional(argv: Vec<String>) -> Vec<String> {
    // The verb is the first argument after the global --root.
    let verb = match argv.get(1).map(String::as_str) {
        Some("--root") => 3,
        Some(r) if r.starts_with("--root=") => 2,
        _ => 1,
    };
    if !matches!(
        argv.get(verb).map(String::as_str),
        Some("run" | "create" | "exec")
    ) {
        return argv;
    }
    let mut i = verb + 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        if a == "--" {
            return argv;
        }
        if a.starts_with('-') && a.len() > 1 {
            let takes_value = VALUE_FLAGS.contains(&a);
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        let mut out = argv;
        if i + 1 < out.len() && out[i + 1] != "--" {
            out.insert(i + 1, "--".into());
        }
        return out;
    }
    argv
}

/// Docker's --env-file: one KEY=VALUE (or KEY, taken from the caller) a line; blank lines and
/// lines starting with # are skipped; values are taken as they are, quotes included.
fn env_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("open {}: {e}", f.display()))?;
        for l in text.lines() {
            let l = l.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.split('=')
                .next()
                .is_some_and(|k| k.contains(char::is_whitespace))
            {
                bail!("{}: variable '{l}' contains whitespaces", f.display());
            }
            out.push(l.to_string());
        }
    }
    Ok(out)
}

fn env(given: &[String]) -> Vec<String> {
    given
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                // Docker: a bare KEY takes the caller's value, or is left out.
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

fn no_new_privileges(opts: &[String]) -> Result<bool> {
    let mut on = false;
    for o in opts {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => on = true,
            "no-new-privileges:false" | "no-new-privileges=false" => on = false,
            _ => bail!("invalid --security-opt: {o:?}"),
        }
    }
    Ok(on)
}

pub fn request(a: RunArgs) -> Result<RunRequest> {
    let network = match a.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        n => bail!("network {n} not found"),
    };
    let caps = caps::resolve(&a.cap_add, &a.cap_drop).map_err(anyhow::Error::msg)?;
    let memory = a.memory.as_deref().map(parse_size).transpose()?;
    if memory.is_some_and(|m| m < 6 << 20) {
        bail!("Minimum memory limit allowed is 6MB");
    }
    if a.cpus.is_some_and(|c| c <= 0.0 || !c.is_finite()) {
        bail!("invalid argument for --cpus: must be a positive number");
    }
    if let Some(w) = &a.workdir {
        if !w.is_absolute() {
            bail!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                w.display()
            );
        }
    }
    Ok(RunRequest {
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        read_only: a.read_only,
        stop_signal: a.stop_signal,
        name: a.name,
        auto_remove: a.rm,
        source: a.image,
        entrypoint: a.entrypoint,
        volumes: a.volumes,
        mounts: a.mounts,
        tmpfs: a.tmpfs,
        volumes_from: a.volumes_from,
        args: a.cmd,
        // The files first: -e wins over them, as with Docker.
        env: env(&[env_files(&a.env_file)?, a.env].concat()),
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        network,
        chroot: a.chroot,
        init: a.init,
        caps,
        no_new_privileges: no_new_privileges(&a.security_opt)?,
        limits: Limits {
            memory,
            cpus: a.cpus,
            pids: a.pids_limit,
        },
    })
}

/// `strata run`: the exit code to exit with. A failure of strata itself is Err (exit 125).
pub fn run(root: &Root, a: RunArgs) -> Result<i32> {
    if a.interactive && a.tty && !a.detach && !attach::is_terminal(0) {
        eprintln!("strata: {}", attach::NOT_A_TTY);
        return Ok(1);
    }
    let o = run::run(root, request(a)?)?;
    if let Some(e) = o.error {
        eprintln!("strata: {e}");
    }
    if let Some(id) = o.detached {
        println!("{id}");
    }
    Ok(o.code)
}

/// `strata create`: the flags of `run`; prints the new container's id.
pub fn create(root: &Root, a: RunArgs) -> Result<()> {
    println!("{}", run::create_only(root, request(a)?)?);
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open: the caller's.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal of its own (a pty).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set an environment variable: KEY=VALUE, or KEY to pass the caller's (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// UID[:GID] or NAME[:GROUP] to run as.
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    pub container: String,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub cmd: Vec<String>,
}

/// `strata exec`: the command's exit code, or Err when it could not be started for a reason of
/// strata's own (no such container, not running).
pub fn exec(root: &Root, a: ExecArgs) -> Result<i32> {
    if a.interactive && a.tty && !a.detach && !attach::is_terminal(0) {
        eprintln!("strata: {}", attach::NOT_A_TTY);
        return Ok(1);
    }
    let o = crate::container::exec::exec(
        root,
        crate::container::exec::ExecRequest {
            container: a.container,
            args: a.cmd,
            env: env(&a.env),
            workdir: a.workdir,
            user: a.user,
            interactive: a.interactive,
            tty: a.tty,
            detach: a.detach,
        },
    )?;
    if let Some(e) = o.error {
        eprintln!("strata: {e}");
    }
    Ok(o.code)
}

/// `strata ps [-a] [-q] [--filter K=V]...`, in Docker's columns.
pub fn ps(root: &Root, all: bool, quiet: bool, filters: &[String]) -> Result<()> {
    let filters = crate::container::filter::Filters::parse(filters)?;
    let rows = verbs::ps(root, all, &filters)?;
    if quiet {
        for r in rows {
            println!("{}", r.id);
        }
        return Ok(());
    }
    let mut table = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for r in rows {
        table.push([
            r.id, r.image, r.command, r.created, r.status, r.ports, r.names,
        ]);
    }
    print!("{}", columns(&table));
    Ok(())
}

/// Docker's tabwriter: each column but the last as wide as its widest cell plus 3, at least 10.
fn columns<const N: usize>(table: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count() + 3).max(10);
        }
    }
    let mut out = String::new();
    for row in table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `strata logs [-f] [--tail N] C`: what the container wrote (the last N lines), its stdout
/// on stdout and its stderr on stderr, and with -f what it goes on writing until it exits.
pub fn logs(root: &Root, container: &str, follow: bool, tail: Option<&str>) -> Result<()> {
    use std::io::Write;
    let n = match tail {
        None | Some("all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("invalid value for --tail: {t:?}"))?,
        ),
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    verbs::logs(root, container, follow, n, &mut |stream, data| {
        let w: &mut dyn Write = if stream == crate::container::log::STDERR {
            &mut err
        } else {
            &mut out
        };
        w.write_all(data)?;
        // Each piece as it comes, so the two streams keep their order on one terminal.
        w.flush()?;
        Ok(())
    })
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Pass the signals received on to the container (not with a terminal: keys are bytes).
    #[arg(
        long = "sig-proxy",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "true|false"
    )]
    pub sig_proxy: bool,
    /// The key sequence that detaches: a letter, or ctrl-X, comma-separated
    /// [default: ctrl-p,ctrl-q].
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    pub container: String,
}

/// `strata attach C`: the container's exit code once it ends; 1 after the detach keys, with
/// Docker's line.
pub fn attach(root: &Root, a: AttachArgs) -> Result<i32> {
    use crate::container::attach_client::{self, AttachRequest, Ended};
    let ended = attach_client::attach(
        root,
        AttachRequest {
            container: a.container,
            stdin: !a.no_stdin,
            sig_proxy: a.sig_proxy,
            detach_keys: a.detach_keys,
        },
    )?;
    Ok(match ended {
        Ended::Exited(code) => code,
        Ended::Detached => {
            eprintln!("read escape sequence");
            1
        }
    })
}

/// `strata start [-a] [-i] C...`: detached, each name printed; with -a or -i (one container)
/// the exit code is the command's, and with -i the caller's stdin is the container's.
pub fn start(root: &Root, attach: bool, stdin: bool, names: &[String]) -> Result<()> {
    if attach || stdin {
        let [name] = names else {
            bail!("you cannot start and attach multiple containers at once");
        };
        if stdin && verbs::is_tty(root, name)? && !attach::is_terminal(0) {
            eprintln!("strata: {}", attach::NOT_A_TTY);
            std::process::exit(1);
        }
        let code = match verbs::start(root, name, true, stdin)? {
            None => 0,
            Some(o) => {
                if let Some(e) = o.error {
                    eprintln!("strata: {e}");
                }
                o.code
            }
        };
        std::process::exit(code);
    }
    each(names, |n| match verbs::start(root, n, false, false)? {
        Some(o) => match o.error {
            Some(e) => bail!("{e}"),
            None => Ok(()),
        },
        None => Ok(()),
    })
}

/// `strata inspect C...`: Docker's JSON (4-space indented), then an error for any not found.
pub fn inspect(root: &Root, names: &[String]) -> Result<()> {
    let (found, missing) = crate::container::inspect::inspect(root, names)?;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&found, &mut ser)?;
    println!("{}", String::from_utf8_lossy(&buf));
    if !missing.is_empty() {
        bail!("No such container: {}", missing.join(", "));
    }
    Ok(())
}

/// `strata wait C...`: each exit code, one a line.
pub fn wait(root: &Root, names: &[String]) -> Result<()> {
    for n in names {
        println!("{}", verbs::wait(root, n)?);
    }
    Ok(())
}

/// Run `f` on each container named, printing each name as Docker does; the first error is
/// reported for each that failed and the result fails if any did.
pub fn each(names: &[String], f: impl Fn(&str) -> Result<()>) -> Result<()> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("strata: {}", format!("{e:#}").replace('\n', " "));
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::end_flags_at_positional as end;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn flags_end_at_the_image_or_container() {
        assert_eq!(
            end(v("strata run -u 0 img id -u")),
            v("strata run -u 0 img -- id -u")
        );
        assert_eq!(
            end(v("strata --root /r run --rm -e A=1 img")),
            v("strata --root /r run --rm -e A=1 img")
        );
        assert_eq!(
            end(v("strata run --name=x img -- ls")),
            v("strata run --name=x img -- ls")
        );
        assert_eq!(
            end(v("strata exec -w /t c ls -l")),
            v("strata exec -w /t c -- ls -l")
        );
        assert_eq!(end(v("strata ps -a")), v("strata ps -a"));
        assert_eq!(
            end(v("strata volume create run x")),
            v("strata volume create run x")
        );
    }
}
