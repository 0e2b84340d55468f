//! `inspect`: a container as Docker's JSON shows it (the fields strata has): Id, Created,
//! Path, Args, State, Image, Name, GraphDriver with the union's directories, Mounts, Config and
//! HostConfig.

use anyhow::Result;
use serde_json::{json, Value};

use super::records::{Config, State, Store};
use crate::launcher::{caps, Network};
use crate::state::Root;

/// Docker's zero time, for a container that has not started or finished.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(t: &str) -> &str {
    if t.is_empty() {
        ZERO_TIME
    } else {
        t
    }
}

/// The capability names of a mask, CAP_-prefixed.
fn cap_names(mask: u64) -> Vec<String> {
    caps::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect()
}

pub fn to_json(root: &Root, store: &Store, c: &Config, s: &State) -> Value {
    let dir = store.container_dir(&c.id);
    let running = s.status == "running";
    // The generated /etc files are not the user's mounts (Docker lists them apart, as paths).
    let generated = dir.display().to_string();
    let own_grafts: Vec<_> = c
        .grafts
        .iter()
        .filter(|g| !g.spec.starts_with(&generated))
        .cloned()
        .collect();
    let sp = &c.spec;
    let mut v = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": sp.args.first(),
        "Args": sp.args.get(1..).unwrap_or(&[]),
        "State": {
            "Status": s.status,
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": s.oom_killed,
            "Dead": false,
            "Pid": if running { s.pid } else { 0 },
            "ExitCode": s.exit_code,
            "Error": "",
            "StartedAt": time(&s.started_at),
            "FinishedAt": time(&s.finished_at),
        },
        "Image": c.image_id.clone().unwrap_or_else(|| c.image.clone()),
        "LogPath": dir.join("log"),
        "Name": format!("/{}", c.name),
        "Driver": "strata",
        "GraphDriver": {
            "Data": {
                "LowerDir": c.lowers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":"),
                "MergedDir": dir.join("merged"),
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
            },
            "Name": "strata",
        },
        "Mounts": super::grafts::mounts_json(root, &own_grafts),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "ResolvConfPath": dir.join("resolv.conf"),
        "Config": {
            "Hostname": sp.hostname,
            "User": sp.user.clone().unwrap_or_default(),
            "Env": sp.env,
            "Cmd": sp.args,
            "Image": c.image,
            "WorkingDir": if sp.cwd.as_os_str() == "/" { String::new() } else { sp.cwd.display().to_string() },
            "Entrypoint": null,
            "Tty": c.tty,
            "OpenStdin": c.interactive,
            "Labels": c.labels,
        },
        "HostConfig": {
            "AutoRemove": c.auto_remove,
            "NetworkMode": match sp.network { Network::None => "none", Network::Host => "host" },
            "Init": sp.init,
            "Memory": c.limits.memory.unwrap_or(0),
            "NanoCpus": c.limits.cpus.map_or(0, |x| (x * 1e9) as i64),
            "PidsLimit": c.limits.pids,
            "CapAdd": cap_names(sp.caps & !caps::mask_of(caps::DOCKER_DEFAULT)),
            "CapDrop": cap_names(caps::mask_of(caps::DOCKER_DEFAULT) & !sp.caps),
            "SecurityOpt": if sp.no_new_privileges { vec!["no-new-privileges"] } else { vec![] },
            "ReadonlyRootfs": sp.read_only,
        },
    });
    // Docker leaves StopSignal out when neither the image nor the command line set one.
    if let Some(sig) = &c.stop_signal {
        v["Config"]["StopSignal"] = json!(sig);
    }
    v
}

/// The JSON of each container found, and the names not found.
pub fn inspect(root: &Root, keys: &[String]) -> Result<(Vec<Value>, Vec<String>)> {
    let store = Store::new(root);
    let lock = store.lock()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for k in keys {
        match store.find(&lock, k) {
            Ok(c) => {
                let s = store.live_state(&lock, &c.id)?;
                found.push(to_json(root, &store, &c, &s));
            }
            Err(_) => missing.push(k.clone()),
        }
    }
    Ok((found, missing))
}
