//! The driver: values to HBM buffers, constants folded at compile time,
//! one lowering per op, graph outputs copied into their regions.

use super::program::{Buf, Home, Mem, Program};
use super::{Error, Options, movement};
use smelt_ir::interp::Tensor;
use smelt_ir::{DType, Graph, Node, Op, ValueId};
use smelt_runtime::maia::{Artifact, Dt, HwConfig, IoBinding};
use std::collections::{HashMap, HashSet};

/// Where a value lives: a buffer, a byte offset into it, its storage
/// dtype (`mult` storage elements per graph element: an i64 is two i32
/// words) and its static shape.
#[derive(Clone, Debug)]
pub struct TRef {
    pub buf: Buf,
    pub off: u64,
    pub dt: Dt,
    pub mult: u64,
    pub gdt: DType,
    pub shape: Vec<usize>,
}

impl TRef {
    pub fn numel(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64
    }
    /// Address of graph element `i` (storage offset i·mult).
    pub fn at(&self, i: u64) -> Mem {
        Mem::Hbm(self.buf, self.off + self.dt.bytes(i * self.mult))
    }
}

/// How a graph dtype is stored: the command-stream dtype and how many of
/// its elements one graph element takes. Floats the DMA can convert keep
/// their own dtype; other fixed-width types travel as raw words.
pub fn storage(d: DType) -> Option<(Dt, u64)> {
    Some(match d {
        DType::F32 => (Dt::F32, 1),
        DType::F16 => (Dt::F16, 1),
        DType::BF16 => (Dt::BF16, 1),
        DType::F8E4M3FN => (Dt::F8E4M3, 1),
        DType::F8E5M2 => (Dt::F8E5M2, 1),
        DType::I32 | DType::U32 => (Dt::I32, 1),
        DType::F8E4M3FNUZ => (Dt::F8E4M3Fnuz, 1),
        DType::F8E5M2FNUZ => (Dt::F8E5M2Fnuz, 1),
        DType::F64 => (Dt::F64, 1),
        DType::I4 => (Dt::I4, 1),
        DType::U4 => (Dt::U4, 1),
        DType::I2 => (Dt::I2, 1),
        DType::U2 => (Dt::U2, 1),
        DType::F4E2M1 => (Dt::F4E2M1, 1),
        DType::F8E8M0 => (Dt::F8E8M0, 1),
        DType::I64 | DType::U64 => (Dt::I32, 2),
        DType::I16 | DType::U16 => (Dt::F16, 1),
        DType::I8 | DType::U8 | DType::Bool => (Dt::I8, 1),
        _ => return None,
    })
}

pub struct Lw<'g> {
    pub g: &'g Graph,
    pub p: Program,
    pub opts: Options,
    vals: HashMap<ValueId, TRef>,
    /// Graph outputs computed by a node, written straight into their region.
    direct: HashMap<ValueId, TRef>,
    /// Values known at compile time (graph constants and folded nodes).
    known: HashMap<ValueId, Tensor>,
    /// Types made static by re-running type inference with the values
    /// known at compile time (the importer could not see folded ones).
    types: HashMap<ValueId, smelt_ir::TensorType>,
    /// The node being lowered, for error messages.
    pub node_op: String,
    /// Derived tensors already made (a value converted to the tensor
    /// unit's dtype, a mask broadcast for attention), by description: the
    /// next user reuses them instead of repeating the phase.
    pub memo: HashMap<String, TRef>,
    /// Index in `g.nodes` of the node being lowered.
    pub pos: usize,
    /// Later nodes already lowered together with an earlier one (sibling
    /// matmuls sharing their A): the node loop skips them.
    pub done: HashSet<usize>,
}

/// An "unsupported" error for the op being lowered (the target name is
/// filled in by `compile`).
pub fn unsup(op: impl std::fmt::Display, why: impl Into<String>) -> Error {
    Error::Unsupported {
        target: String::new(),
        op: op.to_string(),
        why: why.into(),
    }
}

/// Compiles a graph with static shapes for the chip `hw` (`target` names it
/// in messages).
pub fn compile(g: &Graph, hw: &HwConfig, target: &str, opts: &Options) -> Result<Artifact, Error> {
    let r = compile_inner(g, hw, opts);
    r.map_err(|e| match e {
        Error::Unsupported { op, why, .. } => Error::Unsupported {
            target: target.to_string(),
            op,
            why,
        },
        e => e,
    })
}

