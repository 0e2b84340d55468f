//! `strata diff CONTAINER` and `strata commit [-m MSG] [-c INSTRUCTION] CONTAINER [NAME[:TAG]]`:
//! parsing and printing only; the work is in `crate::image::{diff, commit}`.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use crate::container::layers::target;
use crate::image;
use crate::state::Root;

#[derive(Args)]
pub struct CommitArgs {
    /// Commit message (the history entry's comment).
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author (e.g. "Jane <jane@example.com>").
    #[arg(short, long)]
    pub author: Option<String>,
    /// A Dockerfile instruction for the new image's config: CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, VOLUME, WORKDIR (repeatable).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// strata commits without pausing the container: `--pause=false` says so; asking for a
    /// pause (`-p`, `--pause=true`) is refused.
    #[arg(short, long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub pause: Option<bool>,
    pub container: String,
    /// NAME[:TAG] for the new image (untagged without it).
    pub name: Option<String>,
}

pub fn diff(root: &Root, container: &str) -> Result<()> {
    let t = target(root, container)?;
    let mut out = std::io::stdout().lock();
    for l in image::diff::diff(&t)? {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

pub fn commit(root: &Root, a: CommitArgs) -> Result<()> {
    if a.pause == Some(true) {
        anyhow::bail!(
            "commit --pause is not supported: strata reads the container's upper without pausing it (--pause=false)"
        );
    }
    let t = target(root, &a.container)?;
    let id = image::commit::commit(
        root,
        image::commit::Request {
            target: &t,
            message: a.message.as_deref(),
            author: a.author.as_deref(),
            changes: &a.changes,
            name: a.name.as_deref(),
        },
    )
    .map_err(|e| e.context(format!("commit {}", a.container)))?;
    println!("{id}");
    Ok(())
}
