//! Graph nodes -> kernel IR. Shared by every backend that runs kernels (cpu
//! now; PTX and HIP print the same kernels with a GPU schedule).
//!
//! Each op family has one file with a `lower(&mut Lower) -> Option<Result>`
//! that returns `None` for ops it does not own. A lowering sees its node's
//! operands as `T` (a buffer with static dims), reads attributes through
//! `ctx()`, and emits kernels, GEMMs, temporaries and aliases through
//! `Lower`. What it cannot lower it refuses with `LowerError::Unsupported`
//! and the node runs on the reference implementation instead.

pub mod attention;
pub mod conv;
pub mod deform;
pub mod det;
pub mod dft;
pub mod dropout;
pub mod einsum;
pub mod elementwise;
pub mod fill;
pub mod fold;
pub mod grid;
pub mod indexing;
pub mod linalg;
pub mod linear_attention;
pub mod loss;
pub mod misc;
pub mod movement;
pub mod norm;
pub mod pick;
pub mod pool;
pub mod qconv;
pub mod quant;
pub mod reduce;
pub mod resample;
pub mod rnn;
pub mod roialign;
pub mod scan;
pub mod scatter;
pub mod signal;
pub mod softmax;
pub mod table;
pub mod topk;
pub mod train;
pub mod unpool;
pub mod vision;
pub mod window;

use smelt_ir::semantics::Ctx;
use smelt_ir::{DType, Node, TensorData};
use smelt_kernel::{Access, Kernel, Ty};

/// Index of a buffer in the program being built.
pub type BufId = usize;

/// A tensor as lowerings see it: its buffer, static dims and element type.
#[derive(Clone, Debug, PartialEq)]
pub struct T {
    pub buf: BufId,
    pub dims: Vec<u64>,
    pub dtype: DType,
    pub ty: Ty,
}

impl T {
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    /// No kernel lowering for this node (op, attribute combination or
    /// dtype); it runs on the reference implementation.
    #[error("{0}")]
    Unsupported(String),
    /// The node is malformed (the interpreter would reject it too).
    #[error("{0}")]
    Invalid(String),
}

pub type LResult<X> = Result<X, LowerError>;

pub fn unsupported<X>(msg: impl Into<String>) -> LResult<X> {
    Err(LowerError::Unsupported(msg.into()))
}

/// The kernel IR element type of a smelt dtype, if kernels can hold it.
pub fn kernel_ty(d: DType) -> Option<Ty> {
    Some(match d {
        DType::F64 => Ty::F64,
        DType::F32 => Ty::F32,
        DType::F16 => Ty::F16,
        DType::BF16 => Ty::BF16,
        DType::I64 => Ty::I64,
        DType::I32 => Ty::I32,
        DType::I16 => Ty::I16,
        DType::I8 => Ty::I8,
        DType::U64 => Ty::U64,
        DType::U32 => Ty::U32,
        DType::U16 => Ty::U16,
        DType::U8 => Ty::U8,
        DType::Bool => Ty::Bool,
        DType::F8E4M3FN => Ty::F8E4M3FN,
        DType::F8E4M3FNUZ => Ty::F8E4M3FNUZ,
        DType::F8E5M2 => Ty::F8E5M2,
        DType::F8E5M2FNUZ => Ty::F8E5M2FNUZ,
        DType::I4 => Ty::I4,
        DType::U4 => Ty::U4,
        DType::I2 => Ty::I2,
        DType::U2 => Ty::U2,
        DType::F4E2M1 => Ty::F4E2M1,
        DType::F8E8M0 => Ty::F8E8M0,
        _ => return None,
    })
}

/// What a lowering emits, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Emitted {
    Kernel { kernel: Kernel, args: Vec<BufId> },
    Gemm(smelt_runtime::cpu::Gemm),
}

/// The program-side services a lowering needs; implemented by each
/// backend's program builder.
pub trait Sink {
    fn temp(&mut self, dtype: DType, dims: &[u64]) -> BufId;
    fn emit(&mut self, e: Emitted);
    /// Make output `out` a view of `input`'s buffer (same bytes, new dims).
    fn alias(&mut self, out: BufId, input: BufId);
    /// Whether matrix products of f16/bf16 (f32 accumulation) become GEMM
    /// steps: on GPUs their tensor cores take them; the cpu runtime's GEMM
    /// has only f32/f64.
    fn low_precision_gemm(&self) -> bool {
        false
    }
}

/// One node being lowered.
pub struct Lower<'a> {
    pub node: &'a Node,
    ins: Vec<Option<T>>,
    outs: Vec<Option<T>>,
    consts: Vec<Option<&'a TensorData>>,
    sink: &'a mut dyn Sink,
    /// Emitted steps are buffered so that a lowering that fails halfway
    /// leaves nothing behind.
    pending: Vec<Emitted>,
    aliases: Vec<(BufId, BufId)>,
}

impl<'a> Lower<'a> {
    /// See `Sink::low_precision_gemm`.
    pub fn low_precision_gemm(&self) -> bool {
        self.sink.low_precision_gemm()
    }

    pub fn new(
        node: &'a Node,
        ins: Vec<Option<T>>,
        outs: Vec<Option<T>>,
        consts: Vec<Option<&'a TensorData>>,
        sink: &'a mut dyn Sink,
    ) -> Self {
        Lower {
            node,
            ins,
            outs,
            consts,
            sink,
            pending: Vec::new(),
            aliases: Vec::new(),
        }
    }

