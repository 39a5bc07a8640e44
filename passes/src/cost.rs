//! The cost model: roofline time of each kernel on a target. An op costs
//! `max(FLOPs / rate(dtype), bytes / bandwidth) + launch`, where bytes are
//! its operands read plus its results written. A fused op reads and writes
//! only the ends of the chain it replaces, so it saves the intermediate
//! bytes and launches, which is what makes extraction prefer it.
//!
//! Extraction is greedy (egg's `Extractor`), which counts a shared operand
//! once per use. ILP extraction (egg's `lp` feature with CBC) would count
//! sharing exactly; it is left for later because it needs a native solver.

use crate::analysis::{ClassData, TEGraph};
use crate::lang::TNode;
use egg::{CostFunction, Id, Language};
use smelt_ir::target::Target;
use smelt_ir::{Attr, DType, Dim, Op, TensorType};

/// Stand-in size of a symbolic or unknown dimension.
const SYMBOLIC_DIM: f64 = 64.0;

pub fn numel(ty: &TensorType) -> f64 {
    match ty.shape.dims() {
        None => 1024.0,
        Some(d) => d
            .iter()
            .map(|x| match x {
                Dim::Static(n) => *n as f64,
                _ => SYMBOLIC_DIM,
            })
            .product(),
    }
}

pub fn bytes(ty: &TensorType) -> f64 {
    numel(ty) * (ty.dtype.bits().max(1) as f64) / 8.0
}

pub struct RooflineCost<'a> {
    pub eg: &'a TEGraph,
    pub target: &'a Target,
}

fn class_ty(d: &ClassData) -> Option<&TensorType> {
    d.tys.first()
}

/// FLOPs of one op from its operand and result types.
pub fn flops(
    op: Op,
    attrs: Option<&smelt_ir::Attrs>,
    ins: &[Option<&TensorType>],
    outs: &[TensorType],
) -> f64 {
    let out_n: f64 = outs.iter().map(numel).sum();
    let in0 = ins.first().copied().flatten();
    let dims = |t: Option<&TensorType>| -> Vec<f64> {
        t.and_then(|t| t.shape.dims())
            .map(|d| {
                d.iter()
                    .map(|x| x.as_static().map(|n| n as f64).unwrap_or(SYMBOLIC_DIM))
                    .collect()
            })
            .unwrap_or_default()
    };
    match op {
        Op::MatMul | Op::FusedMatMul | Op::Gemm | Op::MatMulInteger => {
            let a = dims(in0);
            // 2·M·N·K: each output element is a K-long dot product.
            let k = if op == Op::Gemm && attrs.and_then(|a| a.get("transA")) == Some(&Attr::Int(1))
            {
                a.first().copied().unwrap_or(1.0)
            } else {
                a.last().copied().unwrap_or(1.0)
            };
            2.0 * out_n * k + out_n
        }
        Op::Conv | Op::FusedConv | Op::ConvTranspose | Op::ConvInteger => {
            let w = dims(ins.get(1).copied().flatten());
            // Weight is [M, C/group, k...]: each output element reads C/group·Πk.
            let per: f64 = w.iter().skip(1).product();
            2.0 * out_n * per.max(1.0)
        }
        Op::Softmax | Op::LogSoftmax | Op::LayerNormalization | Op::RMSNormalization => 8.0 * out_n,
        Op::Attention => {
            let q = dims(in0);
            let k = dims(ins.get(1).copied().flatten());
            let s = k.get(k.len().saturating_sub(2)).copied().unwrap_or(1.0);
            4.0 * q.iter().product::<f64>() * s
        }
        Op::Exp | Op::Log | Op::Tanh | Op::Sigmoid | Op::Erf | Op::Gelu | Op::Sqrt | Op::Pow => {
            4.0 * out_n
        }
        Op::FusedElementwise => {
            let k = match attrs.and_then(|a| a.get("ops")) {
                Some(Attr::Strings(v)) => v.len() as f64,
                _ => 1.0,
            };
            4.0 * k * out_n
        }
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceMin => {
            in0.map(numel).unwrap_or(out_n)
        }
        _ => out_n,
    }
}

/// Ops that move or relabel data without arithmetic (their cost is memory).
fn pure_layout(op: Op) -> bool {
    matches!(
        op,
        Op::Reshape | Op::Squeeze | Op::Unsqueeze | Op::Flatten | Op::Identity
    )
}

impl RooflineCost<'_> {
    pub fn op_time(
        &self,
        op: Op,
        attrs: Option<&smelt_ir::Attrs>,
        ins: &[Option<&TensorType>],
        outs: &[TensorType],
    ) -> f64 {
        // A reshape is a view: no kernel, no traffic, but not free, so that
        // extraction still prefers removing it.
        if pure_layout(op) {
            return self.target.launch_cost * 0.01 + 1e-12;
        }
        let dtype = outs
            .first()
            .map(|t| t.dtype)
            .or_else(|| ins.first().copied().flatten().map(|t| t.dtype))
            .unwrap_or(DType::F32);
        let b: f64 = ins.iter().flatten().map(|t| bytes(t)).sum::<f64>()
            + outs.iter().map(bytes).sum::<f64>();
        self.target
            .kernel_time(flops(op, attrs, ins, outs), dtype, b)
    }
}

impl CostFunction<TNode> for RooflineCost<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &TNode, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = match enode {
            TNode::Op { op, args, .. } => {
                let eg = self.eg;
                let attrs = args
                    .first()
                    .and_then(|a| eg[*a].data.attrs.as_ref())
                    .map(|k| k.attrs());
                let ins: Vec<Option<&TensorType>> = enode
                    .inputs()
                    .iter()
                    .map(|i| class_ty(&eg[*i].data))
                    .collect();
                // The class's types are the node's: sound rules only join
                // classes of one type.
                let outs = &eg
                    .lookup(enode.clone())
                    .map(|c| eg[c].data.tys.clone())
                    .unwrap_or_default();
                if outs.is_empty() {
                    // A node whose type rule failed is never chosen.
                    1e30
                } else {
                    self.op_time(*op, attrs, &ins, outs)
                }
            }
            TNode::Proj { .. } => 1e-15,
            _ => 0.0,
        };
        enode.fold(own, |acc, c| acc + costs(c))
    }
}
