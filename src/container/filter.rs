//! `ps --filter`: Docker's filters over the container records. Values of one filter are
//! alternatives (any may match); different filters must all match. `before=C` and `since=C`
//! order containers by creation: they name a container, which the caller resolves
//! ([`Filters::order`]), and each value narrows the list further.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::grafts;
use super::records::{Config, State};
use crate::volume::spec::Source;

/// The filters Docker's `ps` takes that strata keeps the facts for.
const KNOWN: &[&str] = &[
    "id", "name", "status", "exited", "label", "ancestor", "volume", "before", "since",
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
            .filter(|(k, _)| !matches!(k.as_str(), "before" | "since"))
            .all(|(k, vs)| vs.iter().any(|v| one(k, v, c, s)))
    }

    /// The containers `before=` and `since=` name, for the caller to resolve.
    pub fn order(&self) -> Vec<(Order, &str)> {
        let of = |k: &str, o: Order| {
            self.0
                .get(k)
                .into_iter()
                .flatten()
                .map(move |v| (o, v.as_str()))
        };
        of("before", Order::Before)
            .chain(of("since", Order::Since))
            .collect()
    }
}

/// Which side of a named container's creation a `ps` row must be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Created before it (`before=C`).
    Before,
    /// Created after it (`since=C`).
    Since,
}

/// The creation window the resolved `before=`/`since=` containers leave: (after, before),
/// as (created, id) pairs, the narrowest of each kind.
#[derive(Debug, Default)]
pub struct Window {
    after: Option<(String, String)>,
    before: Option<(String, String)>,
}

impl Window {
    /// Narrow the window by the container `(created, id)` on side `o`.
    pub fn narrow(&mut self, o: Order, created: &str, id: &str) {
        let key = (created.to_string(), id.to_string());
        match o {
            Order::Since => {
                if self.after.as_ref().is_none_or(|a| key > *a) {
                    self.after = Some(key);
                }
            }
            Order::Before => {
                if self.before.as_ref().is_none_or(|b| key < *b) {
                    self.before = Some(key);
                }
            }
        }
    }

    /// Is a container made at `created` (with `id`) inside the window?
    pub fn holds(&self, created: &str, id: &str) -> bool {
        let key = (created.to_string(), id.to_string());
        self.after.as_ref().is_none_or(|a| key > *a)
            && self.before.as_ref().is_none_or(|b| key < *b)
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

#[cfg(test)]
mod tests {
    use super::{Filters, Order, Window};

    #[test]
    fn before_and_since_are_known_and_resolved_by_the_caller() {
        let f = Filters::parse(&["since=a".into(), "before=b".into()]).unwrap();
        assert_eq!(f.order(), vec![(Order::Before, "b"), (Order::Since, "a")]);
        assert!(!f.implies_all());
    }

    #[test]
    fn the_window_keeps_the_narrowest_bounds() {
        let mut w = Window::default();
        w.narrow(Order::Since, "2026-01-01T00:00:01Z", "a");
        w.narrow(Order::Since, "2026-01-01T00:00:03Z", "c");
        w.narrow(Order::Before, "2026-01-01T00:00:09Z", "z");
        assert!(!w.holds("2026-01-01T00:00:02Z", "b"));
        assert!(!w.holds("2026-01-01T00:00:03Z", "c"));
        assert!(w.holds("2026-01-01T00:00:04Z", "d"));
        assert!(!w.holds("2026-01-01T00:00:09Z", "z"));
    }
}
