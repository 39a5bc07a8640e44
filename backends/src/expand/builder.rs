//! The graph an expansion writes into: new nodes get their output types from
//! the op's own type rule (with constant inputs' values, so Reshape and
//! friends infer static shapes), and an expansion that declines is undone.

use smelt_ir::attr::{Attr, Attrs};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::{self, Ctx, TypeInput};
use smelt_ir::{DType, Graph, Node, Op, TensorType, ValueId};

pub struct Builder {
    g: Graph,
    /// Constant values decoded once (type rules and expansions read them).
    known: Vec<Option<Tensor>>,
    prefix: String,
    count: usize,
}

/// Where to roll back to when an expansion declines.
pub struct Mark {
    nodes: usize,
    values: usize,
}

impl Builder {
    pub(super) fn new(g: Graph) -> Builder {
        Builder {
            g,
            known: Vec::new(),
            prefix: String::new(),
            count: 0,
        }
    }

    pub(super) fn keep(&mut self, node: Node) {
        self.g.add_node(node);
    }

    pub(super) fn begin(&mut self, idx: usize, node: &Node) {
        let base = if node.name.is_empty() {
            node.op.to_string()
        } else {
            node.name.clone()
        };
        self.prefix = format!("{base}#{idx}");
        self.count = 0;
    }

    pub(super) fn mark(&self) -> Mark {
        Mark {
            nodes: self.g.nodes.len(),
            values: self.g.values.len(),
        }
    }

    pub(super) fn rollback(&mut self, m: Mark) {
        self.g.nodes.truncate(m.nodes);
        self.g.values.truncate(m.values);
        self.g.consts.retain(|id, _| id.index() < m.values);
        self.known.truncate(m.values);
    }

    /// Makes `outs` the values of `node`'s outputs: each through an Identity
    /// into the original value, which keeps its name (graph outputs are
    /// bound by name) and its uses.
    pub(super) fn bind(&mut self, node: &Node, outs: &[Option<ValueId>]) -> Result<(), String> {
        for (k, o) in node.outputs.iter().enumerate() {
            let Some(o) = o else { continue };
            let Some(Some(v)) = outs.get(k) else {
                return Err(format!("the expansion does not produce output {k}"));
            };
            if v == o {
                continue;
            }
            let (want, got) = (&self.g.value(*o).ty, &self.g.value(*v).ty);
            if want.dtype != got.dtype {
                return Err(format!(
                    "output {k} would be {} where the node declares {}",
                    got.dtype, want.dtype
                ));
            }
            self.g.add_node(Node {
                op: Op::Identity,
                name: format!("{}.out{k}", self.prefix),
                inputs: vec![Some(*v)],
                outputs: vec![Some(*o)],
                attrs: Attrs::new(),
            });
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Graph {
        self.g
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.g.value(v).ty
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.value(v).ty.dtype
    }

    /// The static shape of `v`, if it has one.
    pub fn shape(&self, v: ValueId) -> Option<Vec<usize>> {
        self.g.value(v).ty.shape.as_static()
    }

    /// The value of `v` if it is a constant of the graph.
    pub fn known(&mut self, v: ValueId) -> Option<Tensor> {
        if self.known.len() < self.g.values.len() {
            self.known.resize(self.g.values.len(), None);
        }
        if self.known[v.index()].is_none() {
            let d = self.g.consts.get(&v)?;
            self.known[v.index()] = Tensor::from_data(d).ok();
        }
        self.known[v.index()].clone()
    }

    /// The optional input `i` of `n`.
    pub fn input(n: &Node, i: usize) -> Option<ValueId> {
        n.inputs.get(i).copied().flatten()
    }

    /// A new constant.
    pub fn constant(&mut self, t: &Tensor) -> Result<ValueId, String> {
        let data = t.to_data().map_err(|e| e.to_string())?;
        let name = self.fresh("c");
        Ok(self.g.add_const(name, data))
    }

    pub fn const_i64(&mut self, shape: &[usize], v: Vec<i64>) -> Result<ValueId, String> {
        self.constant(&Tensor::from_i64(DType::I64, shape.to_vec(), v))
    }

    pub fn const_f(
        &mut self,
        dtype: DType,
        shape: &[usize],
        v: Vec<f64>,
    ) -> Result<ValueId, String> {
        self.constant(&Tensor::from_f64(dtype, shape.to_vec(), v))
    }

    /// A scalar constant of `dtype` (float or integer).
    pub fn scalar(&mut self, dtype: DType, x: f64) -> Result<ValueId, String> {
        if dtype.is_float() {
            self.const_f(dtype, &[], vec![x])
        } else {
            self.constant(&Tensor::from_i64(dtype, vec![], vec![x as i64]))
        }
    }

    /// Adds `op(inputs) {attrs}` and returns its outputs (as many as the
    /// op's type rule gives), typed by that rule.
    pub fn node(
        &mut self,
        op: Op,
        inputs: &[Option<ValueId>],
        attrs: &[(&str, Attr)],
    ) -> Result<Vec<ValueId>, String> {
        let attrs: Attrs = smelt_ir::attr::with_defaults(
            op,
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        let imp = semantics::lookup(op).ok_or_else(|| format!("op {op} has no semantics"))?;
        let mut node = Node {
            op,
            name: self.fresh(&op.to_string()),
            inputs: inputs.to_vec(),
            outputs: Vec::new(),
            attrs,
        };
        let vals: Vec<Option<Tensor>> = inputs
            .iter()
            .map(|v| v.and_then(|v| self.known(v)))
            .collect();
        let tys: Vec<Option<TypeInput>> = inputs
            .iter()
            .zip(&vals)
            .map(|(v, val)| {
                v.map(|v| TypeInput {
                    ty: &self.g.value(v).ty,
                    value: val.as_ref(),
                })
            })
            .collect();
        let out_tys = (imp.infer)(&Ctx::new(&node), &tys).map_err(|e| format!("{op}: {}", e.0))?;
        let outs: Vec<ValueId> = out_tys
            .into_iter()
            .enumerate()
            .map(|(k, t)| {
                let name = format!("{}.{k}", node.name);
                self.g.add_value(name, t)
            })
            .collect();
        node.outputs = outs.iter().map(|&v| Some(v)).collect();
        self.g.add_node(node);
        Ok(outs)
    }

    /// A one-output node with every input given.
    pub fn op(
        &mut self,
        op: Op,
        inputs: &[ValueId],
        attrs: &[(&str, Attr)],
    ) -> Result<ValueId, String> {
        let ins: Vec<Option<ValueId>> = inputs.iter().map(|&v| Some(v)).collect();
        let outs = self.node(op, &ins, attrs)?;
        outs.first()
            .copied()
            .ok_or_else(|| format!("{op} has no output"))
    }

    /// `v` converted to `to` (itself when it already is).
    pub fn cast(&mut self, v: ValueId, to: DType) -> Result<ValueId, String> {
        if self.dtype(v) == to {
            return Ok(v);
        }
        let code = semantics::util::dtype_to_onnx(to)
            .ok_or_else(|| format!("{to} has no ONNX dtype code"))?;
        self.op(Op::Cast, &[v], &[("to", Attr::Int(code))])
    }

    fn fresh(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}.{what}{}", self.prefix, self.count)
    }
}
