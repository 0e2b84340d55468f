//! `strata diff CONTAINER`: Docker's `A`, `C` and `D` lines of what the container changed,
//! from its upper layer only (`changes`), mountpoints of volumes, binds and tmpfs left out.

use anyhow::Result;

use super::changes::{changes, Target};

/// The lines `diff` prints, in Docker's order.
pub fn diff(t: &Target) -> Result<Vec<String>> {
    Ok(changes(t)?
        .into_iter()
        .filter(|c| !c.mountpoint)
        .map(|c| format!("{} /{}", c.kind.letter(), c.path.display()))
        .collect())
}
