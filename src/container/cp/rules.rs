//! Docker's rules for where a copy lands (`docker cp`, pkg/archive's PrepareArchiveCopy): the
//! directory the entries are written into and the name the copied entry takes there.

use anyhow::{bail, Result};

/// What is copied.
#[derive(Clone, Debug)]
pub struct Src {
    pub is_dir: bool,
    /// The path ends in `/.`: a directory's contents, not the directory.
    pub contents_only: bool,
    /// Its base name (what it is called when copied into a directory).
    pub name: String,
}

/// Where it goes, as found.
#[derive(Clone, Debug)]
pub struct Dst {
    /// The path, as given.
    pub path: String,
    pub exists: bool,
    pub is_dir: bool,
}

/// Write into `dir`, naming the copied entry `top` ("." for a directory's contents).
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub dir: String,
    pub top: String,
}

/// The path ends in `/` or `/.`: it must be a directory.
pub fn asserts_dir(p: &str) -> bool {
    p.ends_with('/') || p.ends_with("/.") || p == "."
}

/// Docker's SplitPathDirEntry: (parent, base) of a path, trailing slashes aside.
pub fn split(p: &str) -> (String, String) {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return ("/".into(), ".".into());
    }
    match t.rfind('/') {
        Some(0) => ("/".into(), t[1..].into()),
        Some(i) => (t[..i].into(), t[i + 1..].into()),
        None => (".".into(), t.into()),
    }
}

/// The source's description from its path and kind.
pub fn src(path: &str, is_dir: bool) -> Src {
    let contents_only = is_dir && (path.ends_with("/.") || path == ".");
    Src {
        is_dir,
        contents_only,
        name: split(path).1,
    }
}

pub fn plan(s: &Src, d: &Dst) -> Result<Plan> {
    let (parent, base) = split(&d.path);
    if d.exists && d.is_dir {
        let top = if s.contents_only {
            ".".to_string()
        } else {
            s.name.clone()
        };
        return Ok(Plan {
            dir: d.path.clone(),
            top,
        });
    }
    if d.exists && s.is_dir {
        bail!("cannot copy directory");
    }
    if !d.exists && !s.is_dir && asserts_dir(&d.path) {
        bail!("no such directory");
    }
    Ok(Plan {
        dir: parent,
        top: base,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(path: &str, exists: bool, is_dir: bool) -> Dst {
        Dst {
            path: path.into(),
            exists,
            is_dir,
        }
    }

    fn p(dir: &str, top: &str) -> Plan {
        Plan {
            dir: dir.into(),
            top: top.into(),
        }
    }

    #[test]
    fn dockers_rules() {
        let file = src("/etc/motd", false);
        let dir = src("/etc", true);
        let contents = src("/etc/.", true);
        assert_eq!(contents.name, ".");
        assert!(contents.contents_only && !dir.contents_only);
        // A file: into a directory under its own name, onto a file, or as a new file.
        assert_eq!(
            plan(&file, &d("/h/x", true, true)).unwrap(),
            p("/h/x", "motd")
        );
        assert_eq!(plan(&file, &d("/h/f", true, false)).unwrap(), p("/h", "f"));
        assert_eq!(
            plan(&file, &d("/h/new", false, false)).unwrap(),
            p("/h", "new")
        );
        let e = plan(&file, &d("/h/new/", false, false)).unwrap_err();
        assert_eq!(e.to_string(), "no such directory");
        // A directory: into one, as a new one, never onto a file.
        assert_eq!(
            plan(&dir, &d("/h/x", true, true)).unwrap(),
            p("/h/x", "etc")
        );
        assert_eq!(
            plan(&dir, &d("/h/new/", false, false)).unwrap(),
            p("/h", "new")
        );
        let e = plan(&dir, &d("/h/f", true, false)).unwrap_err();
        assert_eq!(e.to_string(), "cannot copy directory");
        // Its contents (`/.`): into an existing directory, or as a new one.
        assert_eq!(
            plan(&contents, &d("/h/x", true, true)).unwrap(),
            p("/h/x", ".")
        );
        assert_eq!(
            plan(&contents, &d("/h/n", false, false)).unwrap(),
            p("/h", "n")
        );
        assert_eq!(split("rel"), (".".into(), "rel".into()));
        assert_eq!(split("/"), ("/".into(), ".".into()));
    }
}
