//! Docker's init layer: /etc/hostname, /etc/hosts and /etc/resolv.conf made for each container
//! in its directory and bound over the image's, so they never reach the container's upper
//! (`diff` and `commit` leave them out) and follow the container's hostname and network.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::grafts::{GraftSpec, Kind};
use crate::launcher::Network;

pub const FILES: &[(&str, &str)] = &[
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
];

/// What Docker writes for a container without a network of its own to offer: localhost.
fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

/// The host's resolv.conf; for a network namespace of its own, without nameservers on the
/// host's loopback, which it cannot reach (Docker filters them so).
fn resolv(network: Network) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    match network {
        Network::Host => host,
        Network::None => host
            .lines()
            .filter(|l| {
                let mut f = l.split_whitespace();
                !(f.next() == Some("nameserver")
                    && f.next()
                        .is_some_and(|a| a.starts_with("127.") || a == "::1"))
            })
            .map(|l| format!("{l}\n"))
            .collect(),
    }
}

/// Write the files into the container's directory.
pub fn write(dir: &Path, hostname: &str, network: Network) -> Result<()> {
    let hosts = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_else(|_| hosts(hostname)),
        Network::None => hosts(hostname),
    };
    for (name, text) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv(network)),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

/// Binds of the files at their /etc paths, for each the user did not graft there.
pub fn grafts(dir: &Path, given: &[GraftSpec]) -> Result<Vec<GraftSpec>> {
    let taken: Vec<_> = given
        .iter()
        .filter_map(|g| super::grafts::parse(g).ok())
        .map(|g| g.target)
        .collect();
    Ok(FILES
        .iter()
        .filter(|(_, dst)| !taken.iter().any(|t| t == Path::new(dst)))
        .map(|(name, dst)| GraftSpec {
            kind: Kind::Volume,
            spec: format!("{}:{dst}", dir.join(name).display()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_their_binds() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "box", Network::None).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("hostname")).unwrap(),
            "box\n"
        );
        let h = fs::read_to_string(d.path().join("hosts")).unwrap();
        assert!(h.starts_with("127.0.0.1\tlocalhost\n") && h.ends_with("127.0.1.1\tbox\n"));
        let r = fs::read_to_string(d.path().join("resolv.conf")).unwrap();
        assert!(!r.lines().any(|l| l.starts_with("nameserver 127.")), "{r}");
        let user = GraftSpec {
            kind: Kind::Volume,
            spec: "/srv/hosts:/etc/hosts:ro".into(),
        };
        let g = grafts(d.path(), &[user]).unwrap();
        let targets: Vec<_> = g
            .iter()
            .map(|g| g.spec.rsplit(':').next().unwrap().to_string())
            .collect();
        assert_eq!(targets, ["/etc/hostname", "/etc/resolv.conf"]);
        assert!(g[0].spec.starts_with('/'));
    }
}
