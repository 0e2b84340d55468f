//! Entering the root: pivot_root(2) with the old root unmounted, so nothing of the host's tree
//! is left in the container's mount namespace; or, with `--chroot`, plain chroot(2), which only
//! changes where path lookups start (the host's mounts stay in the namespace, under the root),
//! for showing the difference.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::syscall::Syscall;
use super::{step, Failure, Spec};

pub fn enter_root(sys: &dyn Syscall, spec: &Spec) -> Result<(), Failure> {
    let root = &spec.rootfs;
    if spec.chroot {
        step(sys.chdir(root), || format!("chdir {}", root.display()))?;
        step(sys.chroot(Path::new(".")), || {
            format!("chroot {}", root.display())
        })?;
        return step(sys.chdir(Path::new("/")), || "chdir /".into());
    }
    // runc's way, with no directory for the old root: pivot "." onto itself, so the old root
    // is stacked on the new one at "/", then detach it from there.
    step(sys.chdir(root), || format!("chdir {}", root.display()))?;
    step(sys.pivot_root(Path::new("."), Path::new(".")), || {
        format!("pivot_root {}", root.display())
    })?;
    // The old root must not be shared with the host's mounts before it goes, or the unmount
    // would propagate to them.
    step(
        sys.mount(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        ),
        || "make the old root a slave".into(),
    )?;
    step(sys.umount2(Path::new("."), MntFlags::MNT_DETACH), || {
        "unmount the old root".into()
    })?;
    step(sys.chdir(Path::new("/")), || "chdir /".into())
}
