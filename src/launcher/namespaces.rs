//! The namespaces a container gets: PID at clone time (so its first process is PID 1 there),
//! then mount, UTS, IPC, cgroup and, for `--network none`, network, unshared by that process
//! once it is in its cgroups (a cgroup namespace is rooted at the cgroup it is made in).

use nix::sched::CloneFlags;

use super::syscall::Syscall;
use super::{step, Failure, Network, Spec};

/// Given to clone(2): the child is PID 1 of a new PID namespace.
pub fn clone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
}

/// Unshared by the child before anything else.
pub fn unshare_flags(network: Network) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if network == Network::None {
        f |= CloneFlags::CLONE_NEWNET;
    }
    f
}

pub fn enter(sys: &dyn Syscall, spec: &Spec) -> Result<(), Failure> {
    let flags = unshare_flags(spec.network);
    step(sys.unshare(flags), || "unshare namespaces".into())?;
    if spec.network == Network::None {
        step(sys.loopback_up(), || "bring up lo".into())?;
    }
    Ok(())
}
