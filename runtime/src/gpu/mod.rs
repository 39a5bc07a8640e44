//! The GPU targets' runtime half (NVIDIA through the CUDA driver, AMD
//! through the HIP runtime): the artifact folder and its executor. Drivers
//! are loaded at run time, so this crate links neither CUDA nor HIP and a
//! machine without them gets an error, not a crash.

pub mod artifact;

pub use artifact::{
    Arg, Folder, GpuArtifactError, Launch, Manifest, Module, ModuleKind, Step, TensorMap,
    is_folder, read,
};
pub mod cuda;
pub mod exec;
pub mod hip;
pub use exec::{Driver, Executor, GpuError, LoadError, Param, TensorMapBytes, driver_for, load};
