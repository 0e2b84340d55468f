//! `image ls --filter` as Docker takes it.

use super::ops::Row;

/// `image ls --filter`: `dangling=true|false`, `reference=PATTERN` (`*` and `?` within a path
/// component, matched against NAME and NAME:TAG).
pub enum Filter {
    Dangling(bool),
    Reference(String),
}

impl Filter {
    pub(super) fn keeps(&self, r: &Row) -> bool {
        match self {
            Filter::Dangling(d) => (r.repo == "<none>") == *d,
            Filter::Reference(p) => {
                r.repo != "<none>"
                    && (glob(p, &r.repo) || glob(p, &format!("{}:{}", r.repo, r.tag)))
            }
        }
    }
}

/// Shell-style match, as Go's path.Match: `*` and `?` never match `/`.
fn glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    fn m(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], s) || (!s.is_empty() && s[0] != '/' && m(p, &s[1..])),
            (Some('?'), Some(c)) if *c != '/' => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_as_globs() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:1.*", "busybox:1.36"));
        assert!(!glob("*", "me/app"));
        assert!(glob("*/app", "me/app"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("busy", "busybox"));
    }
}