    /// Attribute access with the spec's defaults.
    pub fn ctx(&self) -> Ctx<'a> {
        Ctx::new(self.node)
    }

    pub fn op(&self) -> &'static str {
        self.node.op.name()
    }

    pub fn n_inputs(&self) -> usize {
        self.ins.len()
    }

    /// Required input `i`.
    pub fn input(&self, i: usize) -> LResult<T> {
        self.ins.get(i).cloned().flatten().ok_or_else(|| {
            LowerError::Invalid(format!("{}: input {i} is missing", self.node.describe()))
        })
    }

    pub fn opt_input(&self, i: usize) -> Option<T> {
        self.ins.get(i).cloned().flatten()
    }

    /// Output `i` if it is wanted.
    pub fn output(&self, i: usize) -> Option<T> {
        self.outs.get(i).cloned().flatten()
    }

    /// Required output `i`.
    pub fn out(&self, i: usize) -> LResult<T> {
        self.output(i).ok_or_else(|| {
            LowerError::Invalid(format!(
                "{}: output {i} is not wanted",
                self.node.describe()
            ))
        })
    }

    /// Input `i`'s contents when it is a constant (axes, shapes, pads...).
    pub fn const_data(&self, i: usize) -> Option<&'a TensorData> {
        self.consts.get(i).copied().flatten()
    }

    /// Input `i` as integers when it is a constant integer tensor.
    pub fn const_ints(&self, i: usize) -> Option<Vec<i64>> {
        let d = self.const_data(i)?;
        let t = smelt_ir::interp::Tensor::from_data(d).ok()?;
        t.to_i64_vec()
    }

    /// Input `i` as f64 values when it is a constant numeric tensor.
    pub fn const_f64s(&self, i: usize) -> Option<Vec<f64>> {
        let d = self.const_data(i)?;
        let t = smelt_ir::interp::Tensor::from_data(d).ok()?;
        t.to_f64_vec()
    }

    /// A scratch tensor, live from its first write to its last read.
    pub fn temp(&mut self, dtype: DType, dims: &[u64]) -> LResult<T> {
        let ty = kernel_ty(dtype)
            .ok_or_else(|| LowerError::Unsupported(format!("{dtype} temporaries")))?;
        Ok(T {
            buf: self.sink.temp(dtype, dims),
            dims: dims.to_vec(),
            dtype,
            ty,
        })
    }

    /// Emit `kernel`; `args[i]` is bound to its parameter `i`.
    pub fn kernel(&mut self, kernel: Kernel, args: &[&T]) -> LResult<()> {
        if kernel.params.len() != args.len() {
            return Err(LowerError::Invalid(format!(
                "{}: kernel {} has {} parameters, {} arguments given",
                self.node.describe(),
                kernel.name,
                kernel.params.len(),
                args.len()
            )));
        }
        for (p, a) in kernel.params.iter().zip(args) {
            if p.ty != a.ty || p.len != a.numel() {
                return Err(LowerError::Invalid(format!(
                    "{}: kernel {} parameter {} is {}[{}] but the argument is {}[{}]",
                    self.node.describe(),
                    kernel.name,
                    p.name,
                    p.ty.name(),
                    p.len,
                    a.ty.name(),
                    a.numel()
                )));
            }
        }
        self.pending.push(Emitted::Kernel {
            kernel,
            args: args.iter().map(|a| a.buf).collect(),
        });
        Ok(())
    }

    pub fn gemm(&mut self, g: smelt_runtime::cpu::Gemm) {
        self.pending.push(Emitted::Gemm(g));
    }

    /// Output `out` is input `input` reinterpreted (Reshape, Squeeze, ...):
    /// no copy is made.
    pub fn alias(&mut self, out: &T, input: &T) {
        self.aliases.push((out.buf, input.buf));
    }

    /// Hands what the lowering emitted to the program.
    pub fn finish(self) {
        for (o, i) in self.aliases {
            self.sink.alias(o, i);
        }
        for e in self.pending {
            self.sink.emit(e);
        }
    }
}

/// A kernel parameter for tensor `t`.
pub fn param(k: &mut Kernel, name: &str, t: &T, access: Access) -> usize {
    k.param(name, t.ty, t.numel(), access)
}

type Family = fn(&mut Lower) -> Option<LResult<()>>;

const FAMILIES: &[Family] = &[
    // Before elementwise: it takes the FP8 forms of Cast / CastLike.
    quant::lower,
    elementwise::lower,
    reduce::lower,
    softmax::lower,
    norm::lower,
    scan::lower,
    loss::lower,
    topk::lower,
    dropout::lower,
    window::lower,
    dft::lower,
    movement::lower,
    indexing::lower,
    resample::lower,
    fill::lower,
    pick::lower,
    linalg::lower,
    conv::lower,
    pool::lower,
    attention::lower,
    einsum::lower,
    misc::lower,
    rnn::lower,
    linear_attention::lower,
    train::lower,
    grid::lower,
    vision::lower,
    scatter::lower,
    det::lower,
    table::lower,
    signal::lower,
    qconv::lower,
    unpool::lower,
    roialign::lower,
    deform::lower,
];

/// Lowers one node; `Unsupported` when no family can.
pub fn lower(l: &mut Lower) -> LResult<()> {
    for f in FAMILIES {
        if let Some(r) = f(l) {
            return r;
        }
    }
    unsupported(format!("no kernel lowering for {}", l.op()))
}
