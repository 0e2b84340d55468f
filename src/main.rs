//! strata: a userspace union filesystem with overlayfs semantics, served over FUSE.

mod cli;
mod container;
mod daemon;
mod explain;
mod fds;
mod fuse;
mod image;
mod inode;
mod launcher;
mod start;
mod state;
mod sys;
mod time;
mod union;
mod volume;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A userspace union filesystem (overlayfs semantics over FUSE)"
)]
struct Cli {
    #[command(flatten)]
    root: RootArg,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct RootArg {
    /// State root: volumes and their records [default: /var/lib/strata; unprivileged:
    /// ~/.local/share/strata]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount the merged view of lower layers and an optional writable upper layer.
    Mount(MountArgs),
    /// Unmount a strata mount and wait for its daemon to flush and exit.
    Umount { mountpoint: PathBuf },
    /// Manage volumes: named directories that outlive every mount.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage images: import them into the shared layer store, list, inspect, tag, remove.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Run a command in a new container whose root is a union over ROOTFS-DIR.
    Run(Box<cli::container::RunArgs>),
    /// Create a container (the flags of run) without starting it; prints its id.
    Create(Box<cli::container::RunArgs>),
    /// Stop and start containers again.
    Restart {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(cli::container::ExecArgs),
    /// List containers (running ones; all with -a).
    Ps {
        /// Show all containers, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        /// Docker's filters: id, name, status, exited, label, ancestor, volume (repeatable).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Print a container's log (the output of a container run with -d).
    Logs {
        /// Go on printing what the container writes until it exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines ("all": everything).
        #[arg(short = 'n', long, value_name = "N")]
        tail: Option<String>,
        container: String,
    },
    /// Stop running containers: SIGTERM, then SIGKILL after a grace period.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show what a container changed in its root: Docker's A (added), C (changed) and D
    /// (deleted) lines, read from its writable layer.
    Diff { container: String },
    /// Make a new image of a container's changes: its image's layers plus one layer of them.
    /// Prints the new image id.
    Commit(cli::commit::CommitArgs),
    /// Start stopped containers again, on the same writable layer.
    Start {
        /// Attach: wait for the command and exit with its code.
        #[arg(short, long)]
        attach: bool,
        /// Attach stdin too (and the output, as -a).
        #[arg(short, long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show containers as Docker's JSON.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers' main process.
    Kill {
        /// The signal (name or number).
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers and their writable layers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Watch a mount's copy-ups, whiteouts, opaque dirs, redirects, creates, removals,
    /// renames and writes into grafts as they happen, one a line, until Ctrl-C.
    Trace {
        /// The mount, or any path inside it.
        mount: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Explain paths of a strata mount: which layer supplies each, what hides the others,
    /// whether it was copied up, and how its st_ino was assigned.
    Explain {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The mount (default: the strata mount the path is in, as df finds it); PATH may then
        /// be a path inside it.
        #[arg(long, value_name = "DIR")]
        mount: Option<PathBuf>,
        /// Print JSON (an array, one object per path).
        #[arg(long)]
        json: bool,
    },
    /// Draw the layer stack of a mount, container or image: upper on top, grafts at the side.
    Layers {
        /// A strata mountpoint, a container (name or id) or an image.
        what: String,
        /// Also write the picture as an SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Copy files between a container and the host (or a tar stream on stdin/stdout).
    Cp(cli::cp::CpArgs),
    /// Attach stdin, stdout and stderr to a running container (ctrl-p ctrl-q detaches).
    Attach(cli::container::AttachArgs),
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import an image: an OCI layout DIR[:REF], a docker-archive, a rootfs tar (plain, gzip,
    /// zstd) or a rootfs directory. Prints the image id.
    Import {
        source: String,
        /// NAME[:TAG] (default tag: latest); a docker-archive keeps its own tags without one.
        name: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Full image ids.
        #[arg(long)]
        no_trunc: bool,
        /// Accepted for Docker compatibility: strata keeps no intermediate images.
        #[arg(short, long)]
        all: bool,
        /// dangling=true|false, reference=PATTERN (repeatable: all must match).
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Show images as JSON: id, tags, config, layers, size.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show an image's history, newest first.
    History {
        name: String,
        /// Do not cut the CREATED BY column.
        #[arg(long)]
        no_trunc: bool,
        /// Only image ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save an image as an OCI image layout at DIR, or with `--format docker-archive -o FILE`
    /// as an archive for `docker load`. Layer tars are uncompressed.
    Save {
        name: String,
        /// The OCI layout's directory (created if missing; other images in it are kept).
        dir: Option<PathBuf>,
        /// oci (default) or docker-archive.
        #[arg(long, default_value = "oci")]
        format: String,
        /// The file to write (docker-archive), or the layout's directory (oci).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Mount an image's layers read-only at DIR (every write fails with EROFS).
    Mount { name: String, dir: PathBuf },
    /// Unmount an image mounted with `image mount`.
    Umount { dir: PathBuf },
    /// Give an image another name: SOURCE[:TAG] TARGET[:TAG].
    Tag { src: String, dst: String },
    /// Untag and remove images; their layers go when no image uses them.
    #[command(alias = "remove", alias = "rmi")]
    Rm {
        /// Remove an image with several tags by its id, untagging it everywhere.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every image without a tag that no container uses.
    Prune {
        /// Accepted for Docker compatibility: strata never prompts.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a volume (a random 64-hex-digit name if none is given) and print its name.
    Create {
        name: Option<String>,
        /// Set a label: KEY=VALUE (repeatable).
        #[arg(short, long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
        /// name=SUBSTRING, label=KEY[=VALUE], dangling=true|false (repeatable: all must match).
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// Show volumes as JSON: name, driver, mountpoint, creation time, labels, the mounts using it.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes; refused for a volume a live mount uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no live mount uses.
    Prune {
        /// Accepted for Docker compatibility: strata never prompts.
        #[arg(short, long)]
        force: bool,
        /// label=KEY[=VALUE], name=..., as for ls.
        #[arg(long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
}

#[derive(Args)]
struct MountArgs {
    /// lowerdir=A:B (A top-most),upperdir=U,workdir=W,redirect_dir=on|follow|off|nofollow,ro,allow_other,...
    #[arg(short = 'o', value_name = "OPTIONS", action = clap::ArgAction::Append, required = true)]
    options: Vec<String>,
    /// Stay in the foreground instead of returning once the mount is live.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Foreground with debug logging of every FUSE request.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Write the daemon's log (RUST_LOG=strata=info shows copy-ups, whiteouts and redirects).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Graft a host directory or file at DST: SRC:DST[:ro] (repeatable).
    #[arg(long = "bind", value_name = "SRC:DST[:ro]")]
    binds: Vec<String>,
    /// Graft a volume at DST: NAME:DST[:ro|:nocopy], or DST for a new anonymous volume; a new
    /// empty volume is first filled with what the image has at DST (repeatable).
    #[arg(short = 'v', long = "volume", value_name = "NAME:DST[:OPTS]")]
    volumes: Vec<String>,
    /// Docker's long form: type=bind|volume|tmpfs,source=..,target=..[,readonly]
    /// [,volume-nocopy][,tmpfs-size=..][,tmpfs-mode=..] (repeatable).
    #[arg(long = "mount", value_name = "SPEC")]
    mounts: Vec<String>,
    /// An in-memory directory at DST, gone at unmount: DST[:size=..,mode=..] (repeatable).
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    tmpfs: Vec<String>,
    /// [SOURCE] MOUNTPOINT (SOURCE names the mount, as with mount(8)).
    #[arg(num_args = 1..=2, required = true, value_name = "MOUNTPOINT")]
    paths: Vec<String>,
}

/// The fuse-overlayfs command line: `strata [-f] -o OPTIONS [SOURCE] MOUNTPOINT`, which is also
/// what mount.fuse3 runs for `mount -t fuse.strata SOURCE MOUNTPOINT -o OPTIONS`.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Compat {
    #[command(flatten)]
    root: RootArg,
    #[command(flatten)]
    args: MountArgs,
}

/// `strata umount MOUNTPOINT` by itself. Mounting and unmounting are often a short process's
/// whole work (a script, a container engine), so they are parsed without building every other
/// verb's parser (`mount_verbs`): the whole command tree cost each of them a third of a
/// millisecond.
#[derive(Parser)]
#[command(
    name = "strata umount",
    about = "Unmount a strata mount and wait for its daemon to flush and exit."
)]
struct UmountVerb {
    #[command(flatten)]
    root: RootArg,
    mountpoint: PathBuf,
}

/// Runs `strata mount` and `strata umount` through their own parsers; None for anything else.
/// `mount_options`: the command line has `-o lowerdir=...`, so `umount` there is a mount's
/// SOURCE (as mount.fuse3 passes it), not the verb.
fn mount_verbs(argv: &[String], mount_options: bool) -> Option<anyhow::Result<()>> {
    let first = argv.get(1).map(String::as_str)?;
    let rest = std::iter::once(format!("strata {first}")).chain(argv[2..].iter().cloned());
    match first {
        // The fuse-overlayfs command line's parser, named as the verb.
        "mount" => {
            let m = <Compat as clap::CommandFactory>::command()
                .name("strata mount")
                .about(
                    "Mount the merged view of lower layers and an optional writable upper layer.",
                )
                .get_matches_from(rest);
            let v =
                <Compat as clap::FromArgMatches>::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
            Some(mount(v.args, v.root))
        }
        "umount" if !mount_options => {
            let v = UmountVerb::parse_from(rest);
            Some(cli::mount::umount(&v.mountpoint))
        }
        _ => None,
    }
}

fn grafts(a: &MountArgs) -> anyhow::Result<Vec<volume::spec::Graft>> {
    use volume::spec;
    let mut out = Vec::new();
    for s in &a.binds {
        out.push(spec::bind(s)?);
    }
    for s in &a.volumes {
        out.push(spec::volume(s)?);
    }
    for s in &a.mounts {
        out.push(spec::mount(s)?);
    }
    for s in &a.tmpfs {
        out.push(spec::tmpfs(s)?);
    }
    spec::order(out)
}

fn mount(a: MountArgs, root: RootArg) -> anyhow::Result<()> {
    let grafts = grafts(&a)?;
    let (source, mountpoint) = match a.paths.as_slice() {
        [mp] => (None, PathBuf::from(mp)),
        [src, mp] => (Some(src.clone()), PathBuf::from(mp)),
        _ => unreachable!("clap limits the count"),
    };
    if a.debug && std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "strata=debug");
    }
    cli::mount::mount(cli::mount::MountRequest {
        options: a.options,
        source,
        mountpoint,
        foreground: a.foreground || a.debug,
        log: a.log,
        grafts,
        root: root.root,
    })
}

/// `/sbin/umount.strata MOUNTPOINT [-flnrv] [-t TYPE]`: util-linux's umount runs this for mounts
/// that strata registered with `helper=strata`, so a plain `umount` waits for the daemon to exit.
fn umount_helper(args: &[String]) -> anyhow::Result<()> {
    let mut lazy = false;
    let mut mountpoint = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-t" | "-N" => {
                it.next();
            }
            s if s.starts_with('-') => lazy |= s.contains('l'),
            s => mountpoint = mountpoint.or(Some(PathBuf::from(s))),
        }
    }
    let mp = mountpoint.ok_or_else(|| anyhow::anyhow!("usage: umount.strata MOUNTPOINT"))?;
    cli::mount::umount_helper(&mp, lazy)
}

fn volume_cmd(root: &state::Root, v: VolumeCmd) -> anyhow::Result<()> {
    use cli::volume;
    match v {
        VolumeCmd::Create { name, labels } => volume::create(root, name.as_deref(), &labels),
        VolumeCmd::Ls { quiet, filters } => volume::ls(root, quiet, &filters),
        VolumeCmd::Inspect { names } => volume::inspect(root, &names),
        VolumeCmd::Rm { names } => volume::rm(root, &names),
        VolumeCmd::Prune { force: _, filters } => volume::prune(root, &filters),
    }
}

fn image_cmd(root: &state::Root, c: ImageCmd) -> anyhow::Result<()> {
    use cli::image;
    match c {
        ImageCmd::Import { source, name } => image::import(root, &source, name.as_deref()),
        ImageCmd::Ls {
            quiet,
            no_trunc,
            all: _,
            filters,
        } => image::ls(root, quiet, no_trunc, &filters),
        ImageCmd::Inspect { names } => image::inspect(root, &names),
        ImageCmd::History {
            name,
            no_trunc,
            quiet,
        } => image::history(root, &name, no_trunc, quiet),
        ImageCmd::Save {
            name,
            dir,
            format,
            output,
        } => image::save(root, &name, dir.as_deref(), &format, output.as_deref()),
        ImageCmd::Mount { name, dir } => image::mount(root, &name, &dir),
        ImageCmd::Umount { dir } => image::umount(&dir),
        ImageCmd::Tag { src, dst } => image::tag(root, &src, &dst),
        ImageCmd::Rm { force, names } => image::rm(root, &names, force),
        ImageCmd::Prune { force: _ } => image::prune(root),
    }
}

fn main() {
    fds::note_inherited();
    real_main();
    finish(0)
}

/// Prints `e` as one line (its whole context chain) and ends the process with `code`.
fn fail(e: &anyhow::Error, code: i32) -> ! {
    eprintln!("strata: {}", format!("{e:#}").replace('\n', " "));
    finish(code)
}

/// Ends the process once its output is flushed, skipping the C++ static destructors that
/// RocksDB links in: they only free memory, and cost every short command about a millisecond.
fn finish(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    unsafe { libc::_exit(code) }
}

fn real_main() {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    if prog.starts_with("umount.") {
        if let Err(e) = umount_helper(&argv[1..]) {
            fail(&e, 1);
        }
        return;
    }
    let first = argv.get(1).map(String::as_str).unwrap_or("");
    // A verb (or a global flag) goes to the verbs' parser; anything else is the fuse-overlayfs
    // command line. The verbs are clap's own list, so a new one needs no entry here.
    // mount.fuse3 runs `strata SOURCE MOUNTPOINT -o lowerdir=...`: a SOURCE that happens to be
    // named like a verb (`run`, `ps`) is still a mount.
    let mount_options = argv
        .windows(2)
        .any(|w| w[0] == "-o" && w[1].contains("lowerdir="))
        || argv.iter().any(|a| {
            a.starts_with("-olowerdir=") || a.starts_with("-o") && a.contains(",lowerdir=")
        });
    if let Some(result) = mount_verbs(&argv, mount_options) {
        return result.unwrap_or_else(|e| fail(&e, 1));
    }
    // Built once: building clap's command for every verb is a good part of a short command.
    let mut command = <Cli as clap::CommandFactory>::command();
    let is_verb = (first == "mount" || !mount_options)
        && (first.is_empty()
            || first.starts_with("--root")
            || matches!(first, "help" | "--help" | "-h" | "--version" | "-V")
            || command
                .get_subcommands()
                .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first)));
    // Not a verb, and no -o: not a fuse-overlayfs command line either.
    if !is_verb && !argv[1..].iter().any(|a| a.starts_with("-o")) {
        eprintln!("strata: unknown command '{first}' (strata --help lists them)");
        finish(1);
    }
    let result = if is_verb {
        let parsed = command
            .try_get_matches_from_mut(cli::container::end_flags_at_positional(argv.clone()))
            .and_then(|mut m| <Cli as clap::FromArgMatches>::from_arg_matches_mut(&mut m));
        let cli = match parsed {
            Ok(c) => c,
            // Docker's code for a bad `run` command line is 125, as for any failure of its own.
            Err(e) if argv.iter().any(|a| a == "run" || a == "create") && e.use_stderr() => {
                let _ = e.print();
                finish(125);
            }
            Err(e) => e.exit(),
        };
        let root = state::Root::locate(cli.root.root.clone());
        // Verbs that only print die of a closed pipe as ls and cat do (`strata ps | head`),
        // instead of panicking in println!. Those that start daemons keep SIGPIPE ignored: a
        // daemon must never die because a reader went away.
        if matches!(
            cli.cmd,
            Cmd::Ps { .. }
                | Cmd::Logs { .. }
                | Cmd::Diff { .. }
                | Cmd::Inspect { .. }
                | Cmd::Trace { .. }
                | Cmd::Explain { .. }
                | Cmd::Layers { .. }
        ) {
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        }
        match cli.cmd {
            Cmd::Mount(a) => mount(a, cli.root),
            Cmd::Umount { mountpoint } => cli::mount::umount(&mountpoint),
            Cmd::Volume(v) => volume_cmd(&root, v),
            Cmd::Image(c) => image_cmd(&root, c),
            Cmd::Run(a) => match cli::container::run(&root, *a) {
                Ok(code) => finish(code),
                Err(e) => fail(&e, 125),
            },
            Cmd::Create(a) => match cli::container::create(&root, *a) {
                Ok(()) => Ok(()),
                Err(e) => fail(&e, 125),
            },
            Cmd::Restart { time, containers } => cli::container::each(&containers, |c| {
                container::verbs::stop(&root, c, time)?;
                match container::verbs::start(&root, c, false, false)? {
                    Some(o) => match o.error {
                        Some(e) => anyhow::bail!("{e}"),
                        None => Ok(()),
                    },
                    None => Ok(()),
                }
            }),
            Cmd::Exec(a) => match cli::container::exec(&root, a) {
                Ok(code) => finish(code),
                Err(e) => Err(e),
            },
            Cmd::Ps { all, quiet, filter } => cli::container::ps(&root, all, quiet, &filter),
            Cmd::Logs {
                follow,
                tail,
                container,
            } => cli::container::logs(&root, &container, follow, tail.as_deref()),
            Cmd::Stop { time, containers } => {
                cli::container::each(&containers, |c| container::verbs::stop(&root, c, time))
            }
            Cmd::Diff { container } => cli::commit::diff(&root, &container),
            Cmd::Commit(a) => cli::commit::commit(&root, a),
            Cmd::Start {
                attach,
                interactive,
                containers,
            } => cli::container::start(&root, attach, interactive, &containers),
            Cmd::Inspect { containers } => cli::container::inspect(&root, &containers),
            Cmd::Wait { containers } => cli::container::wait(&root, &containers),
            Cmd::Kill { signal, containers } => {
                container::verbs::parse_signal(&signal).and_then(|sig| {
                    cli::container::each(&containers, |c| container::verbs::kill(&root, c, sig))
                })
            }
            Cmd::Rm {
                force,
                volumes,
                containers,
            } => cli::container::each(&containers, |c| {
                container::verbs::rm(&root, c, force, volumes)
            }),
            Cmd::Trace { mount, json } => cli::trace::trace(&mount, json),
            Cmd::Explain { paths, mount, json } => {
                cli::explain::explain(&paths, mount.as_deref(), json)
            }
            Cmd::Layers { what, svg } => cli::layers::layers(&root, &what, svg.as_deref()),
            Cmd::Cp(a) => cli::cp::cp(&root, a),
            Cmd::Attach(a) => match cli::container::attach(&root, a) {
                Ok(code) => finish(code),
                Err(e) => Err(e),
            },
        }
    } else {
        let c = Compat::parse();
        mount(c.args, c.root)
    };
    if let Err(e) = result {
        fail(&e, 1);
    }
}
