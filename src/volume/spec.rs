//! Graft specifications as users write them: `--bind`, `--volume`/`-v`, `--mount` and
//! `--tmpfs`, Docker's four spellings of one thing.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A host directory or file.
    Bind(PathBuf),
    /// A volume of the store; `None` makes an anonymous one.
    Volume(Option<String>),
    Tmpfs {
        size: Option<u64>,
        mode: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graft {
    pub source: Source,
    /// Absolute path inside the mount, cleaned.
    pub target: PathBuf,
    pub read_only: bool,
    /// A new, empty volume is not filled from the image.
    pub nocopy: bool,
    /// The flag as given, for messages.
    pub given: String,
}

const TMPFS_MODE: u32 = 0o1777;

/// Docker's rule for volume names.
pub fn check_volume_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(
            "invalid volume name {name:?}: use 2 or more of [a-zA-Z0-9_.-], starting with a letter or digit"
        );
    }
    Ok(())
}

fn target(given: &str, t: &str) -> Result<PathBuf> {
    let p = Path::new(t);
    if !p.is_absolute() {
        bail!("{given}: the target {t:?} must be an absolute path");
    }
    let clean: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if clean.components().any(|c| c == Component::ParentDir) {
        bail!("{given}: the target {t:?} must not contain '..'");
    }
    if clean == Path::new("/") {
        bail!("{given}: cannot graft over the root of the mount");
    }
    Ok(clean)
}

fn source_path(given: &str, s: &str) -> Result<PathBuf> {
    if s.is_empty() {
        bail!("{given}: the source is empty");
    }
    Ok(PathBuf::from(s))
}

/// `SRC:DST[:ro|:rw]`
pub fn bind(s: &str) -> Result<Graft> {
    let given = format!("--bind {s}");
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("{given}: expected SOURCE:TARGET[:ro]"),
    };
    let mut g = Graft {
        source: Source::Bind(source_path(&given, src)?),
        target: target(&given, dst)?,
        read_only: false,
        nocopy: false,
        given,
    };
    apply_flags(&mut g, opts, false)?;
    Ok(g)
}

/// `NAME:DST[:OPTS]`, `/HOST:DST[:OPTS]` (a bind) or `DST` (an anonymous volume); OPTS is a
/// comma-separated list of ro, rw, nocopy.
pub fn volume(s: &str) -> Result<Graft> {
    let given = format!("--volume {s}");
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        // Docker's `-v /data:ro`: an anonymous volume with options, not a bind of /data.
        [dst, opts]
            if !opts.starts_with('/')
                && opts
                    .split(',')
                    .all(|o| matches!(o, "ro" | "readonly" | "rw" | "nocopy")) =>
        {
            (None, *dst, *opts)
        }
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, opts] => (Some(*src), *dst, *opts),
        _ => bail!("{given}: expected [NAME:]TARGET[:OPTIONS]"),
    };
    let source = match src {
        Some(p) if p.starts_with('/') => Source::Bind(PathBuf::from(p)),
        Some(name) => {
            check_volume_name(name).map_err(|e| anyhow!("{given}: {e}"))?;
            Source::Volume(Some(name.to_string()))
        }
        None => Source::Volume(None),
    };
    let is_volume = matches!(source, Source::Volume(_));
    let mut g = Graft {
        source,
        target: target(&given, dst)?,
        read_only: false,
        nocopy: false,
        given,
    };
    apply_flags(&mut g, opts, is_volume)?;
    Ok(g)
}

fn apply_flags(g: &mut Graft, opts: &str, volume: bool) -> Result<()> {
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "readonly" => g.read_only = true,
            "rw" => g.read_only = false,
            "nocopy" if volume => g.nocopy = true,
            _ => bail!("{}: unknown option {o:?}", g.given),
        }
    }
    Ok(())
}

fn boolean(given: &str, k: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => bail!("{given}: {k}={v}: expected true or false"),
    }
}

/// A size as tmpfs takes it: bytes, or with a k/m/g suffix.
pub fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 'b' | 'B') => (&s[..i], 1),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn mode(given: &str, s: &str) -> Result<u32> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => bail!("{given}: mode {s:?} is not an octal file mode"),
    }
}

/// Docker's `--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,volume-nocopy]
/// [,tmpfs-size=..][,tmpfs-mode=..]`.
pub fn mount(s: &str) -> Result<Graft> {
    let given = format!("--mount {s}");
    let mut kind = "volume".to_string();
    let (mut src, mut dst) = (None, None);
    let (mut ro, mut nocopy) = (false, false);
    let (mut tsize, mut tmode) = (None, TMPFS_MODE);
    for kv in s.split(',').filter(|x| !x.is_empty()) {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kv, None),
        };
        let need = || v.ok_or_else(|| anyhow!("{given}: {k} needs a value"));
        match k {
            "type" => kind = need()?.to_string(),
            "source" | "src" => src = Some(need()?.to_string()),
            "target" | "destination" | "dst" => dst = Some(need()?.to_string()),
            "readonly" | "ro" => ro = boolean(&given, k, v)?,
            "volume-nocopy" => nocopy = boolean(&given, k, v)?,
            "tmpfs-size" => {
                let v = need()?;
                tsize = Some(size(v).ok_or_else(|| anyhow!("{given}: bad tmpfs-size {v:?}"))?);
            }
            "tmpfs-mode" => tmode = mode(&given, need()?)?,
            _ => bail!("{given}: unknown key {k:?}"),
        }
    }
    let dst = dst.ok_or_else(|| anyhow!("{given}: target= is required"))?;
    let source = match kind.as_str() {
        "bind" => Source::Bind(source_path(
            &given,
            &src.ok_or_else(|| anyhow!("{given}: a bind needs source="))?,
        )?),
        "volume" => match src {
            Some(name) => {
                check_volume_name(&name).map_err(|e| anyhow!("{given}: {e}"))?;
                Source::Volume(Some(name))
            }
            None => Source::Volume(None),
        },
        "tmpfs" => {
            if src.is_some() {
                bail!("{given}: a tmpfs takes no source");
            }
            Source::Tmpfs {
                size: tsize,
                mode: tmode,
            }
        }
        t => bail!("{given}: unknown type {t:?} (bind, volume or tmpfs)"),
    };
    if nocopy && !matches!(source, Source::Volume(_)) {
        bail!("{given}: volume-nocopy is for volumes");
    }
    Ok(Graft {
        source,
        target: target(&given, &dst)?,
        read_only: ro,
        nocopy,
        given,
    })
}

