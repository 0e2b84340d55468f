//! `strata image import|ls|inspect|history|save|tag|rm|prune`: the image store from the command line,
//! with Docker's output formats. Parsing and printing only; the work is in `crate::image`.

use std::io::{IsTerminal, Write};

use anyhow::{bail, Result};

use crate::image::{import, ops};
use crate::state::Root;

pub fn import(root: &Root, source: &str, name: Option<&str>) -> Result<()> {
    let mut progress = import::Progress::new(std::io::stdout().is_terminal());
    let id = import::import(root, source, name, &mut progress)?;
    println!("{id}");
    Ok(())
}

pub fn save(
    root: &Root,
    name: &str,
    dir: Option<&std::path::Path>,
    format: &str,
    output: Option<&std::path::Path>,
) -> Result<()> {
    use crate::image::save::{save, Format};
    let format = match format {
        "oci" => Format::Oci,
        "docker-archive" => Format::DockerArchive,
        f => bail!("--format {f:?}: oci or docker-archive"),
    };
    let out = match (dir, output) {
        (Some(_), Some(_)) => bail!("give DIR or -o, not both"),
        (Some(d), None) | (None, Some(d)) => d,
        (None, None) => bail!("image save: where to? DIR or -o FILE"),
    };
    save(root, name, format, out).map_err(|e| e.context(format!("save {name}")))?;
    Ok(())
}

/// `--filter` values: dangling=true|false, reference=PATTERN.
fn parse_filter(f: &str) -> Result<ops::Filter> {
    match f.split_once('=') {
        Some(("dangling", "true" | "1")) => Ok(ops::Filter::Dangling(true)),
        Some(("dangling", "false" | "0")) => Ok(ops::Filter::Dangling(false)),
        Some(("dangling", _)) => bail!("filter {f:?}: dangling takes true or false"),
        Some(("reference", p)) => Ok(ops::Filter::Reference(p.to_string())),
        _ => bail!("filter {f:?}: unknown filter (dangling, reference)"),
    }
}

pub fn ls(root: &Root, quiet: bool, no_trunc: bool, filters: &[String]) -> Result<()> {
    let filters = filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>>>()?;
    let rows = ops::ls(root, &filters)?;
    let id = |i: &str| {
        if no_trunc {
            i.to_string()
        } else {
            ops::short(i)
        }
    };
    let mut out = std::io::stdout().lock();
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            if seen.insert(r.id.clone()) {
                writeln!(out, "{}", id(&r.id))?;
            }
        }
        return Ok(());
    }
    let now = crate::image::import::now() as i64;
    let mut t = vec![cells(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])];
    for r in rows {
        t.push(vec![
            r.repo,
            r.tag,
            id(&r.id),
            ago(now, r.created),
            human_size(r.size, 3),
        ]);
    }
    write!(out, "{}", table(&t))?;
    Ok(())
}

pub fn inspect(root: &Root, names: &[String]) -> Result<()> {
    let (all, missing) = ops::inspect(root, names)?;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&all, &mut ser)?;
    println!("{}", String::from_utf8_lossy(&buf));
    if !missing.is_empty() {
        bail!("No such image: {}", missing.join(", "));
    }
    Ok(())
}

pub fn history(root: &Root, name: &str, no_trunc: bool, quiet: bool) -> Result<()> {
    let rows = ops::history(root, name)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for r in rows {
            writeln!(out, "{}", r.image)?;
        }
        return Ok(());
    }
    let now = crate::image::import::now() as i64;
    let mut t = vec![cells(&[
        "IMAGE",
        "CREATED",
        "CREATED BY",
        "SIZE",
        "COMMENT",
    ])];
    for r in rows {
        let by = r.created_by.replace('\t', " ");
        t.push(vec![
            r.image,
            ago(now, r.created),
            if no_trunc { by } else { ellipsis(&by, 45) },
            human_size(r.size, 3),
            r.comment,
        ]);
    }
    write!(out, "{}", table(&t))?;
    Ok(())
}

pub fn mount(root: &Root, name: &str, dir: &std::path::Path) -> Result<()> {
    crate::daemon::mount(crate::image::mount::request(root, name, dir)?)
}

pub fn umount(dir: &std::path::Path) -> Result<()> {
    crate::daemon::umount(dir)
}

pub fn tag(root: &Root, src: &str, dst: &str) -> Result<()> {
    ops::tag(root, src, dst)
}

pub fn rm(root: &Root, names: &[String], force: bool) -> Result<()> {
    let (lines, errs) = ops::rm(root, names, force);
    for l in lines {
        println!("{l}");
    }
    if !errs.is_empty() {
        bail!("{}", errs.join("; "));
    }
    Ok(())
}

pub fn prune(root: &Root) -> Result<()> {
    let (gone, bytes) = ops::prune(root)?;
    if !gone.is_empty() {
        println!("Deleted Images:");
        for g in &gone {
            println!("deleted: {g}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes, 4));
    Ok(())
}

fn cells(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

/// Columns as Docker's tabwriter lays them out: each at least 10 wide and 3 more than its
/// widest cell, the last one unpadded.
fn table(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let width: Vec<usize> = (0..n)
        .map(|c| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max();
            (w.unwrap_or(0) + 3).max(10)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width[c] - cell.chars().count()));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// Docker's `N units ago` (go-units' HumanDuration).
fn ago(now: i64, then: Option<i64>) -> String {
    let Some(t) = then else {
        return "N/A".into();
    };
    let secs = (now - t).max(0);
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    let d = if secs < 1 {
        "Less than a second".to_string()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    };
    format!("{d} ago")
}

/// go-units' size format: `digits` significant digits, powers of 1000 (4.26MB, 12.3kB, 0B).
fn human_size(b: u64, digits: usize) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = (v.max(1.0).log10().floor() as usize) + 1;
    let s = format!("{v:.*}", digits.saturating_sub(int_digits));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", units[i])
}

/// At most `max` characters, the last of them `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_dockers() {
        assert_eq!(human_size(4_261_000, 3), "4.26MB");
        assert_eq!(human_size(12_288, 3), "12.3kB");
        assert_eq!(human_size(0, 3), "0B");
        assert_eq!(human_size(12_288, 4), "12.29kB");
        assert_eq!(ago(100, Some(100)), "Less than a second ago");
        assert_eq!(ago(100, Some(70)), "30 seconds ago");
        assert_eq!(ago(10_000, Some(10_000 - 90)), "About a minute ago");
        assert_eq!(ago(86400 * 20, Some(0)), "2 weeks ago");
        assert_eq!(ago(0, None), "N/A");
    }

    #[test]
    fn tables_pad_like_dockers_tabwriter() {
        let t = table(&[
            cells(&["REPOSITORY", "TAG", "SIZE"]),
            cells(&["busybox", "latest", "1MB"]),
        ]);
        assert_eq!(
            t,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    1MB\n"
        );
        assert_eq!(ellipsis("abcdef", 4), "abc…");
    }
}
