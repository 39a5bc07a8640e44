//! A small graph builder: adds nodes one at a time and types each output
//! with the op's own type rule, so the graph is typed as it is built and a
//! wiring mistake fails here, naming the node, rather than at run time.

use super::CheckpointError;
use super::safetensors::Weights;
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::{self, Ctx, TypeInput};
use smelt_ir::{
    Attr, Attrs, Bytes, DType, Dim, Graph, Node, Op, Payload, Shape, TensorData, TensorType,
    ValueId,
};
use std::collections::{HashMap, HashSet};

pub type V = ValueId;

pub struct Builder<'w> {
    pub g: Graph,
    weights: &'w Weights,
    /// Contents of the small constants the builder made itself (shape
    /// vectors, axes), which type rules read to compute static shapes.
    small: HashMap<ValueId, Tensor>,
    names: HashSet<String>,
    /// Weights already added, so a tied weight is one constant.
    loaded: HashMap<String, ValueId>,
    counter: usize,
}

pub fn sym(s: &str) -> Dim {
    Dim::Sym(s.into())
}

pub fn st(n: usize) -> Dim {
    Dim::Static(n as u64)
}

impl<'w> Builder<'w> {
    pub fn new(name: &str, weights: &'w Weights) -> Self {
        Builder {
            g: Graph::new(name),
            weights,
            small: HashMap::new(),
            names: HashSet::new(),
            loaded: HashMap::new(),
            counter: 0,
        }
    }

    fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        while !self.names.insert(name.clone()) {
            self.counter += 1;
            name = format!("{hint}.{}", self.counter);
        }
        name
    }

    pub fn input(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> V {
        let n = self.fresh(name);
        let id = self
            .g
            .add_value(n, TensorType::new(dtype, Shape(Some(dims))));
        self.g.inputs.push(id);
        id
    }

    /// Marks `v` as a graph output called `name` with the declared type
    /// `dims` (symbolic dims where the type rules could not keep them).
    pub fn output(&mut self, v: V, name: &str, dims: Vec<Dim>) -> Result<(), CheckpointError> {
        let out = self.op(name, Op::Identity, &[Some(v)], vec![])?;
        let ty = &mut self.g.value_mut(out).ty;
        let declared = TensorType::new(ty.dtype, Shape(Some(dims)));
        *ty = smelt_ir::infer::merge(&declared, ty)
            .map_err(|m| CheckpointError::Graph(format!("output \"{name}\": {m}")))?;
        self.g.outputs.push(out);
        Ok(())
    }

    fn add_small(&mut self, hint: &str, t: Tensor, bytes: Vec<u8>) -> V {
        let name = self.fresh(hint);
        let data = TensorData::new(
            t.dtype,
            t.shape.clone(),
            Payload::Raw(Bytes::from_vec(bytes)),
        )
        .expect("length computed from the shape");
        let id = self.g.add_const(name, data);
        self.small.insert(id, t);
        id
    }

    pub fn ints(&mut self, hint: &str, v: &[i64]) -> V {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = Tensor::from_i64(DType::I64, vec![v.len()], v.to_vec());
        self.add_small(hint, t, bytes)
    }

    pub fn int_scalar(&mut self, hint: &str, x: i64) -> V {
        let t = Tensor::from_i64(DType::I64, vec![], vec![x]);
        self.add_small(hint, t, x.to_le_bytes().to_vec())
    }

    pub fn floats(&mut self, hint: &str, shape: Vec<usize>, v: &[f32]) -> V {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = Tensor::from_f64(DType::F32, shape, v.iter().map(|&x| x as f64).collect());
        self.add_small(hint, t, bytes)
    }

    pub fn float_scalar(&mut self, hint: &str, x: f32) -> V {
        self.floats(hint, vec![], &[x])
    }

    pub fn has_weight(&self, name: &str) -> bool {
        self.weights.contains(name)
    }

    /// The checkpoint tensor `name`, checked to have shape `shape`, as an
    /// f32 value. f16/bf16 weights stay in their dtype as constants (never
    /// widened in memory) and a Cast to f32 follows them: the graph computes
    /// in f32 and a backend may fuse the cast into the consumer.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> Result<V, CheckpointError> {
        let raw = self.weight_raw(name, shape)?;
        let dtype = self.g.value(raw).ty.dtype;
        match dtype {
            DType::F32 => Ok(raw),
            DType::F16 | DType::BF16 | DType::F64 => self.cast_f32(raw, &format!("{name}.f32")),
            d => Err(CheckpointError::Tensor {
                name: name.into(),
                msg: format!("dtype {d} is not a float dtype smelt can compute with"),
            }),
        }
    }

    pub fn cast_f32(&mut self, v: V, hint: &str) -> Result<V, CheckpointError> {
        if self.g.value(v).ty.dtype == DType::F32 {
            return Ok(v);
        }
        self.op(hint, Op::Cast, &[Some(v)], vec![("to", Attr::Int(1))])
    }

    /// The checkpoint tensor in its stored dtype.
    pub fn weight_raw(&mut self, name: &str, shape: &[usize]) -> Result<V, CheckpointError> {
        let Some(e) = self.weights.get(name) else {
            return Err(CheckpointError::MissingTensor(name.into()));
        };
        if e.shape != shape {
            return Err(CheckpointError::Shape {
                name: name.into(),
                expected: shape.to_vec(),
                actual: e.shape.clone(),
            });
        }
        if let Some(&id) = self.loaded.get(name) {
            return Ok(id);
        }
        let data = TensorData::new(e.dtype, e.shape.clone(), Payload::Raw(e.bytes.clone()))
            .map_err(|err| CheckpointError::Tensor {
                name: name.into(),
                msg: err.to_string(),
            })?;
        let n = self.fresh(name);
        let id = self.g.add_const(n, data);
        self.loaded.insert(name.into(), id);
        Ok(id)
    }

    /// Adds a node with one output.
    pub fn op(
        &mut self,
        hint: &str,
        op: Op,
        inputs: &[Option<V>],
        attrs: Vec<(&str, Attr)>,
    ) -> Result<V, CheckpointError> {
        Ok(self.op_n(hint, op, inputs, attrs, 1)?[0])
    }

    pub fn op_n(
        &mut self,
        hint: &str,
        op: Op,
        inputs: &[Option<V>],
        attrs: Vec<(&str, Attr)>,
        n_out: usize,
    ) -> Result<Vec<V>, CheckpointError> {
        let attrs: Attrs = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let name = self.fresh(hint);
        let mut node = Node {
            op,
            name: name.clone(),
            inputs: inputs.to_vec(),
            // Type rules such as Split's count the node's outputs.
            outputs: vec![None; n_out],
            attrs,
        };
        let imp = semantics::lookup(op)
            .ok_or_else(|| CheckpointError::Graph(format!("op {op} has no semantics")))?;
        let tys = {
            let ins: Vec<Option<TypeInput>> = inputs
                .iter()
                .map(|x| {
                    x.map(|id| TypeInput {
                        ty: &self.g.value(id).ty,
                        value: self.small.get(&id),
                    })
                })
                .collect();
            (imp.infer)(&Ctx::new(&node), &ins)
                .map_err(|e| CheckpointError::Graph(format!("node \"{name}\" ({op}): {}", e.0)))?
        };
        let mut outs = Vec::with_capacity(n_out);
        for (i, ty) in tys.into_iter().take(n_out).enumerate() {
            let vname = if i == 0 {
                name.clone()
            } else {
                self.fresh(&format!("{name}:{i}"))
            };
            outs.push(self.g.add_value(vname, ty));
        }
        if outs.len() != n_out {
            return Err(CheckpointError::Graph(format!(
                "node \"{name}\" ({op}) has fewer than {n_out} outputs"
            )));
        }
        node.outputs = outs.iter().map(|&o| Some(o)).collect();
        self.g.add_node(node);
        Ok(outs)
    }

    // Shorthands for the ops the model builders use over and over.

    pub fn bin(&mut self, hint: &str, op: Op, a: V, b: V) -> Result<V, CheckpointError> {
        self.op(hint, op, &[Some(a), Some(b)], vec![])
    }

    pub fn un(&mut self, hint: &str, op: Op, a: V) -> Result<V, CheckpointError> {
        self.op(hint, op, &[Some(a)], vec![])
    }

    pub fn reshape(&mut self, hint: &str, x: V, shape: &[i64]) -> Result<V, CheckpointError> {
        let s = self.ints(&format!("{hint}.shape"), shape);
        self.op(hint, Op::Reshape, &[Some(x), Some(s)], vec![])
    }

    pub fn transpose(&mut self, hint: &str, x: V, perm: &[i64]) -> Result<V, CheckpointError> {
        self.op(
            hint,
            Op::Transpose,
            &[Some(x)],
            vec![("perm", Attr::Ints(perm.to_vec()))],
        )
    }

    pub fn unsqueeze(&mut self, hint: &str, x: V, axes: &[i64]) -> Result<V, CheckpointError> {
        let a = self.ints(&format!("{hint}.axes"), axes);
        self.op(hint, Op::Unsqueeze, &[Some(x), Some(a)], vec![])
    }

    /// Elements `[start, end)` of the last axis.
    pub fn slice_last(
        &mut self,
        hint: &str,
        x: V,
        start: i64,
        end: i64,
    ) -> Result<V, CheckpointError> {
        let s = self.ints(&format!("{hint}.starts"), &[start]);
        let e = self.ints(&format!("{hint}.ends"), &[end]);
        let a = self.ints(&format!("{hint}.axes"), &[-1]);
        self.op(
            hint,
            Op::Slice,
            &[Some(x), Some(s), Some(e), Some(a)],
            vec![],
        )
    }

    /// `x @ W^T (+ b)` for a `torch.nn.Linear` weight `[out, in]`.
    pub fn linear(
        &mut self,
        x: V,
        prefix: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<V, CheckpointError> {
        let w = self.weight(&format!("{prefix}.weight"), &[out, inp])?;
        let wt = self.transpose(&format!("{prefix}.weight.T"), w, &[1, 0])?;
        let y = self.bin(prefix, Op::MatMul, x, wt)?;
        if bias {
            let b = self.weight(&format!("{prefix}.bias"), &[out])?;
            self.bin(&format!("{prefix}.out"), Op::Add, y, b)
        } else {
            Ok(y)
        }
    }

    /// The scalar `x.shape[axis]` (i64).
    pub fn dim(&mut self, hint: &str, x: V, axis: i64) -> Result<V, CheckpointError> {
        let s = self.un(&format!("{hint}.shape"), Op::Shape, x)?;
        let i = self.int_scalar(&format!("{hint}.index"), axis);
        self.op(
            hint,
            Op::Gather,
            &[Some(s), Some(i)],
            vec![("axis", Attr::Int(0))],
        )
    }
}
