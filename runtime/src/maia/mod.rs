//! The Maia-style target's runtime side: the command stream (`isa`,
//! `encode`), the `.smx` artifact (`artifact`), its text form (`asm`) and
//! the cycle-approximate simulator (`sim`).

pub mod artifact;
pub mod asm;
pub mod dtype;
pub mod encode;
pub mod hw;
pub mod isa;
pub mod sim;

pub use artifact::{Artifact, Guard, Io, IoBinding, Region, RegionKind};
pub use dtype::Dt;
pub use hw::HwConfig;
pub use isa::{Command, Engine, Loc, Op, Queue, ROp, SRed, Sem, Space, VOp, VSrc};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("not a .smx file (bad magic)")]
    BadMagic,
    #[error(".smx version {found} is not supported (this build reads version {supported})")]
    Version { found: u16, supported: u16 },
    #[error(
        "checksum mismatch: header says {expected:#010x}, contents give {found:#010x} (file damaged)"
    )]
    Checksum { expected: u32, found: u32 },
    #[error("file truncated: {0}")]
    TruncatedFile(String),
    #[error(
        "command stream truncated in command #{index} (byte {offset}): {need} more byte(s) needed"
    )]
    Truncated {
        index: usize,
        offset: usize,
        need: usize,
    },
    #[error("command #{index}: unknown opcode {opcode:#04x}")]
    UnknownOpcode { index: usize, opcode: u8 },
    #[error("command #{index}: {why}")]
    Malformed { index: usize, why: String },
    #[error("command #{index}: address out of range: {why}")]
    OutOfRange { index: usize, why: String },
    #[error("command #{index}: unsupported dtype: {why}")]
    Unsupported { index: usize, why: String },
    #[error("deadlock: command #{index} ({what}) waits forever; nothing left will signal it")]
    Deadlock { index: usize, what: String },
    #[error("artifact: {0}")]
    Meta(String),
    #[error("line {line}: {why}")]
    Asm { line: usize, why: String },
}
