//! Mount options, as overlayfs and fuse-overlayfs take them: `-o lowerdir=A:B,upperdir=U,...`.
//! Commas and colons inside a path are escaped with a backslash, as for overlayfs.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::union::idmap::{parse_ranges, Range};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct MountOptions {
    /// Top-most first.
    pub lowerdir: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// redirect_dir: follow the redirects a layer holds (on, follow, off), and write them when a
    /// lower or merged directory is renamed (on only).
    pub redirect_follow: bool,
    pub redirect_create: bool,
    pub read_only: bool,
    pub allow_other: Option<bool>,
    pub allow_root: bool,
    /// Asked for explicitly; root mounts have it regardless (see daemon::kernel).
    pub default_permissions: bool,
    pub fsname: Option<String>,
    /// Overlay metadata in user.overlay.* even when trusted.* is writable.
    pub userxattr: bool,
    /// Flags handed to the kernel as they are (nodev, nosuid, noexec, noatime, ...).
    pub kernel_flags: Vec<String>,
    /// fuse-overlayfs's uidmapping= and gidmapping= (see union::idmap).
    pub uidmapping: Vec<Range>,
    pub gidmapping: Vec<Range>,
    /// squash_to_root, squash_to_uid=, squash_to_gid= (the latter two win over the first).
    pub squash_to_root: bool,
    pub squash_to_uid: Option<u32>,
    pub squash_to_gid: Option<u32>,
    /// Directories report st_nlink 1.
    pub static_nlink: bool,
    /// POSIX ACL xattrs are refused.
    pub noacl: bool,
    /// fsync=0: fsync and fsyncdir return at once (copy-ups still sync).
    pub no_fsync: bool,
    /// Threads serving requests: threaded=0 is one, max_threads=N at most N.
    pub threaded: Option<bool>,
    pub max_threads: Option<usize>,
    /// `passthrough=off`: every read and write goes through the daemon, even where the kernel
    /// could hand a file's I/O to its backing file (FUSE passthrough, root only).
    pub no_passthrough: bool,
}

/// Split on unescaped `sep`, removing the escaping backslashes.
pub(crate) fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                if n != sep && n != '\\' && n != ',' && n != ':' {
                    out.last_mut().unwrap().push('\\');
                }
                out.last_mut().unwrap().push(n);
            }
        } else if c == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(c);
        }
    }
    out
}

/// Split a `-o` string on unescaped commas, keeping escapes for the values to undo.
pub(crate) fn split_options(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.last_mut().unwrap().push('\\');
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ',' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.retain(|o| !o.is_empty());
    out
}

/// (follow, create) for a `redirect_dir=` value, as the kernel has them. `off` follows the
/// redirects already in the layers, as the kernel does with its default
/// redirect_always_follow=Y; `nofollow` ignores them.
fn redirect_mode(v: &str) -> Result<(bool, bool)> {
    match v {
        "on" => Ok((true, true)),
        "follow" | "off" => Ok((true, false)),
        "nofollow" => Ok((false, false)),
        _ => bail!("option redirect_dir: expected on, follow, off or nofollow, got '{v}'"),
    }
}

/// A value out of `allowed`, or a line naming the option and what it takes.
fn one_of<'a>(key: &str, v: &'a str, allowed: &[&str]) -> Result<&'a str> {
    if allowed.contains(&v) {
        Ok(v)
    } else {
        bail!("option {key}: expected {}, got '{v}'", allowed.join(" or "))
    }
}

fn ranges(key: &str, v: &str) -> Result<Vec<Range>> {
    parse_ranges(v).map_err(|e| anyhow::anyhow!("option {key}: {e}"))
}

fn number(key: &str, v: &str) -> Result<u32> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("option {key}: '{v}' is not a number"))
}

fn flag(key: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None => Ok(true),
        Some(_) => bail!("option {key} takes no value"),
    }
}

/// Do the `-o` groups ask to remount a live mount (`remount`, as mount(8) hands it on)?
pub fn is_remount(opts: &[String]) -> bool {
    opts.iter()
        .flat_map(|g| split_options(g))
        .any(|o| o == "remount")
}

