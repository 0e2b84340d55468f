//! Capabilities as Docker gives them: its default set, `--cap-add` / `--cap-drop` (names with or
//! without `CAP_`, any case, and `ALL`), the bounding set cut down to the result, and
//! `no-new-privileges`. A non-root user gets no effective or permitted capabilities, as with
//! Docker; the bounding set still limits what a setuid binary can regain.

use super::syscall::Syscall;
use super::{step, Failure};

/// Capability names in the kernel's numbering (linux/capability.h).
pub const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's default set (moby's oci/caps/defaults.go).
pub const DOCKER_DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn all() -> u64 {
    (1u64 << NAMES.len()) - 1
}

/// The bit of a capability name (`net_admin`, `CAP_NET_ADMIN`), or `ALL`.
pub fn parse(name: &str) -> Result<u64, String> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    if bare == "ALL" {
        return Ok(all());
    }
    NAMES
        .iter()
        .position(|n| *n == bare)
        .map(|i| 1u64 << i)
        .ok_or_else(|| format!("invalid capability: {name:?}"))
}

pub fn mask_of(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| parse(n).expect("known name"))
        .fold(0, |a, b| a | b)
}

/// Docker's default set with `--cap-add` and `--cap-drop` applied: drops first (so
/// `--cap-drop ALL --cap-add X` is only X), as moby's TweakCapabilities does.
pub fn resolve(add: &[String], drop: &[String]) -> Result<u64, String> {
    let mut set = mask_of(DOCKER_DEFAULT);
    for d in drop {
        set &= !parse(d)?;
    }
    for a in add {
        set |= parse(a)?;
    }
    Ok(set)
}

fn status_field(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// What this process may hand on: its permitted set within its bounding set, from
/// /proc/self/status (a capability the host withholds cannot be given to a container).
pub fn available() -> u64 {
    status_field("CapPrm:") & status_field("CapBnd:")
}

/// What a process of a user namespace this one makes may hold there: every capability of
/// its bounding set (the maker of a user namespace has them all in it, whatever it has
/// outside).
pub fn available_in_userns() -> u64 {
    status_field("CapBnd:")
}

/// Cut the bounding set down to `set` (needs CAP_SETPCAP: done before the user switch).
pub fn bounding(sys: &dyn Syscall, set: u64) -> Result<(), Failure> {
    step(sys.drop_bounding(set), || "drop the bounding set".into())
}

/// The final sets, after the user switch: root keeps `set` as effective and permitted, any
/// other user none; nothing inheritable or ambient (Docker since 20.10.14).
pub fn apply(sys: &dyn Syscall, set: u64, uid: u32, no_new_privs: bool) -> Result<(), Failure> {
    let s = if uid == 0 { set } else { 0 };
    step(sys.capset(s, s, 0), || "set capabilities".into())?;
    step(sys.clear_ambient(), || "clear ambient capabilities".into())?;
    if no_new_privs {
        step(sys.no_new_privs(), || "set no_new_privs".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_is_the_mask_docker_shows() {
        // `docker run --rm busybox grep CapEff /proc/self/status`
        assert_eq!(mask_of(DOCKER_DEFAULT), 0xa80425fb);
    }

    #[test]
    fn add_and_drop() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(resolve(&[], &s(&["ALL"])).unwrap(), 0);
        assert_eq!(
            resolve(&s(&["cap_net_admin"]), &s(&["all"])).unwrap(),
            1 << 12
        );
        let d = resolve(&[], &s(&["CHOWN", "NET_RAW"])).unwrap();
        assert_eq!(d, 0xa80425fb & !1 & !(1 << 13));
        assert_eq!(resolve(&s(&["ALL"]), &[]).unwrap(), (1u64 << 41) - 1);
        assert!(resolve(&s(&["NOPE"]), &[]).unwrap_err().contains("NOPE"));
    }
}
