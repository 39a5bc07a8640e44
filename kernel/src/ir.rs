//! The kernel IR: one fused kernel as a computation over an iteration domain.
//!
//! A kernel says *what* each point of its domain computes (index arithmetic,
//! loads, an optional inner reduction loop, stores), never *how* the domain is
//! walked. A schedule (`schedule.rs`) decides that per target: parallel and
//! vectorized loops on a CPU, a grid of threads on a GPU. So the computation
//! is written once and every target shares it.

use serde::{Deserialize, Serialize};

/// Element types as kernels see them. `F16` and `BF16` are storage types:
/// loading one gives an `F32` value and storing rounds to nearest even, so
/// arithmetic never happens in a 16-bit float. The 8-bit floats (FP8 E4M3 /
/// E5M2 and their FNUZ variants) are storage types the same way: a load
/// decodes to `F32` and a store rounds to nearest even, overflowing to inf
/// where the format has one and NaN otherwise (saturation, when wanted, is
/// a clamp the lowering applies before the store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ty {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F16,
    BF16,
    F32,
    F64,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    /// E8M0 scales held as their raw byte code: loads give the code as
    /// `U8` and stores take one (the lowering decodes and encodes, since
    /// Cast's rounding mode decides the code). Neither float nor int, so
    /// arithmetic lowerings refuse it; data movement copies codes.
    F8E8M0,
    /// Packed sub-byte types, low bits first within a byte (ONNX's
    /// layout). Loads give `I8`/`U8`/`F32`; a store replaces only its own
    /// bits, atomically, so neighbours may be written concurrently.
    I4,
    U4,
    I2,
    U2,
    F4E2M1,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::I8 => "i8",
            Ty::I16 => "i16",
            Ty::I32 => "i32",
            Ty::I64 => "i64",
            Ty::U8 => "u8",
            Ty::U16 => "u16",
            Ty::U32 => "u32",
            Ty::U64 => "u64",
            Ty::F16 => "f16",
            Ty::BF16 => "bf16",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::F8E4M3FN => "f8e4m3fn",
            Ty::F8E4M3FNUZ => "f8e4m3fnuz",
            Ty::F8E5M2 => "f8e5m2",
            Ty::F8E5M2FNUZ => "f8e5m2fnuz",
            Ty::F8E8M0 => "f8e8m0",
            Ty::I4 => "i4",
            Ty::U4 => "u4",
            Ty::I2 => "i2",
            Ty::U2 => "u2",
            Ty::F4E2M1 => "f4e2m1",
        }
    }

    /// Bits per element of the packed sub-byte types, else `None`.
    pub fn packed_bits(self) -> Option<u32> {
        match self {
            Ty::I4 | Ty::U4 | Ty::F4E2M1 => Some(4),
            Ty::I2 | Ty::U2 => Some(2),
            _ => None,
        }
    }

    /// Bytes per element in memory (`Bool` is one byte, 0 or 1; a packed
    /// sub-byte type counts as 1).
    pub fn bytes(self) -> u64 {
        match self {
            Ty::Bool | Ty::I8 | Ty::U8 | Ty::F8E8M0 => 1,
            Ty::F8E4M3FN | Ty::F8E4M3FNUZ | Ty::F8E5M2 | Ty::F8E5M2FNUZ => 1,
            Ty::I4 | Ty::U4 | Ty::I2 | Ty::U2 | Ty::F4E2M1 => 1,
            Ty::I16 | Ty::U16 | Ty::F16 | Ty::BF16 => 2,
            Ty::I32 | Ty::U32 | Ty::F32 => 4,
            Ty::I64 | Ty::U64 | Ty::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64 | Ty::F4E2M1) || self.is_f8()
    }

    /// One of the 8-bit float storage types.
    pub fn is_f8(self) -> bool {
        matches!(
            self,
            Ty::F8E4M3FN | Ty::F8E4M3FNUZ | Ty::F8E5M2 | Ty::F8E5M2FNUZ
        )
    }

    pub fn is_signed(self) -> bool {
        matches!(self, Ty::I8 | Ty::I16 | Ty::I32 | Ty::I64 | Ty::I4 | Ty::I2)
    }

    pub fn is_unsigned(self) -> bool {
        matches!(self, Ty::U8 | Ty::U16 | Ty::U32 | Ty::U64 | Ty::U4 | Ty::U2)
    }

    pub fn is_int(self) -> bool {
        self.is_signed() || self.is_unsigned()
    }

    /// The type values of this storage type are computed in.
    pub fn compute(self) -> Ty {
        match self {
            Ty::F16 | Ty::BF16 => Ty::F32,
            t if t.is_f8() => Ty::F32,
            Ty::F4E2M1 => Ty::F32,
            Ty::I4 | Ty::I2 => Ty::I8,
            Ty::U4 | Ty::U2 | Ty::F8E8M0 => Ty::U8,
            t => t,
        }
    }
}

