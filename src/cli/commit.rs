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
    /// Accepted for Docker compatibility: strata reads the upper without pausing.
    #[arg(short, long)]
    pub pause: bool,
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
