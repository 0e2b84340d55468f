//! `strata volume create|ls|inspect|rm|prune`: the volume store from the command line, with
//! Docker's output formats.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{anyhow, bail, Result};
use serde_json::json;

use crate::state::Root;
use crate::volume::store::{rfc3339, Store, Volume};

pub fn create(root: &Root, name: Option<&str>, labels: &[String]) -> Result<()> {
    let labels = parse_labels(labels)?;
    let s = Store::open(root)?;
    let (v, _) = s.create(name, labels)?;
    println!("{}", v.name);
    Ok(())
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("label {l:?}: expected KEY=VALUE");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// One `--filter`: name=SUBSTRING, label=KEY, label=KEY=VALUE, dangling=true|false.
enum Filter {
    Name(String),
    Label(String, Option<String>),
    Dangling(bool),
}

fn parse_filter(f: &str) -> Result<Filter> {
    let (k, v) = f
        .split_once('=')
        .ok_or_else(|| anyhow!("filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "name" => Filter::Name(v.to_string()),
        "label" => match v.split_once('=') {
            Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
            None => Filter::Label(v.to_string(), None),
        },
        "dangling" => match v {
            "true" | "1" => Filter::Dangling(true),
            "false" | "0" => Filter::Dangling(false),
            _ => bail!("filter {f:?}: dangling takes true or false"),
        },
        _ => bail!("filter {f:?}: unknown filter (name, label, dangling)"),
    })
}

fn parse_filters(filters: &[String]) -> Result<Vec<Filter>> {
    filters.iter().map(|f| parse_filter(f)).collect()
}

fn matches(s: &Store, v: &Volume, filters: &[Filter]) -> Result<bool> {
    for f in filters {
        let ok = match f {
            Filter::Name(n) => v.name.contains(n.as_str()),
            Filter::Label(k, None) => v.meta.labels.contains_key(k),
            Filter::Label(k, Some(val)) => v.meta.labels.get(k) == Some(val),
            Filter::Dangling(d) => s.users(&v.name)?.is_empty() == *d,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn ls(root: &Root, quiet: bool, filters: &[String]) -> Result<()> {
    let filters = parse_filters(filters)?;
    let s = Store::open(root)?;
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(out, "DRIVER    VOLUME NAME")?;
    }
    for v in s.list()? {
        if !matches(&s, &v, &filters)? {
            continue;
        }
        if quiet {
            writeln!(out, "{}", v.name)?;
        } else {
            writeln!(out, "{:<10}{}", "local", v.name)?;
        }
    }
    Ok(())
}

pub fn inspect(root: &Root, names: &[String]) -> Result<()> {
    let s = Store::open(root)?;
    let mut all = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let Some(v) = s.get(n)? else {
            missing.push(n.as_str());
            continue;
        };
        let used: Vec<_> = s
            .users(n)?
            .iter()
            .map(|u| json!({"Mountpoint": u.mountpoint, "Pid": u.pid}))
            .collect();
        all.push(json!({
            "CreatedAt": rfc3339(v.meta.created),
            "Driver": "local",
            "Labels": v.meta.labels,
            "Mountpoint": s.data(n),
            "Name": v.name,
            "Options": {},
            "Scope": "local",
            "UsedBy": used,
        }));
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&all, &mut ser)?;
    println!("{}", String::from_utf8_lossy(&buf));
    if !missing.is_empty() {
        bail!("no such volume: {}", missing.join(", "));
    }
    Ok(())
}

pub fn rm(root: &Root, names: &[String]) -> Result<()> {
    let s = Store::open(root)?;
    let mut failed = Vec::new();
    for n in names {
        match s.remove(n) {
            Ok(()) => println!("{n}"),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

pub fn prune(root: &Root, filters: &[String]) -> Result<()> {
    let filters = parse_filters(filters)?;
    let s = Store::open(root)?;
    let mut gone = Vec::new();
    let mut bytes = 0;
    for v in s.list()? {
        if !s.users(&v.name)?.is_empty() || !matches(&s, &v, &filters)? {
            continue;
        }
        let size = s.size(&v.name);
        s.remove(&v.name)?;
        bytes += size;
        gone.push(v.name);
    }
    if !gone.is_empty() {
        println!("Deleted Volumes:");
        for n in &gone {
            println!("{n}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human(bytes));
    Ok(())
}

/// Docker's size format: four significant digits, powers of 1000 (1.5kB, 12.29kB, 12MB).
fn human(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = (v.max(1.0).log10().floor() as usize) + 1;
    let s = format!("{v:.*}", 4usize.saturating_sub(int_digits));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1500), "1.5kB");
        assert_eq!(human(12_000_000), "12MB");
        assert_eq!(human(12_288), "12.29kB");
        assert_eq!(human(999), "999B");
    }

    #[test]
    fn filters() {
        assert!(
            matches!(parse_filter("label=a=b").unwrap(), Filter::Label(k, Some(v)) if k == "a" && v == "b")
        );
        assert!(matches!(
            parse_filter("dangling=true").unwrap(),
            Filter::Dangling(true)
        ));
        assert!(parse_filter("size=3").is_err());
        assert!(parse_filter("dangling=maybe").is_err());
    }
}