/// How a kernel uses a buffer; lets codegen mark inputs read-only and lets
/// the runtime check that no kernel writes its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    Read,
    Write,
}

/// A kernel parameter: a flat buffer of `len` elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub ty: Ty,
    pub len: u64,
    pub access: Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Var(pub u32);

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VarInfo {
    pub name: String,
    pub ty: Ty,
    /// Declared with `Stmt::Decl` and updated with `Stmt::Set` (an
    /// accumulator); all other variables are bound once.
    pub mutable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnOp {
    Neg,
    Not,
    Abs,
    Sqrt,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Erf,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Trunc,
    IsNan,
}

impl UnOp {
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Not => "not",
            UnOp::Abs => "abs",
            UnOp::Sqrt => "sqrt",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Tan => "tan",
            UnOp::Asin => "asin",
            UnOp::Acos => "acos",
            UnOp::Atan => "atan",
            UnOp::Sinh => "sinh",
            UnOp::Cosh => "cosh",
            UnOp::Tanh => "tanh",
            UnOp::Asinh => "asinh",
            UnOp::Acosh => "acosh",
            UnOp::Atanh => "atanh",
            UnOp::Erf => "erf",
            UnOp::Floor => "floor",
            UnOp::Ceil => "ceil",
            UnOp::Round => "round",
            UnOp::Trunc => "trunc",
            UnOp::IsNan => "isnan",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Integer division truncates toward zero (C, and ONNX's `Div`).
    Div,
    /// Integer remainder with the sign of the dividend; float `fmod`.
    Rem,
    /// NaN-propagating minimum / maximum (ONNX `Min`/`Max`).
    Min,
    Max,
    Pow,
    Atan2,
    And,
    Or,
    Xor,
    /// Shifts by the width or more (amounts compared unsigned, so negative
    /// ones too) give 0, or -1 for a right shift of a negative signed value.
    Shl,
    Shr,
}

impl BinOp {
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Pow => "pow",
            BinOp::Atan2 => "atan2",
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }

    /// Printed between its operands rather than as a call.
    pub fn infix(self) -> bool {
        !matches!(self, BinOp::Min | BinOp::Max | BinOp::Pow | BinOp::Atan2)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A typed expression. Index arithmetic is `I64`; a load yields the compute
/// type of its buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// An integer (or bool, 0/1) literal of an integer type.
    Int(i64, Ty),
    /// A float literal of `F32` or `F64`.
    Float(f64, Ty),
    Var(Var),
    /// `params[buf][index]`.
    Load(usize, Box<Expr>),
    Un(UnOp, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// Yields `Bool`. Float comparisons are ordered (false on NaN) except `Ne`.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
    /// Conversion to a compute type; float -> int truncates and saturates.
    Cast(Ty, Box<Expr>),
}

impl Expr {
    /// Rebuilds the expression bottom-up: `f` sees each node after its
    /// children were rebuilt, and returns its replacement.
    pub fn rewrite(&self, f: &mut dyn FnMut(Expr) -> Expr) -> Expr {
        let mut r = |x: &Expr| Box::new(x.rewrite(f));
        let e = match self {
            Expr::Load(b, i) => Expr::Load(*b, r(i)),
            Expr::Un(op, a) => Expr::Un(*op, r(a)),
            Expr::Cast(t, a) => Expr::Cast(*t, r(a)),
            Expr::Bin(op, a, b) => {
                let a = r(a);
                Expr::Bin(*op, a, r(b))
            }
            Expr::Cmp(op, a, b) => {
                let a = r(a);
                Expr::Cmp(*op, a, r(b))
            }
            Expr::Select(c, a, b) => {
                let c = r(c);
                let a = r(a);
                Expr::Select(c, a, r(b))
            }
            Expr::Int(..) | Expr::Float(..) | Expr::Var(_) => self.clone(),
        };
        f(e)
    }

    /// Calls `f` on every node, parents before children.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Load(_, a) | Expr::Un(_, a) | Expr::Cast(_, a) => a.visit(f),
            Expr::Bin(_, a, b) | Expr::Cmp(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Select(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            Expr::Int(..) | Expr::Float(..) | Expr::Var(_) => {}
        }
    }
}

/// Loop kinds are chosen by schedules; the compute definition only has
/// `Serial` loops (reductions and other inner iteration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoopKind {
    Serial,
    /// The iterations are independent and split across threads (CPU) or
    /// mapped to the grid (GPU). Only a kernel's outermost loop.
    Parallel,
    /// The iterations are independent and contiguous: vectorize.
    Vector,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    Let(Var, Expr),
    Decl(Var, Expr),
    Set(Var, Expr),
    Loop {
        var: Var,
        extent: Expr,
        kind: LoopKind,
        body: Vec<Stmt>,
    },
    Store {
        buf: usize,
        index: Expr,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Vec<Stmt>,
    },
}

/// One kernel: its parameters, its domain (vars `0..domain.len()` are the
/// domain's indices, all `I64`) and what each point computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<Param>,
    pub domain: Vec<u64>,
    pub vars: Vec<VarInfo>,
    pub body: Vec<Stmt>,
}

impl Kernel {
    /// A kernel over `domain` with domain variables named `i0, i1, ...`.
    pub fn new(name: impl Into<String>, domain: Vec<u64>) -> Self {
        let vars = (0..domain.len())
            .map(|i| VarInfo {
                name: format!("i{i}"),
                ty: Ty::I64,
                mutable: false,
            })
            .collect();
        Kernel {
            name: name.into(),
            params: Vec::new(),
            domain,
            vars,
            body: Vec::new(),
        }
    }

    pub fn param(&mut self, name: impl Into<String>, ty: Ty, len: u64, access: Access) -> usize {
        self.params.push(Param {
            name: name.into(),
            ty,
            len,
            access,
        });
        self.params.len() - 1
    }

    /// The variable of domain dimension `d`.
    pub fn index(&self, d: usize) -> Expr {
        Expr::Var(Var(d as u32))
    }

    pub fn var(&mut self, name: impl Into<String>, ty: Ty, mutable: bool) -> Var {
        let v = Var(self.vars.len() as u32);
        let name = name.into();
        // Unique names keep the printed form unambiguous.
        let name = if self.vars.iter().any(|x| x.name == name) {
            format!("{name}{}", v.0)
        } else {
            name
        };
        self.vars.push(VarInfo { name, ty, mutable });
        v
    }

    pub fn var_info(&self, v: Var) -> &VarInfo {
        &self.vars[v.0 as usize]
    }

    /// Number of domain points.
    pub fn points(&self) -> u64 {
        self.domain.iter().product()
    }

    /// The type of `e`; `None` if it refers to something that does not exist.
    pub fn type_of(&self, e: &Expr) -> Option<Ty> {
        Some(match e {
            Expr::Int(_, t) | Expr::Float(_, t) => *t,
            Expr::Var(v) => self.vars.get(v.0 as usize)?.ty,
            Expr::Load(b, _) => self.params.get(*b)?.ty.compute(),
            Expr::Un(UnOp::IsNan, _) | Expr::Cmp(..) => Ty::Bool,
            Expr::Un(_, a) => self.type_of(a)?,
            Expr::Bin(_, a, _) => self.type_of(a)?,
            Expr::Select(_, a, _) => self.type_of(a)?,
            Expr::Cast(t, _) => *t,
        })
    }
}

/// Shorthands for building expressions in lowerings.
pub mod build {
    use super::*;

    pub fn idx(n: i64) -> Expr {
        Expr::Int(n, Ty::I64)
    }
    pub fn f32(x: f64) -> Expr {
        Expr::Float(x, Ty::F32)
    }
    pub fn lit(x: f64, ty: Ty) -> Expr {
        let ty = ty.compute();
        if ty.is_float() {
            Expr::Float(x, ty)
        } else {
            Expr::Int(x as i64, ty)
        }
    }
    pub fn load(buf: usize, index: Expr) -> Expr {
        Expr::Load(buf, Box::new(index))
    }
    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Un(op, Box::new(a))
    }
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }
    pub fn add(a: Expr, b: Expr) -> Expr {
        bin(BinOp::Add, a, b)
    }
    pub fn sub(a: Expr, b: Expr) -> Expr {
        bin(BinOp::Sub, a, b)
    }
    pub fn mul(a: Expr, b: Expr) -> Expr {
        bin(BinOp::Mul, a, b)
    }
    pub fn div(a: Expr, b: Expr) -> Expr {
        bin(BinOp::Div, a, b)
    }
    pub fn rem(a: Expr, b: Expr) -> Expr {
        bin(BinOp::Rem, a, b)
    }
    pub fn cmp(op: CmpOp, a: Expr, b: Expr) -> Expr {
        Expr::Cmp(op, Box::new(a), Box::new(b))
    }
    pub fn select(c: Expr, a: Expr, b: Expr) -> Expr {
        Expr::Select(Box::new(c), Box::new(a), Box::new(b))
    }
    pub fn cast(ty: Ty, a: Expr) -> Expr {
        Expr::Cast(ty.compute(), Box::new(a))
    }
    pub fn var(v: Var) -> Expr {
        Expr::Var(v)
    }
    /// Row-major flat index of `indices` in a tensor of shape `dims`, with
    /// constant strides folded (a zero-extent dim contributes nothing).
    pub fn flat(indices: &[Expr], dims: &[u64]) -> Expr {
        let mut acc: Option<Expr> = None;
        let mut stride = 1i64;
        for (i, &d) in indices.iter().zip(dims).rev() {
            if d != 1 {
                let term = if stride == 1 {
                    i.clone()
                } else {
                    mul(i.clone(), idx(stride))
                };
                acc = Some(match acc {
                    None => term,
                    Some(a) => add(term, a),
                });
            }
            stride *= d as i64;
        }
        acc.unwrap_or_else(|| idx(0))
    }
}
