//! The ONNX importer: parses a ModelProto, converts weights without copying
//! them, rewrites ops of older opsets into the IR's (newest) forms, sorts
//! nodes, infers types node by node and folds small constant computations.

mod attrs;
mod legacy;
pub(crate) mod tensor;

use onnx_protobuf::{Message, ModelProto, NodeProto, ValueInfoProto};
use smelt_ir::infer::{infer_node, merge};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::{self, Ctx};
use smelt_ir::{
    Attr, Attrs, DType, Dim, Graph, Node, Op, Payload, Shape, TensorData, TensorType, ValueId,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tensor::{ExternalData, TensorErr};

/// Why a model could not be imported. Every message is one line and names
/// the file, tensor, value or node at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {msg}")]
    Io { file: String, msg: String },
    #[error("{file}: not a valid ONNX model ({msg})")]
    Parse { file: String, msg: String },
    /// The op (or this opset's form of it) has no semantics in smelt yet.
    #[error("node \"{node}\" ({op}, {domain} opset {opset}) is not supported")]
    Unsupported {
        op: String,
        domain: String,
        opset: i64,
        node: String,
    },
    /// A valid model feature smelt does not handle (subgraphs, sequences,
    /// sparse tensors, complex numbers, ...).
    #[error("{0}")]
    UnsupportedFeature(String),
    #[error("tensor \"{name}\": {msg}")]
    Tensor { name: String, msg: String },
    #[error("node \"{node}\" ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    #[error("{0}")]
    Graph(String),
    #[error("the imported graph does not verify: {0}")]
    Verify(#[from] smelt_ir::VerifyError),
}

impl ImportError {
    /// Whether the model is valid but uses something smelt does not support
    /// (as opposed to a broken model).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            ImportError::Unsupported { .. } | ImportError::UnsupportedFeature(_)
        )
    }
}

/// Imports a model file. External data is resolved only inside the model's folder.
pub fn import_file(path: &Path) -> Result<Graph, ImportError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        file: file.clone(),
        msg: e.to_string(),
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    import_impl(bytes, Some(base), &file)
}

