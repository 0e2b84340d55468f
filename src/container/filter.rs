//! `ps --filter`: Docker's filters over the container records. Values of one filter are
//! alternatives (any may match); different filters must all match.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::grafts;
use super::records::{Config, State};
use crate::volume::spec::Source;

/// The filters Docker's `ps` takes that strata keeps the facts for.
const KNOWN: &[&str] = &[
    "id", "name", "status", "exited", "label", "ancestor", "volume",
];

/// Docker's container states.
const STATUSES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];

#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parse each `--filter KEY=VALUE`, with Docker's errors.
    pub fn parse(given: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for g in given {
            let Some((k, v)) = g.split_once('=') else {
                bail!("invalid argument {g:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)");
            };
            let k = k.trim().to_ascii_lowercase();
            if !KNOWN.contains(&k.as_str()) {
                bail!("Invalid filter '{k}'");
            }
            if k == "status" && !STATUSES.contains(&v) {
                bail!("Invalid filter 'status={v}'");
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                bail!("strconv.Atoi: parsing {v:?}: invalid syntax");
            }
            f.0.entry(k).or_default().push(v.to_string());
        }
        Ok(f)
    }

    /// A status filter shows stopped containers without -a, as Docker's does.
    pub fn implies_all(&self) -> bool {
        self.0.contains_key("status")
    }

    pub fn matches(&self, c: &Config, s: &State) -> bool {
        self.0
            .iter()
            .all(|(k, vs)| vs.iter().any(|v| one(k, v, c, s)))
    }
}

fn one(key: &str, v: &str, c: &Config, s: &State) -> bool {
    match key {
        "id" => c.id.starts_with(v),
        "name" => c.name.contains(v.trim_start_matches('/')),
        "status" => s.status == v,
        "exited" => s.status == "exited" && v.parse() == Ok(s.exit_code),
        "label" => match v.split_once('=') {
            Some((k, val)) => c.labels.get(k).is_some_and(|x| x == val),
            None => c.labels.contains_key(v),
        },
        "ancestor" => {
            let id = c.image_id.as_deref().unwrap_or("");
            c.image == v
                || (!v.contains(':') && c.image == format!("{v}:latest"))
                || (!id.is_empty() && (id == v || id.trim_start_matches("sha256:").starts_with(v)))
        }
        "volume" => c
            .grafts
            .iter()
            .filter_map(|g| grafts::parse(g).ok())
            .any(|g| {
                g.target.as_os_str() == v
                    || matches!(&g.source, Source::Volume(Some(n)) if n == v)
                    || matches!(&g.source, Source::Bind(p) if p.as_os_str() == v)
            }),
        _ => false,
    }
}
