//! smelt's kernel IR: fused kernels as computations over an iteration domain
//! (`ir`), schedules that decide per target how the domain is walked
//! (`schedule`), and a text form for snapshots (`print`). It knows nothing of
//! graphs or of LLVM: backends lower graphs into it and `smelt-codegen`
//! turns it into machine code.

pub mod fuse;
pub mod ir;
pub mod print;
pub mod schedule;

pub use ir::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Param, Stmt, Ty, UnOp, Var, VarInfo};
pub use schedule::Scheduled;
