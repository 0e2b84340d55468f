//! `strata trace MOUNT [--json]`: print the mount's events as they happen, one a line.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

pub fn trace(mount: &Path, json: bool) -> Result<()> {
    let sub = crate::daemon::trace::subscribe(mount)?;
    let mp = sub.mountpoint.clone();
    eprintln!("tracing {} (Ctrl-C stops)", mp.display());
    let mut out = std::io::stdout().lock();
    for e in sub {
        let e = e?;
        let line = if json {
            serde_json::to_string(&e)?
        } else {
            e.line()
        };
        // A closed pipe (trace | head) ends the trace quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
    eprintln!("{} is no longer mounted", mp.display());
    Ok(())
}
