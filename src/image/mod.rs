//! Images: a stack of layers, each unpacked once into a content-addressed store under the state
//! root and shared by every image that uses it, plus the image config kept for `run`.
//!
//! - `store`: `layers/sha256/<diff_id>/` and `images/` records, tags, removal, the container hook
//! - `tar`: unpacking one layer tar safely into a directory (`tar_header` reads an entry,
//!   `tar_write` writes it, `tar_dirs` opens and finishes the tree); `pack`: a directory as a layer tar;
//!   `at`: the fd-relative helpers they share with the store
//! - `digest`: sha256 while reading, and the compressions a layer may come in
//! - `config`: the OCI image config (Env, Cmd, Entrypoint, ...) and one made for a plain rootfs
//! - `oci`, `docker_archive`, `rootfs`: the SOURCE kinds of `image import`; `import` drives them;
//!   `oci_index` picks the manifest of an OCI layout, `docker_manifest` reads a docker-archive's
//! - `reference`: NAME[:TAG] as Docker's reference grammar has it, and id prefixes
//! - `ops`: ls, inspect, history, tag, rm and prune, as data the CLI prints; `filter`: ls's filters
//! - `mount`: `image mount`, the layers as a read-only union through daemon/
//! - `save`: `image save`, an OCI layout or a docker-archive written from the store
//! - `split`: the record of a layer tar besides its files' data, to write it again whole
//! - `changes`: what a container changed, read from its upper; `diff` prints it
//! - `commit`: a container's changes as a new image; `commit_tar` writes them as a layer tar,
//!   `instructions` applies `-c`

pub mod at;
pub mod changes;
pub mod commit;
pub mod commit_tar;
pub mod config;
pub mod diff;
pub mod digest;
pub mod docker_archive;
pub mod docker_manifest;
pub mod filter;
pub mod import;
pub mod instructions;
pub mod mount;
pub mod oci;
pub mod oci_index;
pub mod ops;
pub mod pack;
pub mod reference;
pub mod rootfs;
pub mod save;
pub mod split;
pub mod store;
pub mod tar;
