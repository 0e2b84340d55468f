//! What a container runs from: a root filesystem directory given by path, or an image from the
//! layer store (its layers as the union's lower layers, top-most first, and its config's
//! Entrypoint, Cmd, Env, WorkingDir and User as the defaults `run` completes).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::image::ops;
use crate::state::Root;

#[derive(Debug, Default)]
pub struct Source {
    /// As given (shown by `ps` and `inspect`).
    pub image: String,
    /// `sha256:<hex>` for an image (so the image store sees it in use).
    pub image_id: Option<String>,
    pub lowers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// The image's VOLUMEs.
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A directory that exists is a rootfs; anything else names an image. A path (it starts
/// with `/` or `.`) that is not a directory is reported as such.
pub fn resolve(root: &Root, given: &str) -> Result<Source> {
    let p = Path::new(given);
    if let Ok(dir) = p.canonicalize() {
        if dir.is_dir() {
            return Ok(Source {
                image: dir.display().to_string(),
                lowers: vec![dir],
                ..Default::default()
            });
        }
    }
    if given.starts_with('/') || given.starts_with('.') {
        bail!("rootfs {given}: no such directory");
    }
    let i = ops::for_run(root, given)?;
    Ok(Source {
        image: given.to_string(),
        image_id: Some(i.id),
        lowers: i.layers,
        entrypoint: i.config.entrypoint,
        cmd: i.config.cmd,
        env: i.config.env,
        working_dir: i.config.working_dir,
        user: i.config.user,
        volumes: i.config.volumes,
        stop_signal: i.config.stop_signal,
        labels: i.config.labels.into_iter().collect(),
    })
}

/// Docker's rule: the entrypoint (`--entrypoint` replaces the image's and drops its Cmd) with
/// the command line's arguments, or the image's Cmd when there are none.
pub fn command(s: &Source, entrypoint: Option<&str>, args: &[String]) -> Vec<String> {
    let (ep, default_cmd) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (s.entrypoint.clone(), s.cmd.clone()),
    };
    let rest = if args.is_empty() {
        default_cmd
    } else {
        args.to_vec()
    };
    ep.into_iter().chain(rest).collect()
}

/// The image's environment with the command line's on top (a key given again replaces it).
pub fn environment(s: &Source, given: &[String]) -> Vec<String> {
    let key = |e: &String| e.split('=').next().unwrap_or("").to_string();
    let mut env: Vec<String> = s
        .env
        .iter()
        .filter(|e| !given.iter().any(|g| key(g) == key(e)))
        .cloned()
        .collect();
    // A key given twice (an --env-file, then -e): the later one.
    for (i, g) in given.iter().enumerate() {
        if !given[i + 1..].iter().any(|later| key(later) == key(g)) {
            env.push(g.clone());
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_and_environment_follow_docker() {
        let s = Source {
            entrypoint: v(&["/init"]),
            cmd: v(&["serve", "-v"]),
            env: v(&["PATH=/bin", "A=image"]),
            ..Default::default()
        };
        assert_eq!(command(&s, None, &[]), v(&["/init", "serve", "-v"]));
        assert_eq!(command(&s, None, &v(&["x"])), v(&["/init", "x"]));
        assert_eq!(command(&s, Some("sh"), &[]), v(&["sh"]));
        assert_eq!(command(&s, Some(""), &v(&["ls"])), v(&["ls"]));
        assert_eq!(
            environment(&s, &v(&["A=cli", "B=1"])),
            v(&["PATH=/bin", "A=cli", "B=1"])
        );
        assert_eq!(
            environment(&s, &v(&["B=file", "C=3", "B=cli"])),
            v(&["PATH=/bin", "A=image", "C=3", "B=cli"])
        );
    }
}
