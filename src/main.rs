//! strata: a userspace union filesystem with overlayfs semantics, served over FUSE.

mod cli;
mod fuse;
mod inode;
mod sys;
mod union;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A userspace union filesystem (overlayfs semantics over FUSE)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mount the merged view of lower layers and an optional writable upper layer.
    Mount(MountArgs),
    /// Unmount a strata mount and wait for its daemon to flush and exit.
    Umount { mountpoint: PathBuf },
}

#[derive(Args)]
struct MountArgs {
    /// lowerdir=A:B (A top-most),upperdir=U,workdir=W,redirect_dir=on|off,ro,allow_other,...
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
    args: MountArgs,
}

fn mount(a: MountArgs) -> anyhow::Result<()> {
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

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    if prog.starts_with("umount.") {
        if let Err(e) = umount_helper(&argv[1..]) {
            eprintln!("strata: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(1);
        }
        return;
    }
    let first = argv.get(1).map(String::as_str).unwrap_or("");
    let is_verb = matches!(
        first,
        "mount" | "umount" | "help" | "--help" | "-h" | "--version" | "-V" | ""
    );
    let result = if is_verb {
        match Cli::parse().cmd {
            Cmd::Mount(a) => mount(a),
            Cmd::Umount { mountpoint } => cli::mount::umount(&mountpoint),
        }
    } else {
        mount(Compat::parse().args)
    };
    if let Err(e) = result {
        // One line: the whole context chain.
        eprintln!("strata: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