pub fn parse(opts: &[String]) -> Result<MountOptions> {
    let mut m = MountOptions {
        redirect_follow: true,
        redirect_create: true,
        ..Default::default()
    };
    for group in opts {
        for o in split_options(group) {
            let (key, val) = match o.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (o.as_str(), None),
            };
            let need = |v: Option<&str>| -> Result<String> {
                match v {
                    Some(v) if !v.is_empty() => Ok(v.to_string()),
                    _ => bail!("option {key} needs a value"),
                }
            };
            match key {
                "lowerdir" => {
                    let v = need(val)?;
                    m.lowerdir = split_escaped(&v, ':')
                        .into_iter()
                        .map(PathBuf::from)
                        .collect();
                    if m.lowerdir.iter().any(|p| p.as_os_str().is_empty()) {
                        bail!("option lowerdir has an empty layer in '{v}'");
                    }
                }
                "upperdir" => {
                    m.upperdir = Some(PathBuf::from(split_escaped(&need(val)?, '\0').concat()))
                }
                "workdir" => {
                    m.workdir = Some(PathBuf::from(split_escaped(&need(val)?, '\0').concat()))
                }
                "redirect_dir" => {
                    (m.redirect_follow, m.redirect_create) = redirect_mode(&need(val)?)?
                }
                "ro" => m.read_only = true,
                "rw" => m.read_only = false,
                "allow_other" => m.allow_other = Some(true),
                "allow_root" => m.allow_root = true,
                "default_permissions" => m.default_permissions = true,
                "fsname" => m.fsname = Some(need(val)?),
                // Hard links stay one file across copy-up (what index=on asks for); index=off
                // only lets the kernel break them.
                "index" => {
                    one_of(key, &need(val)?, &["on", "off"])?;
                }
                // strata's inode numbers are unique across layers (what xino=on and auto ask
                // for); xino=off only lets the kernel repeat them, so it is met as well.
                "xino" => {
                    one_of(key, &need(val)?, &["on", "auto", "off"])?;
                }
                // A copy-up copies data with the metadata, which is metacopy=off.
                "metacopy" => {
                    if one_of(key, &need(val)?, &["on", "off"])? == "on" {
                        bail!("option metacopy=on is not supported: a copy-up always copies the data (metacopy=off)");
                    }
                }
                "context" | "fscontext" | "defcontext" | "rootcontext" => {
                    bail!("option {key}= is not supported: strata does not apply SELinux labels")
                }
                // Only relaxes durability: strata's syncs are still made.
                "volatile" => {
                    if val.is_some() {
                        bail!("option volatile takes no value");
                    }
                }
                "uidmapping" => m.uidmapping = ranges(key, &need(val)?)?,
                "gidmapping" => m.gidmapping = ranges(key, &need(val)?)?,
                "squash_to_root" => m.squash_to_root = flag(key, val)?,
                "squash_to_uid" => m.squash_to_uid = Some(number(key, &need(val)?)?),
                "squash_to_gid" => m.squash_to_gid = Some(number(key, &need(val)?)?),
                "static_nlink" => m.static_nlink = flag(key, val)?,
                "noacl" => m.noacl = flag(key, val)?,
                "fsync" => m.no_fsync = one_of(key, &need(val)?, &["0", "1"])? == "0",
                "threaded" => m.threaded = Some(one_of(key, &need(val)?, &["0", "1"])? == "1"),
                "max_threads" => {
                    let n = number(key, &need(val)?)? as usize;
                    if n == 0 {
                        bail!("option max_threads must be at least 1");
                    }
                    m.max_threads = Some(n);
                }
                // mount.fuse3 and fuse-overlayfs callers pass these; they change nothing here:
                // the type is fixed, strata never outlives its mount, inode numbers are always
                // unique and stable (fast_ino asks for less), and fuse-overlayfs's plugins are
                // for lower layers strata does not read (it refuses any plugin named).
                "subtype" | "auto_unmount" | "fast_ino" => {}
                "plugins" => {
                    if val.is_some_and(|v| !v.is_empty()) {
                        bail!("option plugins= is not supported: strata has no layer plugins");
                    }
                }
                "passthrough" => {
                    m.no_passthrough = one_of(key, &need(val)?, &["on", "off"])? == "off"
                }
                "userxattr" => m.userxattr = true,
                "dev" | "nodev" | "suid" | "nosuid" | "exec" | "noexec" | "atime" | "noatime"
                | "relatime" | "norelatime" | "strictatime" | "diratime" | "nodiratime"
                | "sync" | "async" | "dirsync" => {
                    if val.is_some() {
                        bail!("option {key} takes no value");
                    }
                    m.kernel_flags.push(key.to_string());
                }
                _ => bail!("unknown mount option '{o}'"),
            }
        }
    }
    if m.lowerdir.is_empty() {
        bail!("missing lowerdir=: at least one lower layer is required");
    }
    match (&m.upperdir, &m.workdir) {
        (Some(_), None) => bail!("upperdir= needs workdir= (on the same filesystem)"),
        (None, Some(_)) => bail!("workdir= needs upperdir="),
        _ => {}
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<MountOptions> {
        parse(&[s.to_string()])
    }

    #[test]
    fn fuse_overlayfs_owner_options() {
        let m = p("lowerdir=/l,uidmapping=:0:1:1001:1001:0:1,gidmapping=0:100:10,squash_to_uid=7,static_nlink,noacl,fsync=0,threaded=0,max_threads=3").unwrap();
        assert_eq!(m.uidmapping.len(), 2);
        assert_eq!(m.gidmapping[0].shown, 100);
        assert_eq!(m.squash_to_uid, Some(7));
        assert!(m.static_nlink && m.noacl && m.no_fsync);
        assert_eq!((m.threaded, m.max_threads), (Some(false), Some(3)));
        for bad in [
            "uidmapping=0:1",
            "gidmapping=x:1:1",
            "squash_to_uid=me",
            "fsync=maybe",
            "max_threads=0",
            "static_nlink=1",
            "plugins=/usr/lib/foo.so",
        ] {
            let e = p(&format!("lowerdir=/l,{bad}")).unwrap_err().to_string();
            let key = bad.split('=').next().unwrap();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn overlay_form() {
        let m = p("lowerdir=/a:/b,upperdir=/u,workdir=/w,redirect_dir=off").unwrap();
        assert_eq!(m.lowerdir, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(m.upperdir, Some("/u".into()));
        assert_eq!(m.workdir, Some("/w".into()));
        assert!(!m.read_only);
    }

    #[test]
    fn redirect_dir_modes_are_the_kernels() {
        let mode = |v: &str| {
            let m = p(&format!("lowerdir=/a,redirect_dir={v}")).unwrap();
            (m.redirect_follow, m.redirect_create)
        };
        let default = p("lowerdir=/a").unwrap();
        assert_eq!(
            (default.redirect_follow, default.redirect_create),
            (true, true)
        );
        assert_eq!(mode("on"), (true, true));
        assert_eq!(mode("follow"), (true, false));
        // As the kernel with its default redirect_always_follow=Y.
        assert_eq!(mode("off"), (true, false));
        assert_eq!(mode("nofollow"), (false, false));
        let e = p("lowerdir=/a,redirect_dir=yes").unwrap_err().to_string();
        assert!(e.contains("redirect_dir") && e.contains("'yes'"), "{e}");
    }

    #[test]
    fn options_asking_for_what_strata_does_are_accepted() {
        for o in [
            "index=on",
            "index=off",
            "xino=on",
            "xino=auto",
            "xino=off",
            "metacopy=off",
            "volatile",
        ] {
            assert!(p(&format!("lowerdir=/a,{o}")).is_ok(), "{o} was refused");
        }
    }

    #[test]
    fn options_strata_cannot_honour_are_refused_in_one_line() {
        for (o, needle) in [
            ("metacopy=on", "metacopy=on"),
            ("context=system_u:object_r:container_file_t:s0", "context="),
            ("fscontext=system_u:object_r:tmp_t:s0", "fscontext="),
            ("defcontext=system_u:object_r:tmp_t:s0", "defcontext="),
            ("rootcontext=system_u:object_r:tmp_t:s0", "rootcontext="),
            ("index=maybe", "index"),
            ("xino=sometimes", "xino"),
            ("metacopy=yes", "metacopy"),
            ("index", "index"),
            ("volatile=1", "volatile"),
        ] {
            let e = p(&format!("lowerdir=/a,{o}")).unwrap_err().to_string();
            assert!(e.contains(needle), "{o}: {e}");
            assert!(!e.contains('\n'), "{o}: more than one line: {e}");
        }
    }

    #[test]
    fn escapes_in_paths() {
        let m = p(r"lowerdir=/a\:b:/c\,d").unwrap();
        assert_eq!(
            m.lowerdir,
            vec![PathBuf::from("/a:b"), PathBuf::from("/c,d")]
        );
    }

    #[test]
    fn several_o_groups_and_kernel_flags() {
        let m = parse(&["rw,nodev".into(), "lowerdir=/l".into()]).unwrap();
        assert_eq!(m.kernel_flags, vec!["nodev".to_string()]);
        assert_eq!(m.upperdir, None);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(p("lowerdir=/a,bogus")
            .unwrap_err()
            .to_string()
            .contains("unknown mount option 'bogus'"));
        assert!(p("upperdir=/u,workdir=/w")
            .unwrap_err()
            .to_string()
            .contains("lowerdir"));
        assert!(p("lowerdir=/a,upperdir=/u")
            .unwrap_err()
            .to_string()
            .contains("workdir"));
        assert!(p("lowerdir=/a,redirect_dir=maybe").is_err());
        assert!(p("lowerdir=/a::/b").is_err());
        assert!(p("lowerdir=").is_err());
    }
}