/// Imports from bytes; `base_dir` is the folder for external data (None: external data is an error).
pub fn import_bytes(bytes: Vec<u8>, base_dir: Option<&Path>) -> Result<Graph, ImportError> {
    import_impl(bytes, base_dir, "model")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn norm_domain(d: &str) -> &str {
    if d.is_empty() { "ai.onnx" } else { d }
}

fn import_impl(bytes: Vec<u8>, base: Option<&Path>, file: &str) -> Result<Graph, ImportError> {
    let bad = |msg: String| ImportError::Parse {
        file: file.to_string(),
        msg,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let mut model =
        ModelProto::parse_from_bytes(&bytes).map_err(|e| bad(one_line(&e.to_string())))?;
    drop(bytes);
    if model.ir_version <= 0 {
        return Err(bad("no ir_version".into()));
    }
    let Some(graph) = model.graph.take() else {
        return Err(bad("no graph".into()));
    };
    let mut opsets = HashMap::new();
    for o in &model.opset_import {
        opsets.insert(norm_domain(&o.domain).to_string(), o.version);
    }
    let mut im = Importer {
        g: Graph::new(graph.name.clone()),
        names: HashMap::new(),
        taken: HashSet::new(),
        known: Vec::new(),
        declared: HashMap::new(),
        opsets,
        ext: ExternalData::new(base),
        counter: 0,
    };
    im.run(graph, model.ir_version)?;
    smelt_ir::verify(&im.g)?;
    Ok(im.g)
}

/// Where an emitted IR node came from, for error messages.
pub(crate) struct Src {
    pub label: String,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub opset: i64,
}

impl Src {
    pub(crate) fn unsupported(&self) -> ImportError {
        ImportError::Unsupported {
            op: self.op_type.clone(),
            domain: self.domain.clone(),
            opset: self.opset,
            node: self.label.clone(),
        }
    }

    pub(crate) fn err(&self, msg: impl Into<String>) -> ImportError {
        ImportError::Node {
            node: self.label.clone(),
            op: self.op_type.clone(),
            msg: msg.into(),
        }
    }
}

/// How errors name an ONNX node: its name, or its position and first output.
fn node_label(n: &NodeProto, idx: usize) -> String {
    if !n.name.is_empty() {
        return n.name.clone();
    }
    match n.output.iter().find(|o| !o.is_empty()) {
        Some(o) => format!("#{idx} -> {o}"),
        None => format!("#{idx}"),
    }
}

/// Constants with at most this many elements are decoded for shape
/// inference and folding; node outputs up to this size are folded.
const FOLD_LIMIT: usize = 1 << 16;

pub(crate) struct Importer {
    pub(crate) g: Graph,
    names: HashMap<String, ValueId>,
    /// Every name in the model plus every generated one.
    taken: HashSet<String>,
    /// Decoded contents of small constants, by value id.
    known: Vec<Option<Tensor>>,
    declared: HashMap<String, TensorType>,
    opsets: HashMap<String, i64>,
    ext: ExternalData,
    counter: usize,
}

fn tensor_err(name: &str, e: TensorErr) -> ImportError {
    match e {
        TensorErr::Unsupported(m) => {
            ImportError::UnsupportedFeature(format!("tensor \"{name}\" {m}"))
        }
        TensorErr::Invalid(m) => ImportError::Tensor {
            name: name.to_string(),
            msg: m,
        },
    }
}

/// The declared type of a graph input/output or value_info entry.
fn value_type(vi: &ValueInfoProto) -> Result<Option<TensorType>, ImportError> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as DimV;
    use onnx_protobuf::type_proto::Value as TV;
    let name = &vi.name;
    let Some(tp) = vi.type_.as_ref() else {
        return Ok(None);
    };
    let t = match &tp.value {
        None => return Ok(None),
        Some(TV::TensorType(t)) => t,
        Some(other) => {
            let kind = match other {
                TV::SequenceType(_) => "a sequence",
                TV::MapType(_) => "a map",
                TV::OptionalType(_) => "an optional",
                TV::SparseTensorType(_) => "a sparse tensor",
                _ => "a non-tensor",
            };
            return Err(ImportError::UnsupportedFeature(format!(
                "value \"{name}\" has {kind} type; only tensors are supported"
            )));
        }
    };
    if t.elem_type == 0 {
        return Ok(None);
    }
    let dtype = tensor::dtype_of_code(t.elem_type).map_err(|e| match e {
        TensorErr::Unsupported(m) => {
            ImportError::UnsupportedFeature(format!("value \"{name}\" {m}"))
        }
        TensorErr::Invalid(m) => ImportError::Graph(format!("value \"{name}\" {m}")),
    })?;
    let shape = match t.shape.as_ref() {
        None => Shape::unknown(),
        Some(s) => {
            let mut dims = Vec::with_capacity(s.dim.len());
            for d in &s.dim {
                dims.push(match &d.value {
                    Some(DimV::DimValue(v)) if *v >= 0 => Dim::Static(*v as u64),
                    Some(DimV::DimValue(v)) => {
                        return Err(ImportError::Graph(format!(
                            "value \"{name}\" has negative dimension {v}"
                        )));
                    }
                    Some(DimV::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                    _ => Dim::Unknown,
                });
            }
            Shape(Some(dims))
        }
    };
    Ok(Some(TensorType::new(dtype, shape)))
}

impl Importer {
    fn run(
        &mut self,
        mut graph: onnx_protobuf::GraphProto,
        ir_version: i64,
    ) -> Result<(), ImportError> {
        if !graph.sparse_initializer.is_empty() {
            return Err(ImportError::UnsupportedFeature(
                "the model has sparse initializers: sparse tensors are not supported".into(),
            ));
        }
        for vi in graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
        {
            self.taken.insert(vi.name.clone());
        }
        for t in &graph.initializer {
            self.taken.insert(t.name.clone());
        }
        for n in &graph.node {
            self.taken.extend(n.output.iter().cloned());
        }
        for vi in &graph.value_info {
            // Types of intermediate values are hints; non-tensor ones belong
            // to ops that are refused on their own.
            if let Ok(Some(t)) = value_type(vi) {
                self.declared.insert(vi.name.clone(), t);
            }
        }
        for vi in &graph.output {
            if let Some(t) = value_type(vi)? {
                self.declared.insert(vi.name.clone(), t);
            }
        }
        let mut inits: HashMap<String, onnx_protobuf::TensorProto> = HashMap::new();
        let mut init_order = Vec::new();
        for t in std::mem::take(&mut graph.initializer) {
            if t.name.is_empty() {
                return Err(ImportError::Graph("an initializer has no name".into()));
            }
            if inits.contains_key(&t.name) {
                return Err(ImportError::Graph(format!(
                    "initializer \"{}\" is given twice",
                    t.name
                )));
            }
            init_order.push(t.name.clone());
            inits.insert(t.name.clone(), t);
        }
        // Before IR version 4 every initializer had to be listed as an input,
        // so there the listing does not make it overridable.
        let inputs_override = ir_version >= 4;
        for vi in &graph.input {
            if vi.name.is_empty() {
                return Err(ImportError::Graph("a graph input has no name".into()));
            }
            if self.names.contains_key(&vi.name) {
                return Err(ImportError::Graph(format!(
                    "graph input \"{}\" is listed twice",
                    vi.name
                )));
            }
            let has_init = inits.contains_key(&vi.name);
            if has_init && !inputs_override {
                continue;
            }
            let declared = value_type(vi)?;
            let ty = match (declared, inits.get_mut(&vi.name)) {
                (Some(t), _) => t,
                (None, Some(t)) => {
                    let dtype =
                        tensor::dtype_of_code(t.data_type).map_err(|e| tensor_err(&vi.name, e))?;
                    let mut dims = Vec::new();
                    for &d in &t.dims {
                        if d < 0 {
                            return Err(tensor_err(
                                &vi.name,
                                TensorErr::Invalid(format!("has negative dimension {d}")),
                            ));
                        }
                        dims.push(Dim::Static(d as u64));
                    }
                    TensorType::new(dtype, Shape(Some(dims)))
                }
                (None, None) => {
                    return Err(ImportError::Graph(format!(
                        "graph input \"{}\" has no tensor type",
                        vi.name
                    )));
                }
            };
            if has_init {
                // Still check the default is well-formed.
                let mut t = inits.remove(&vi.name).unwrap_or_default();
                tensor::tensor_data(&mut t, &mut self.ext).map_err(|e| tensor_err(&vi.name, e))?;
            }
            let id = self.g.add_value(vi.name.clone(), ty);
            self.names.insert(vi.name.clone(), id);
            self.g.inputs.push(id);
        }
        for name in init_order {
            let Some(mut t) = inits.remove(&name) else {
                continue;
            };
            if self.names.contains_key(&name) {
                continue;
            }
            let data =
                tensor::tensor_data(&mut t, &mut self.ext).map_err(|e| tensor_err(&name, e))?;
            if let Some(d) = self.declared.get(&name) {
                merge(d, &data.ty()).map_err(|m| ImportError::Tensor {
                    name: name.clone(),
                    msg: m,
                })?;
            }
            self.add_const(name, data);
        }
        let mut nodes = std::mem::take(&mut graph.node);
        self.check_supported(&nodes)?;
        let order = self.toposort(&nodes)?;
        for i in order {
            let n = std::mem::take(&mut nodes[i]);
            self.node(n, i)?;
        }
        for vi in &graph.output {
            let Some(&id) = self.names.get(&vi.name) else {
                return Err(ImportError::Graph(format!(
                    "graph output \"{}\" is never defined",
                    vi.name
                )));
            };
            self.g.outputs.push(id);
        }
        Ok(())
    }

    pub(crate) fn opset(&self, domain: &str) -> i64 {
        self.opsets.get(norm_domain(domain)).copied().unwrap_or(0)
    }

    fn src(&self, n: &NodeProto, idx: usize) -> Src {
        let domain = norm_domain(&n.domain).to_string();
        Src {
            label: node_label(n, idx),
            name: n.name.clone(),
            op_type: n.op_type.clone(),
            opset: self.opset(&domain),
            domain,
        }
    }

    /// Refuses unsupported ops before anything else, so that a model using
    /// one is classified as unsupported rather than as broken.
    fn check_supported(&self, nodes: &[NodeProto]) -> Result<(), ImportError> {
        use onnx_protobuf::attribute_proto::AttributeType as AT;
        for (i, n) in nodes.iter().enumerate() {
            let src = self.src(n, i);
            if n.op_type == "Constant" && src.domain == "ai.onnx" {
                continue;
            }
            let op = legacy::target_op(&src).ok_or_else(|| src.unsupported())?;
            if semantics::lookup(op).is_none() {
                return Err(src.unsupported());
            }
            for a in &n.attribute {
                if matches!(a.type_.enum_value(), Ok(AT::GRAPH | AT::GRAPHS)) || a.g.is_some() {
                    return Err(ImportError::UnsupportedFeature(format!(
                        "node \"{}\" ({}): attribute `{}` is a subgraph (control flow is not supported)",
                        src.label, src.op_type, a.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Kahn's algorithm, keeping the file order among ready nodes.
    fn toposort(&self, nodes: &[NodeProto]) -> Result<Vec<usize>, ImportError> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if self.names.contains_key(o.as_str()) || producer.insert(o, i).is_some() {
                    return Err(ImportError::Graph(format!(
                        "value \"{o}\" is defined more than once (again by node \"{}\")",
                        node_label(n, i)
                    )));
                }
            }
        }
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for x in n.input.iter().filter(|x| !x.is_empty()) {
                if let Some(&j) = producer.get(x.as_str()) {
                    preds[i].push(j);
                    succs[j].push(i);
                } else if !self.names.contains_key(x.as_str()) {
                    return Err(ImportError::Graph(format!(
                        "dangling input \"{x}\" of node \"{}\": no node, graph input or initializer defines it",
                        node_label(n, i)
                    )));
                }
            }
        }
        let mut indeg: Vec<usize> = preds.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
            .filter(|&i| indeg[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        let mut done = vec![false; nodes.len()];
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            done[i] = true;
            for &s in &succs[i] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.push(Reverse(s));
                }
            }
        }
        if let Some(start) = (0..nodes.len()).find(|&i| !done[i]) {
            // Every node left has a predecessor left: walking back from one
            // must revisit a node, and that node lies on a cycle.
            let mut seen = vec![false; nodes.len()];
            let mut x = start;
            while !seen[x] {
                seen[x] = true;
                match preds[x].iter().find(|&&p| !done[p]) {
                    Some(&p) => x = p,
                    None => break,
                }
            }
            return Err(ImportError::Graph(format!(
                "the graph has a cycle through node \"{}\"",
                node_label(&nodes[x], x)
            )));
        }
        Ok(order)
    }

    fn node(&mut self, mut n: NodeProto, idx: usize) -> Result<(), ImportError> {
        let src = self.src(&n, idx);
        let attrs = attrs::convert(&mut n.attribute, &mut self.ext).map_err(|e| match e {
            attrs::AttrErr::Unsupported(m) => ImportError::UnsupportedFeature(format!(
                "node \"{}\" ({}): {m}",
                src.label, src.op_type
            )),
            attrs::AttrErr::Invalid(m) => src.err(m),
        })?;
        let inputs: Vec<Option<ValueId>> = n
            .input
            .iter()
            .map(|x| {
                (!x.is_empty())
                    .then(|| self.names.get(x.as_str()).copied())
                    .flatten()
            })
            .collect();
        let outputs: Vec<Option<String>> = n
            .output
            .iter()
            .map(|o| (!o.is_empty()).then(|| o.clone()))
            .collect();
        if n.op_type == "Constant" && src.domain == "ai.onnx" {
            return self.constant(&src, attrs, outputs);
        }
        legacy::lower(self, &src, inputs, outputs, attrs)
    }

    fn constant(
        &mut self,
        src: &Src,
        attrs: Attrs,
        outputs: Vec<Option<String>>,
    ) -> Result<(), ImportError> {
        if attrs.len() != 1 {
            return Err(src.err(format!(
                "needs exactly one value attribute, found {}",
                attrs.len()
            )));
        }
        let Some((key, a)) = attrs.into_iter().next() else {
            return Err(src.err("has no value"));
        };
        let t = match (key.as_str(), a) {
            ("value", Attr::Tensor(d)) => Ok(d),
            ("value_float", Attr::Float(f)) => Tensor::scalar_f32(f).to_data(),
            ("value_floats", Attr::Floats(v)) => Tensor::from_f64(
                DType::F32,
                vec![v.len()],
                v.iter().map(|&x| x as f64).collect(),
            )
            .to_data(),
            ("value_int", Attr::Int(i)) => Tensor::scalar_i64(i).to_data(),
            ("value_ints", Attr::Ints(v)) => {
                Tensor::from_i64(DType::I64, vec![v.len()], v).to_data()
            }
            ("value_string", Attr::String(s)) => {
                TensorData::new(DType::String, vec![], Payload::Strings(Arc::new(vec![s])))
                    .map_err(Into::into)
            }
            ("value_strings", Attr::Strings(v)) => {
                TensorData::new(DType::String, vec![v.len()], Payload::Strings(Arc::new(v)))
                    .map_err(Into::into)
            }
            (k, a) => return Err(src.err(format!("unexpected attribute `{k}` ({})", a.kind()))),
        }
        .map_err(|e| src.err(e.to_string()))?;
        let Some(Some(name)) = outputs.into_iter().next() else {
            return Ok(());
        };
        if let Some(d) = self.declared.get(&name) {
            merge(d, &t.ty()).map_err(|m| src.err(format!("output \"{name}\": {m}")))?;
        }
        self.add_const(name, t);
        Ok(())
    }

    fn push_value(&mut self, name: String, ty: TensorType) -> ValueId {
        let id = self.g.add_value(name.clone(), ty);
        self.names.insert(name, id);
        id
    }

    pub(crate) fn add_const(&mut self, name: String, data: TensorData) -> ValueId {
        let small = data.numel() <= FOLD_LIMIT;
        let id = self.push_value(name, data.ty());
        if small {
            self.set_known(id, Tensor::from_data(&data).ok());
        }
        self.g.consts.insert(id, data);
        id
    }

    fn set_known(&mut self, id: ValueId, t: Option<Tensor>) {
        if self.known.len() <= id.index() {
            self.known.resize(id.index() + 1, None);
        }
        self.known[id.index()] = t;
    }

    /// A name no value in the model uses.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let s = format!("{hint}__{}", self.counter);
            if self.taken.insert(s.clone()) {
                return s;
            }
        }
    }

    /// A new constant holding `t`.
    pub(crate) fn const_tensor(
        &mut self,
        src: &Src,
        hint: &str,
        t: Tensor,
    ) -> Result<ValueId, ImportError> {
        let d = t.to_data().map_err(|e| src.err(e.to_string()))?;
        let name = self.fresh(hint);
        Ok(self.add_const(name, d))
    }

    pub(crate) fn const_i64s(
        &mut self,
        src: &Src,
        hint: &str,
        v: Vec<i64>,
    ) -> Result<ValueId, ImportError> {
        self.const_tensor(src, hint, Tensor::from_i64(DType::I64, vec![v.len()], v))
    }

    pub(crate) fn value_type(&self, id: ValueId) -> &TensorType {
        &self.g.value(id).ty
    }

    /// Appends an IR node, types its outputs and folds it when it can.
    pub(crate) fn emit(
        &mut self,
        src: &Src,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        outputs: Vec<Option<String>>,
        attrs: Attrs,
    ) -> Result<Vec<Option<ValueId>>, ImportError> {
        if semantics::lookup(op).is_none() {
            return Err(ImportError::Unsupported {
                op: if op.name() == src.op_type {
                    src.op_type.clone()
                } else {
                    format!("{} (as {op})", src.op_type)
                },
                domain: src.domain.clone(),
                opset: src.opset,
                node: src.label.clone(),
            });
        }
        let attrs = smelt_ir::attr::with_defaults(op, attrs);
        let placeholder = TensorType::new(DType::F32, Shape::unknown());
        let outs: Vec<Option<ValueId>> = outputs
            .into_iter()
            .map(|o| o.map(|name| self.push_value(name, placeholder.clone())))
            .collect();
        self.g.add_node(Node {
            op,
            name: src.name.clone(),
            inputs,
            outputs: outs.clone(),
            attrs,
        });
        let idx = self.g.nodes.len() - 1;
        let tys = infer_node(&self.g, idx, &self.known).map_err(|e| src.err(e.msg))?;
        if tys.len() < outs.len() {
            return Err(src.err(format!(
                "the type rule of {op} gave {} types for {} outputs",
                tys.len(),
                outs.len()
            )));
        }
        for (slot, ty) in outs.iter().zip(tys) {
            if let Some(id) = *slot {
                let v = self.g.value_mut(id);
                v.ty = match self.declared.get(&v.name) {
                    Some(d) => {
                        merge(d, &ty).map_err(|m| src.err(format!("output \"{}\": {m}", v.name)))?
                    }
                    None => ty,
                };
            }
        }
        self.try_fold(idx);
        Ok(outs)
    }

    /// Evaluates node `idx` (the last one) if its result is known at import
    /// time and small, turning its outputs into constants.
    fn try_fold(&mut self, idx: usize) {
        let Some(results) = self.fold_results(idx) else {
            return;
        };
        let node = &self.g.nodes[idx];
        let mut datas = Vec::new();
        for (slot, t) in node.outputs.iter().zip(&results) {
            let Some(id) = slot else { continue };
            let ty = &self.g.value(*id).ty;
            if t.dtype != ty.dtype || !ty.shape.admits(&t.shape) {
                return;
            }
            let Ok(d) = t.to_data() else { return };
            datas.push((*id, d, t.clone()));
        }
        if node.outputs.iter().flatten().count() != datas.len() {
            return;
        }
        self.g.nodes.truncate(idx);
        for (id, d, t) in datas {
            self.g.value_mut(id).ty = d.ty();
            self.g.consts.insert(id, d);
            self.set_known(id, Some(t));
        }
    }

    fn fold_results(&self, idx: usize) -> Option<Vec<Tensor>> {
        let node = self.g.nodes.get(idx)?;
        let first = node.inputs.first().copied().flatten();
        if matches!(node.op, Op::Shape | Op::Size)
            && let Some(dims) = first.and_then(|x| self.g.value(x).ty.shape.as_static())
        {
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            let ctx = Ctx::new(node);
            if node.op == Op::Size {
                return Some(vec![Tensor::scalar_i64(dims.iter().product())]);
            }
            let r = dims.len() as i64;
            let clamp = |x: i64| if x < 0 { (x + r).max(0) } else { x.min(r) };
            let start = clamp(ctx.int("start", 0).ok()?) as usize;
            let end = clamp(ctx.int("end", r).ok()?) as usize;
            let s = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
            return Some(vec![Tensor::from_i64(DType::I64, vec![s.len()], s)]);
        }
        let random = matches!(
            node.op,
            Op::RandomNormal
                | Op::RandomNormalLike
                | Op::RandomUniform
                | Op::RandomUniformLike
                | Op::Bernoulli
                | Op::Multinomial
        ) || (node.op == Op::Dropout
            && node.inputs.get(2).copied().flatten().is_some());
        if random || node.inputs.iter().flatten().next().is_none() {
            return None;
        }
        let mut ins = Vec::with_capacity(node.inputs.len());
        for x in &node.inputs {
            match x {
                None => ins.push(None),
                Some(id) => ins.push(Some(self.known.get(id.index())?.as_ref()?)),
            }
        }
        for id in node.outputs.iter().flatten() {
            let dims = self.g.value(*id).ty.shape.as_static()?;
            if smelt_ir::shape::checked_numel(&dims)? > FOLD_LIMIT {
                return None;
            }
        }
        let imp = semantics::lookup(node.op)?;
        (imp.kernel)(&Ctx::new(node), &ins).ok()
    }
}
