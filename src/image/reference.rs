//! Image names as Docker's reference grammar has them: `[DOMAIN[:PORT]/]PATH[:TAG]`, the tag
//! `latest` when none is given.

use anyhow::Result;

/// A repository name and its tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ref {
    pub repo: String,
    pub tag: String,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

impl Ref {
    /// Parse NAME[:TAG], refusing what Docker refuses.
    pub fn parse(s: &str) -> Result<Ref> {
        let bad = |why: &str| anyhow::anyhow!("invalid reference format {s:?}: {why}");
        if s.contains('@') {
            return Err(bad("digest references are not supported"));
        }
        let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
            None => (s, "latest"),
        };
        if repo.is_empty() {
            return Err(bad("empty name"));
        }
        if repo.len() > 255 {
            return Err(bad("name longer than 255 characters"));
        }
        if !valid_tag(tag) {
            return Err(bad(
                "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let mut parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 1 && is_domain(parts[0]) {
            let d = parts.remove(0);
            if !valid_domain(d) {
                return Err(bad("bad registry host"));
            }
        }
        if !parts.iter().all(|p| valid_component(p)) {
            return Err(bad(
                "repository names are lowercase letters, digits and separators (. _ __ -)",
            ));
        }
        if parts.len() == 1 && parts[0].len() == 64 && is_hex(parts[0]) {
            return Err(bad("a 64-hex-digit name would read as an image id"));
        }
        // Docker's familiar form: docker.io/library/busybox is busybox.
        let familiar = [
            "docker.io/library/",
            "index.docker.io/library/",
            "docker.io/",
            "index.docker.io/",
        ]
        .iter()
        .find_map(|p| repo.strip_prefix(p))
        .unwrap_or(repo);
        Ok(Ref {
            repo: familiar.to_string(),
            tag: tag.to_string(),
        })
    }
}

pub fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

fn is_domain(p: &str) -> bool {
    p.contains('.')
        || p.contains(':')
        || p == "localhost"
        || p.bytes().any(|c| c.is_ascii_uppercase())
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && host.split('.').all(label_ok)
}

/// alpha-numeric (separator alpha-numeric)*, separator being `.`, `_`, `__` or one or more `-`.
fn valid_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Ref::parse(s).unwrap().to_string()
    }

    #[test]
    fn names_default_to_latest() {
        assert_eq!(r("busybox"), "busybox:latest");
        assert_eq!(r("busybox:1.36"), "busybox:1.36");
        assert_eq!(r("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(r("docker.io/library/busybox:da"), "busybox:da");
        assert_eq!(r("docker.io/me/app"), "me/app:latest");
        assert_eq!(
            r("Registry.example/x_y__z-w:V1.0"),
            "Registry.example/x_y__z-w:V1.0"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for s in [
            "",
            "Busybox",
            "a:",
            "a:.x",
            "a//b",
            "-a",
            "a-",
            "a@sha256:00",
            "a..b",
            "a___b",
            &"0".repeat(64),
        ] {
            assert!(Ref::parse(s).is_err(), "{s:?} accepted");
        }
    }
}