/// `DST[:size=..,mode=..,rw,ro]`
pub fn tmpfs(s: &str) -> Result<Graft> {
    let given = format!("--tmpfs {s}");
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    let (mut size_, mut mode_, mut ro) = (None, TMPFS_MODE, false);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                size_ = Some(size(v).ok_or_else(|| anyhow!("{given}: bad size {v:?}"))?)
            }
            Some(("mode", v)) => mode_ = mode(&given, v)?,
            None if o == "rw" => ro = false,
            None if o == "ro" => ro = true,
            _ => bail!("{given}: unknown option {o:?} (size=, mode=, rw, ro)"),
        }
    }
    Ok(Graft {
        source: Source::Tmpfs {
            size: size_,
            mode: mode_,
        },
        target: target(&given, dst)?,
        read_only: ro,
        nocopy: false,
        given,
    })
}

/// Every graft, checked against each other: one target each, outer ones first.
pub fn order(mut grafts: Vec<Graft>) -> Result<Vec<Graft>> {
    for (i, a) in grafts.iter().enumerate() {
        if let Some(b) = grafts[..i].iter().find(|b| b.target == a.target) {
            bail!(
                "{} and {} both graft onto {}",
                b.given,
                a.given,
                a.target.display()
            );
        }
    }
    grafts.sort_by_key(|g| g.target.components().count());
    Ok(grafts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_spellings() {
        let b = bind("/srv/data:/data:ro").unwrap();
        assert_eq!(b.source, Source::Bind("/srv/data".into()));
        assert_eq!(b.target, Path::new("/data"));
        assert!(b.read_only);
        let v = volume("db:/var/lib/db:nocopy").unwrap();
        assert_eq!(v.source, Source::Volume(Some("db".into())));
        assert!(v.nocopy && !v.read_only);
        assert_eq!(volume("/cache").unwrap().source, Source::Volume(None));
        // An anonymous volume with options, as Docker reads `-v /cache:ro`.
        let a = volume("/cache:ro").unwrap();
        assert_eq!(a.source, Source::Volume(None));
        assert_eq!(a.target, Path::new("/cache"));
        assert!(a.read_only);
        assert!(volume("/cache:nocopy").unwrap().nocopy);
        assert_eq!(
            volume("/host:/in").unwrap().source,
            Source::Bind("/host".into())
        );
        let m = mount("type=bind,src=/a,dst=/b/./c,readonly").unwrap();
        assert_eq!(m.source, Source::Bind("/a".into()));
        assert_eq!(m.target, Path::new("/b/c"));
        assert!(m.read_only);
        let t = mount("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=755").unwrap();
        assert_eq!(
            t.source,
            Source::Tmpfs {
                size: Some(64 << 20),
                mode: 0o755
            }
        );
        let t = tmpfs("/tmp:size=1g").unwrap();
        assert_eq!(
            t.source,
            Source::Tmpfs {
                size: Some(1 << 30),
                mode: 0o1777
            }
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(bind("/a").is_err());
        assert!(bind("/a:rel").is_err());
        assert!(bind("/a:/").is_err());
        assert!(bind("/a:/x/../y").is_err());
        assert!(bind("/a:/x:bogus").is_err());
        assert!(volume("a/b:/x").is_err());
        assert!(volume("x:/y:z:w").is_err());
        assert!(mount("type=nfs,target=/x").is_err());
        assert!(mount("type=bind,target=/x").is_err());
        assert!(mount("type=tmpfs,src=a,target=/x").is_err());
        assert!(mount("type=bind,src=/a,target=/x,volume-nocopy").is_err());
        assert!(tmpfs("/x:noexec").is_err());
        assert!(tmpfs("/x:mode=999").is_err());
        assert!(check_volume_name("..").is_err());
        assert!(check_volume_name("a").is_err());
        assert!(check_volume_name("my-vol_1.0").is_ok());
    }

    #[test]
    fn order_is_outer_first_and_targets_unique() {
        let g = order(vec![bind("/a:/x/y").unwrap(), bind("/b:/x").unwrap()]).unwrap();
        assert_eq!(g[0].target, Path::new("/x"));
        assert!(order(vec![bind("/a:/x").unwrap(), tmpfs("/x").unwrap()]).is_err());
    }
}