fn compile_inner(g: &Graph, hw: &HwConfig, opts: &Options) -> Result<Artifact, Error> {
    let expanded = crate::expand::run(g, &super::expands).map_err(Error::Graph)?;
    let g = &expanded;
    let mut lw = Lw {
        g,
        p: Program::new(hw.clone()),
        opts: opts.clone(),
        vals: HashMap::new(),
        direct: HashMap::new(),
        known: HashMap::new(),
        types: HashMap::new(),
        memo: HashMap::new(),
        node_op: String::new(),
        pos: 0,
        done: HashSet::new(),
    };
    for &v in &g.inputs {
        let (shape, gdt) = lw.static_ty(v)?;
        let name = &g.value(v).name;
        let r = lw.region_for(&format!("in.{name}"), Home::Input, gdt, &shape)?;
        lw.p.io
            .inputs
            .push(binding(name, &format!("in.{name}"), gdt, &shape));
        lw.vals.insert(v, r);
    }
    let mut outs: HashMap<ValueId, TRef> = HashMap::new();
    for &v in &g.outputs {
        if outs.contains_key(&v) {
            continue;
        }
        let (shape, gdt) = lw.static_ty(v)?;
        let name = &g.value(v).name;
        let r = lw.region_for(&format!("out.{name}"), Home::Output, gdt, &shape)?;
        outs.insert(v, r);
    }
    for &v in &g.outputs {
        let (shape, gdt) = lw.static_ty(v)?;
        let name = &g.value(v).name;
        lw.p.io
            .outputs
            .push(binding(name, &format!("out.{name}"), gdt, &shape));
    }
    // Outputs computed by an op are written in place; the rest (inputs,
    // constants, aliases) are copied at the end.
    let produced: std::collections::HashSet<ValueId> = g
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().flatten().copied())
        .collect();
    let mut direct = outs.clone();
    direct.retain(|v, _| produced.contains(v) && !g.inputs.contains(v));
    lw.direct = direct;
    for (i, node) in g.nodes.iter().enumerate() {
        if lw.done.contains(&i) {
            continue;
        }
        lw.pos = i;
        lw.node_op = node.op.to_string();
        lw.node(node)?;
    }
    for (&v, dst) in &outs {
        let src = lw.val(v)?;
        if src.buf == dst.buf && src.off == dst.off {
            continue;
        }
        lw.p.phase();
        movement::copy_flat(&mut lw.p, &src, dst)?;
    }
    lw.p.finish()
}

fn binding(name: &str, region: &str, d: DType, shape: &[usize]) -> IoBinding {
    IoBinding {
        name: name.to_string(),
        region: region.to_string(),
        dtype: d.name().to_string(),
        shape: shape.iter().map(|&x| x as u64).collect(),
    }
}

