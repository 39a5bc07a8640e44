//! smelt's own command stream for Maia-style chips (no vendor ISA). A
//! program is one list of commands; each names the queue that executes it.
//! Queues run their commands in order and in parallel with each other;
//! semaphores and barriers order work across queues. docs/command-stream.md
//! documents every opcode and the byte encoding written by `encode`.

use super::dtype::Dt;
use std::fmt;

/// Which engine a queue feeds. Tile engines are indexed by tile, the
/// cluster DMA by cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Ctrl = 0,
    Tensor = 1,
    Vector = 2,
    Dma = 3,
    ClusterDma = 4,
}

impl Engine {
    pub const ALL: [Engine; 5] = [
        Engine::Ctrl,
        Engine::Tensor,
        Engine::Vector,
        Engine::Dma,
        Engine::ClusterDma,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Engine::Ctrl => "ctrl",
            Engine::Tensor => "tensor",
            Engine::Vector => "vector",
            Engine::Dma => "dma",
            Engine::ClusterDma => "cdma",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Queue {
    pub engine: Engine,
    /// Tile index, or cluster index for `ClusterDma`.
    pub unit: u16,
    /// Engine instance within the unit (DMA channels); 0 otherwise.
    pub lane: u8,
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.engine {
            Engine::Dma => write!(f, "t{}.dma{}", self.unit, self.lane),
            Engine::ClusterDma => write!(f, "c{}.dma{}", self.unit, self.lane),
            e => write!(f, "t{}.{}", self.unit, e.name()),
        }
    }
}

/// A memory level and its instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Hbm,
    L2(u16),
    Sram(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub space: Space,
    pub offset: u64,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.space {
            Space::Hbm => write!(f, "hbm[{:#x}]", self.offset),
            Space::L2(c) => write!(f, "l2.{c}[{:#x}]", self.offset),
            Space::Sram(t) => write!(f, "sram.{t}[{:#x}]", self.offset),
        }
    }
}

/// Elementwise vector operations. Binary ones take `b`; unary ones ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
    Pow = 6,
    Lt = 7,
    Le = 8,
    Gt = 9,
    Ge = 10,
    Eq = 11,
    Sel = 12,
    /// C's fmod: x - trunc(x / y)·y, exact, with the dividend's sign.
    Mod = 13,
    Copy = 16,
    Neg = 17,
    Exp = 18,
    Recip = 19,
    Sqrt = 20,
    Rsqrt = 21,
    Tanh = 22,
    Relu = 23,
    Log = 24,
    Erf = 25,
    Sigmoid = 26,
    Abs = 27,
    Floor = 28,
    Ceil = 29,
    Sin = 30,
    Cos = 31,
    // Integer-only binary ops (opcodes 0x70 + code - 32).
    Shl = 32,
    Shr = 33,
    And = 34,
    Or = 35,
    Xor = 36,
    // Unary float op past the integer-only range (opcode 0x70 + code - 32).
    /// Round half to even (ONNX Round, numpy's rint).
    Round = 37,
    // More unary ops (opcodes 0x80 + code - 48).
    Asin = 48,
    Acos = 49,
    Atan = 50,
    Asinh = 51,
    Acosh = 52,
    Atanh = 53,
}

