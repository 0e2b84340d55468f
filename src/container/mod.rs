//! Containers: their records in the state root, their root mount, and the monitor that starts
//! a container's process and waits for it (`run`). The kernel side is src/launcher/.

pub mod attach;
pub mod attach_client;
pub mod cp;
pub mod detach;
pub mod etc;
pub mod exec;
pub mod filter;
pub mod grafts;
pub mod inspect;
pub mod layers;
pub mod log;
pub mod monitor;
pub mod mount;
pub mod records;
pub mod rootless;
pub mod run;
pub mod source;
pub mod streams;
pub mod verbs;