impl Lw<'_> {
    pub fn static_ty(&self, v: ValueId) -> Result<(Vec<usize>, DType), Error> {
        if let Some(t) = self.types.get(&v)
            && let Some(s) = t.shape.as_static()
        {
            return Ok((s, t.dtype));
        }
        let val = self.g.value(v);
        let shape = val.ty.shape.as_static().ok_or_else(|| {
            unsup(
                &self.node_op,
                format!("value `{}` has the dynamic shape {}", val.name, val.ty),
            )
        })?;
        Ok((shape, val.ty.dtype))
    }

    fn region_for(
        &mut self,
        name: &str,
        home: Home,
        gdt: DType,
        shape: &[usize],
    ) -> Result<TRef, Error> {
        let (dt, mult) =
            storage(gdt).ok_or_else(|| unsup(&self.node_op, format!("dtype {gdt}")))?;
        let n = shape.iter().product::<usize>() as u64;
        let buf = self
            .p
            .buffer(name, dt.bytes(n * mult), home, dt, vec![n * mult]);
        Ok(TRef {
            buf,
            off: 0,
            dt,
            mult,
            gdt,
            shape: shape.to_vec(),
        })
    }

    /// A value known at compile time.
    pub fn known(&mut self, v: ValueId) -> Option<Tensor> {
        if let Some(t) = self.known.get(&v) {
            return Some(t.clone());
        }
        let d = self.g.consts.get(&v)?;
        let t = Tensor::from_data(d).ok()?;
        self.known.insert(v, t.clone());
        Some(t)
    }

    pub fn known_input(&mut self, n: &Node, i: usize) -> Option<Tensor> {
        let v = (*n.inputs.get(i)?)?;
        self.known(v)
    }

    /// The buffer holding value `v` (constants get an initialized region).
    pub fn val(&mut self, v: ValueId) -> Result<TRef, Error> {
        if let Some(r) = self.vals.get(&v) {
            return Ok(r.clone());
        }
        let Some(t) = self.known(v) else {
            return Err(Error::Graph(format!(
                "value `{}` is used before it is computed",
                self.g.value(v).name
            )));
        };
        let r = self.weight(&format!("w.{}", self.g.value(v).name), &t)?;
        self.vals.insert(v, r.clone());
        Ok(r)
    }

    /// Places a compile-time tensor in HBM.
    pub fn weight(&mut self, name: &str, t: &Tensor) -> Result<TRef, Error> {
        let (dt, mult) =
            storage(t.dtype).ok_or_else(|| unsup(&self.node_op, format!("dtype {}", t.dtype)))?;
        let data = t
            .to_data()
            .map_err(|e| Error::Graph(format!("constant `{name}`: {e}")))?;
        let bytes = data
            .raw()
            .ok_or_else(|| unsup(&self.node_op, format!("constant of dtype {}", t.dtype)))?
            .to_vec();
        let n = t.numel() as u64;
        let buf = self.p.buffer(
            name,
            bytes.len() as u64,
            Home::Weight(bytes),
            dt,
            vec![n * mult],
        );
        Ok(TRef {
            buf,
            off: 0,
            dt,
            mult,
            gdt: t.dtype,
            shape: t.shape.clone(),
        })
    }

    pub fn input(&mut self, n: &Node, i: usize) -> Result<TRef, Error> {
        let v = n
            .inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| Error::Graph(format!("{}: input {i} is missing", n.describe())))?;
        self.val(v)
    }

    /// Whether `v` can be read now: computed already or known.
    pub fn available(&self, v: ValueId) -> bool {
        self.vals.contains_key(&v) || self.is_known(v)
    }

    /// Whether `v` is known at compile time (without materializing it).
    pub fn is_known(&self, v: ValueId) -> bool {
        self.known.contains_key(&v) || self.g.consts.contains_key(&v)
    }

    pub fn has_input(n: &Node, i: usize) -> bool {
        n.inputs.get(i).copied().flatten().is_some()
    }

    /// The buffer for output `i` of `n`: its output region if it is a graph
    /// output, else a fresh arena buffer.
    pub fn output(&mut self, n: &Node, i: usize) -> Result<TRef, Error> {
        let v = n
            .outputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| Error::Graph(format!("{}: output {i} is missing", n.describe())))?;
        let r = match self.direct.get(&v) {
            Some(r) => r.clone(),
            None => {
                let (shape, gdt) = self.static_ty(v)?;
                let name = self.g.value(v).name.clone();
                self.region_for(&name, Home::Arena, gdt, &shape)?
            }
        };
        self.vals.insert(v, r.clone());
        Ok(r)
    }

    /// Like `output`, but stored as `sdt` (an f32 value whose only reader
    /// narrows it anyway); never for graph outputs, which keep their dtype.
    pub fn output_stored(&mut self, n: &Node, i: usize, sdt: DType) -> Result<TRef, Error> {
        let v = n
            .outputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| Error::Graph(format!("{}: output {i} is missing", n.describe())))?;
        if self.direct.contains_key(&v) {
            return self.output(n, i);
        }
        let (shape, gdt) = self.static_ty(v)?;
        let name = self.g.value(v).name.clone();
        let mut r = self.region_for(&name, Home::Arena, sdt, &shape)?;
        r.gdt = gdt;
        self.vals.insert(v, r.clone());
        Ok(r)
    }

    /// Makes output `i` of `n` a view of an existing buffer (reshapes).
    pub fn alias(&mut self, n: &Node, i: usize, src: &TRef) -> Result<(), Error> {
        let Some(v) = n.outputs.get(i).copied().flatten() else {
            return Ok(());
        };
        let (shape, gdt) = self.static_ty(v)?;
        if let Some(dst) = self.direct.get(&v).cloned() {
            self.p.phase();
            movement::copy_flat(&mut self.p, src, &dst)?;
            self.vals.insert(v, dst);
            return Ok(());
        }
        let mut r = src.clone();
        r.shape = shape;
        r.gdt = gdt;
        self.vals.insert(v, r);
        Ok(())
    }

    /// A scratch f32 tensor in the arena.
    pub fn temp_f32(&mut self, name: &str, shape: &[usize]) -> TRef {
        let n = shape.iter().product::<usize>() as u64;
        let buf = self.p.temp(name, 4 * n);
        TRef {
            buf,
            off: 0,
            dt: Dt::F32,
            mult: 1,
            gdt: DType::F32,
            shape: shape.to_vec(),
        }
    }

    /// A scratch tensor like `like` (same dtype) with another shape.
    pub fn temp_like(&mut self, name: &str, like: &TRef, shape: &[usize]) -> TRef {
        let n = shape.iter().product::<usize>() as u64;
        let buf = self.p.temp(name, like.dt.bytes(n * like.mult));
        TRef {
            buf,
            off: 0,
            dt: like.dt,
            mult: like.mult,
            gdt: like.gdt,
            shape: shape.to_vec(),
        }
    }

    /// Tries to evaluate a node whose inputs are all known; true if folded.
    fn fold(&mut self, n: &Node) -> Result<bool, Error> {
        let mut ins: Vec<Option<Tensor>> = Vec::with_capacity(n.inputs.len());
        let shape_like = matches!(n.op, Op::Shape | Op::Size);
        for (i, v) in n.inputs.iter().enumerate() {
            match v {
                None => ins.push(None),
                Some(v) => match self.known(*v) {
                    Some(t) => ins.push(Some(t)),
                    // Shape and Size only need the (static) type.
                    None if shape_like && i == 0 => {
                        let (shape, gdt) = self.static_ty(*v)?;
                        let numel: usize = shape.iter().product();
                        if numel > 1 << 20 {
                            return Ok(false);
                        }
                        ins.push(Some(Tensor::from_f64(
                            if gdt.is_float() { gdt } else { DType::F32 },
                            shape,
                            vec![0.0; numel],
                        )));
                    }
                    None => return Ok(false),
                },
            }
        }
        // Large folds belong on the chip, not in the compiler.
        let big = ins.iter().flatten().map(|t| t.numel()).sum::<usize>() > 1 << 22;
        if big || n.op == Op::RandomNormal || n.op == Op::RandomUniform {
            return Ok(false);
        }
        let Some(imp) = smelt_ir::semantics::lookup(n.op) else {
            return Ok(false);
        };
        let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
        let ctx = smelt_ir::semantics::Ctx::new(n);
        let Ok(outs) = (imp.kernel)(&ctx, &refs) else {
            return Ok(false);
        };
        for (o, t) in n.outputs.iter().zip(outs) {
            if let Some(o) = o {
                self.known.insert(*o, t);
            }
        }
        Ok(true)
    }

    /// Re-infers the output types of `n` from the current (refined) input
    /// types and known values, where the graph left them non-static.
    pub fn refine(&mut self, n: &Node) {
        let need = n
            .outputs
            .iter()
            .flatten()
            .any(|&o| self.static_ty(o).is_err());
        let Some(imp) = smelt_ir::semantics::lookup(n.op) else {
            return;
        };
        if !need {
            return;
        }
        let tys: Vec<Option<smelt_ir::TensorType>> = n
            .inputs
            .iter()
            .map(|v| {
                v.map(|v| {
                    self.types
                        .get(&v)
                        .cloned()
                        .unwrap_or_else(|| self.g.value(v).ty.clone())
                })
            })
            .collect();
        let vals: Vec<Option<Tensor>> = n
            .inputs
            .iter()
            .map(|v| v.and_then(|v| self.known(v)))
            .collect();
        let ins: Vec<Option<smelt_ir::semantics::TypeInput>> = tys
            .iter()
            .zip(&vals)
            .map(|(t, v)| {
                t.as_ref().map(|ty| smelt_ir::semantics::TypeInput {
                    ty,
                    value: v.as_ref(),
                })
            })
            .collect();
        if let Ok(outs) = (imp.infer)(&smelt_ir::semantics::Ctx::new(n), &ins) {
            for (o, t) in n.outputs.iter().zip(outs) {
                if let Some(o) = o
                    && t.shape.as_static().is_some()
                {
                    self.types.insert(*o, t);
                }
            }
        }
    }

    fn node(&mut self, n: &Node) -> Result<(), Error> {
        self.refine(n);
        if self.fold(n)? {
            return Ok(());
        }
        for v in n.inputs.iter().flatten().chain(n.outputs.iter().flatten()) {
            let (_, d) = self.static_ty(*v)?;
            if storage(d).is_none() {
                return Err(unsup(n.op, format!("dtype {d}")));
            }
        }
        super::dispatch(self, n)
    }
}