impl VOp {
    pub const ALL: [VOp; 42] = [
        VOp::Add,
        VOp::Sub,
        VOp::Mul,
        VOp::Div,
        VOp::Max,
        VOp::Min,
        VOp::Pow,
        VOp::Lt,
        VOp::Le,
        VOp::Gt,
        VOp::Ge,
        VOp::Eq,
        VOp::Sel,
        VOp::Mod,
        VOp::Copy,
        VOp::Neg,
        VOp::Exp,
        VOp::Recip,
        VOp::Sqrt,
        VOp::Rsqrt,
        VOp::Tanh,
        VOp::Relu,
        VOp::Log,
        VOp::Erf,
        VOp::Sigmoid,
        VOp::Abs,
        VOp::Floor,
        VOp::Ceil,
        VOp::Sin,
        VOp::Cos,
        VOp::Shl,
        VOp::Shr,
        VOp::And,
        VOp::Or,
        VOp::Xor,
        VOp::Round,
        VOp::Asin,
        VOp::Acos,
        VOp::Atan,
        VOp::Asinh,
        VOp::Acosh,
        VOp::Atanh,
    ];
    pub fn name(self) -> &'static str {
        match self {
            VOp::Add => "add",
            VOp::Sub => "sub",
            VOp::Mul => "mul",
            VOp::Div => "div",
            VOp::Max => "max",
            VOp::Min => "min",
            VOp::Copy => "copy",
            VOp::Neg => "neg",
            VOp::Exp => "exp",
            VOp::Recip => "recip",
            VOp::Sqrt => "sqrt",
            VOp::Rsqrt => "rsqrt",
            VOp::Tanh => "tanh",
            VOp::Relu => "relu",
            VOp::Pow => "pow",
            VOp::Lt => "lt",
            VOp::Le => "le",
            VOp::Gt => "gt",
            VOp::Ge => "ge",
            VOp::Eq => "eq",
            VOp::Sel => "sel",
            VOp::Mod => "mod",
            VOp::Log => "log",
            VOp::Erf => "erf",
            VOp::Sigmoid => "sigmoid",
            VOp::Abs => "abs",
            VOp::Floor => "floor",
            VOp::Ceil => "ceil",
            VOp::Sin => "sin",
            VOp::Cos => "cos",
            VOp::Shl => "shl",
            VOp::Shr => "shr",
            VOp::And => "and",
            VOp::Or => "or",
            VOp::Xor => "xor",
            VOp::Round => "round",
            VOp::Asin => "asin",
            VOp::Acos => "acos",
            VOp::Atan => "atan",
            VOp::Asinh => "asinh",
            VOp::Acosh => "acosh",
            VOp::Atanh => "atanh",
        }
    }
    pub fn binary(self) -> bool {
        (self as u8) < 16 || self.integer_only()
    }
    /// The command's opcode.
    pub fn opcode(self) -> u8 {
        match self as u8 {
            c @ 0..32 => 0x20 + c,
            c @ 32..48 => 0x70 + (c - 32),
            c => 0x80 + (c - 48),
        }
    }
    /// The op of a vector opcode, if it is one.
    pub fn from_opcode(opcode: u8) -> Option<VOp> {
        let code = match opcode {
            0x20..=0x3f => opcode - 0x20,
            0x70..=0x7f => opcode - 0x70 + 32,
            0x80..=0x8f => opcode - 0x80 + 48,
            _ => return None,
        };
        VOp::from_code(code)
    }
    /// Ops the vector unit runs at `transcendental_cycles` per element group.
    pub fn transcendental(self) -> bool {
        matches!(
            self,
            VOp::Div
                | VOp::Exp
                | VOp::Recip
                | VOp::Sqrt
                | VOp::Rsqrt
                | VOp::Tanh
                | VOp::Pow
                | VOp::Log
                | VOp::Erf
                | VOp::Sigmoid
                | VOp::Sin
                | VOp::Cos
                | VOp::Mod
                | VOp::Asin
                | VOp::Acos
                | VOp::Atan
                | VOp::Asinh
                | VOp::Acosh
                | VOp::Atanh
        )
    }
    /// Ops defined on integer dtypes (exact, wrapping at the dtype's
    /// width; division truncates toward zero, and by zero gives 0).
    pub fn integer(self) -> bool {
        matches!(
            self,
            VOp::Add
                | VOp::Sub
                | VOp::Mul
                | VOp::Div
                | VOp::Max
                | VOp::Min
                | VOp::Lt
                | VOp::Le
                | VOp::Gt
                | VOp::Ge
                | VOp::Eq
                | VOp::Sel
                | VOp::Copy
                | VOp::Neg
                | VOp::Abs
                | VOp::Relu
                | VOp::Shl
                | VOp::Shr
                | VOp::And
                | VOp::Or
                | VOp::Xor
        )
    }
    /// Ops defined only on integer dtypes.
    pub fn integer_only(self) -> bool {
        (32..=36).contains(&(self as u8))
    }
    pub fn from_code(c: u8) -> Option<VOp> {
        VOp::ALL.into_iter().find(|o| *o as u8 == c)
    }
}

/// The second operand of a vector op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VSrc {
    None,
    /// rows×cols at this SRAM offset.
    Full(u32),
    /// One value per row (rows elements): softmax's x - max, x / sum.
    Row(u32),
    /// One value per column (cols elements): a norm's gamma/beta, a bias.
    Col(u32),
    Imm(f32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ROp {
    Sum = 0,
    Max = 1,
}

impl ROp {
    pub fn name(self) -> &'static str {
        match self {
            ROp::Sum => "sum",
            ROp::Max => "max",
        }
    }
}

/// How `dma.scatter` combines a source row with the destination row it
/// names: replace it, or the elementwise sum, product, maximum or minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SRed {
    None = 0,
    Add = 1,
    Mul = 2,
    Max = 3,
    Min = 4,
}

impl SRed {
    pub const ALL: [SRed; 5] = [SRed::None, SRed::Add, SRed::Mul, SRed::Max, SRed::Min];
    pub fn name(self) -> &'static str {
        match self {
            SRed::None => "none",
            SRed::Add => "add",
            SRed::Mul => "mul",
            SRed::Max => "max",
            SRed::Min => "min",
        }
    }
    pub fn from_code(c: u8) -> Option<SRed> {
        SRed::ALL.into_iter().find(|r| *r as u8 == c)
    }
}

