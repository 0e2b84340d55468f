//! The OCI image config: what `run` takes from an image (Env, Cmd, Entrypoint, WorkingDir, User,
//! Volumes, StopSignal, Labels), its layers' diff_ids and history; and the config made for an
//! image imported from a plain root filesystem.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use oci_spec::image::ImageConfiguration;
use serde_json::json;

/// Parse a config blob, checking what the store relies on.
pub fn parse(raw: &[u8]) -> Result<ImageConfiguration> {
    let c: ImageConfiguration = serde_json::from_slice(raw).context("image config")?;
    if c.rootfs().typ() != "layers" {
        bail!(
            "image config: rootfs type {:?}, expected \"layers\"",
            c.rootfs().typ()
        );
    }
    for d in c.rootfs().diff_ids() {
        super::digest::sha256_hex(d).context("image config: rootfs.diff_ids")?;
    }
    Ok(c)
}

/// The execution defaults an image gives a container.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    pub labels: HashMap<String, String>,
}

pub fn run_config(c: &ImageConfiguration) -> RunConfig {
    let Some(k) = c.config() else {
        return RunConfig::default();
    };
    let mut volumes = k.volumes().clone().unwrap_or_default();
    volumes.sort();
    RunConfig {
        env: k.env().clone().unwrap_or_default(),
        entrypoint: k.entrypoint().clone().unwrap_or_default(),
        cmd: k.cmd().clone().unwrap_or_default(),
        working_dir: k.working_dir().clone().unwrap_or_default(),
        user: k.user().clone().unwrap_or_default(),
        volumes,
        stop_signal: k.stop_signal().clone(),
        labels: k.labels().clone().unwrap_or_default(),
    }
}

/// The `config` object of a raw config blob as it is written (Docker's inspect shows it so).
pub fn exec_section(raw: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|v| v.get("config").cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// A config for a one-layer image made from a root filesystem, as `docker import` makes it.
pub fn for_rootfs(diff_id: &str, created: &str, source: &str) -> Vec<u8> {
    let v = json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": format!("strata image import {source}"), "comment": "Imported from a root filesystem"}],
    });
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

/// This machine's architecture as Go (and so OCI) names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_defaults_are_read() {
        let raw = br#"{"architecture":"amd64","os":"linux",
            "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":["/init"],"WorkingDir":"/w",
                      "User":"1:2","Volumes":{"/data":{},"/a":{}},"StopSignal":"SIGINT",
                      "Labels":{"k":"v"}},
            "rootfs":{"type":"layers","diff_ids":[]},"container_config":{"Hostname":"x"}}"#;
        let r = run_config(&parse(raw).unwrap());
        assert_eq!(r.env, ["PATH=/bin"]);
        assert_eq!(r.cmd, ["sh"]);
        assert_eq!(r.entrypoint, ["/init"]);
        assert_eq!(r.working_dir, "/w");
        assert_eq!(r.user, "1:2");
        assert_eq!(r.volumes, ["/a", "/data"]);
        assert_eq!(r.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(r.labels.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn a_rootfs_config_names_its_layer() {
        let d = format!("sha256:{}", "c".repeat(64));
        let raw = for_rootfs(&d, "2026-01-01T00:00:00Z", "rootfs.tar");
        let c = parse(&raw).unwrap();
        assert_eq!(c.rootfs().diff_ids(), &[d]);
        assert_eq!(run_config(&c), RunConfig::default());
        assert!(parse(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["md5:x"]}}"#).is_err());
    }
}
