//! `strata cp [-a] [-L] SRC DST`: parse the two sides as Docker does and hand them to
//! src/container/cp/.

use anyhow::Result;
use clap::Args;

use crate::container::cp::{self, CpRequest, Place};
use crate::state::Root;

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode: keep the source's uid/gid copying out; into a container, own the files
    /// as the container's user.
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow a symlink the source path names.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin).
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    pub src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout).
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    pub dst: String,
}

/// Docker's splitCpArg: an absolute path, or one whose part before the first `:` starts with
/// `.`, is the host's; `NAME:PATH` is a container's.
pub fn place(arg: &str) -> Place {
    if arg == "-" {
        return Place::Stdio;
    }
    if arg.starts_with('/') {
        return Place::Host(arg.into());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => Place::Container {
            name: c.into(),
            path: p.into(),
        },
        _ => Place::Host(arg.into()),
    }
}

pub fn cp(root: &Root, a: CpArgs) -> Result<()> {
    cp::cp(
        root,
        CpRequest {
            src: place(&a.src),
            dst: place(&a.dst),
            archive: a.archive,
            follow: a.follow_link,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_split_as_dockers() {
        assert_eq!(
            place("web:/etc/motd"),
            Place::Container {
                name: "web".into(),
                path: "/etc/motd".into()
            }
        );
        assert_eq!(place("/a:b"), Place::Host("/a:b".into()));
        assert_eq!(place("./a:b"), Place::Host("./a:b".into()));
        assert_eq!(place("rel"), Place::Host("rel".into()));
        assert_eq!(place("-"), Place::Stdio);
    }
}