/// A semaphore: tile and index within the tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sem {
    pub tile: u16,
    pub idx: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D strided copy of `rows`×`cols` elements, converting `src_dt` to
    /// `dst_dt` on the way. Strides are in elements of their side's dtype.
    /// `saturate` false: a conversion to fp8/e8m0 turns values beyond the
    /// format's range into inf or NaN (ONNX Cast's `saturate=0`) instead of
    /// its largest finite value.
    Dma {
        src: Loc,
        dst: Loc,
        src_dt: Dt,
        dst_dt: Dt,
        rows: u32,
        cols: u32,
        src_stride: u32,
        dst_stride: u32,
        saturate: bool,
    },
    /// Indirect (gathering) copy: row r of the destination (`cols`
    /// elements of `dt`, at dst + r·dst_stride) is source row idx[r] (at
    /// src + idx[r]·src_stride), idx[r] being element r·idx_stride of the
    /// index array at `idx` (dtype `idx_dt`, i32 or i64). A negative index
    /// counts from `bound`; one outside [-bound, bound) stops the program.
    DmaGather {
        src: Loc,
        dst: Loc,
        idx: Loc,
        dt: Dt,
        idx_dt: Dt,
        rows: u32,
        cols: u32,
        src_stride: u32,
        dst_stride: u32,
        idx_stride: u32,
        bound: u32,
    },
    /// Indirect (scattering) copy, `DmaGather`'s counterpart: source row r
    /// (`cols` elements of `dt` at src + r·src_stride) goes to destination
    /// row idx[r] (at dst + idx[r]·dst_stride), combined with what is
    /// there as `red` says. Rows are applied in order, so with repeated
    /// indices the last write wins (or every update is combined in
    /// order). A negative index counts from `bound` (the destination's
    /// rows); one outside [-bound, bound) stops the program.
    DmaScatter {
        src: Loc,
        dst: Loc,
        idx: Loc,
        dt: Dt,
        idx_dt: Dt,
        red: SRed,
        rows: u32,
        cols: u32,
        src_stride: u32,
        dst_stride: u32,
        idx_stride: u32,
        bound: u32,
    },
    /// C (m×n, f32) = [C +] A (m×k) · Bᵀ where B is stored n×k, both in `dt`,
    /// so the reduction axis is contiguous for both (MX blocks run along k).
    Matmul {
        dt: Dt,
        m: u32,
        n: u32,
        k: u32,
        a: u32,
        b: u32,
        c: u32,
        acc: bool,
    },
    /// dst = op(a, b) over rows×cols elements of `dt` in the queue's tile SRAM.
    Vector {
        op: VOp,
        dt: Dt,
        rows: u32,
        cols: u32,
        dst: u32,
        a: u32,
        b: VSrc,
    },
    /// dst[r] = reduce(src[r, 0..cols]).
    Reduce {
        op: ROp,
        dt: Dt,
        rows: u32,
        cols: u32,
        dst: u32,
        src: u32,
    },
    /// Converts n elements within tile SRAM.
    Convert {
        src_dt: Dt,
        dst_dt: Dt,
        n: u32,
        dst: u32,
        src: u32,
    },
    /// Adds n to a semaphore once every earlier command of the queue is done.
    Signal { sem: Sem, n: u32 },
    /// Blocks the queue until the semaphore is >= n, then subtracts n.
    Wait { sem: Sem, n: u32 },
    /// Blocks until `count` queues have reached barrier `id`.
    Barrier { id: u16, count: u16 },
    /// In-place sum of n elements at HBM `addr` across all devices.
    AllReduce { dt: Dt, n: u32, addr: u64 },
    /// Concatenates each device's n elements at `src` into `dst` (device order).
    AllGather { dt: Dt, n: u32, src: u64, dst: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub queue: Queue,
    pub op: Op,
}

impl Op {
    pub fn opcode(&self) -> u8 {
        match self {
            Op::Dma { .. } => 0x01,
            Op::DmaGather { .. } => 0x02,
            Op::DmaScatter { .. } => 0x03,
            Op::Matmul { .. } => 0x10,
            Op::Vector { op, .. } => op.opcode(),
            Op::Reduce { op, .. } => 0x40 + *op as u8,
            Op::Convert { .. } => 0x48,
            Op::Signal { .. } => 0x50,
            Op::Wait { .. } => 0x51,
            Op::Barrier { .. } => 0x52,
            Op::AllReduce { .. } => 0x60,
            Op::AllGather { .. } => 0x61,
        }
    }

    /// The engine kinds that may execute this op.
    pub fn runs_on(&self, e: Engine) -> bool {
        match self {
            Op::Dma { .. } | Op::DmaGather { .. } | Op::DmaScatter { .. } => {
                matches!(e, Engine::Dma | Engine::ClusterDma)
            }
            Op::Matmul { .. } => e == Engine::Tensor,
            Op::Vector { .. } | Op::Reduce { .. } | Op::Convert { .. } => e == Engine::Vector,
            Op::Signal { .. } | Op::Wait { .. } | Op::Barrier { .. } => true,
            Op::AllReduce { .. } | Op::AllGather { .. } => e == Engine::Ctrl,
        }
    }
}
