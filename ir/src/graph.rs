//! The tensor graph: an arena of typed values, nodes in program order, named
//! graph inputs and outputs, and constants held by reference.

use crate::{Attr, Attrs, Op, TensorData, TensorType};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Unique within the graph.
    pub name: String,
    pub ty: TensorType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    /// The node's name in the source model ("" if it had none); errors cite it.
    pub name: String,
    /// `None` marks an optional input that is not given.
    pub inputs: Vec<Option<ValueId>>,
    /// `None` marks an optional output that is not wanted.
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Attrs,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }

    /// "Conv \"conv1\"" or just "Conv": how errors name a node.
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            self.op.name().to_string()
        } else {
            format!("{} \"{}\"", self.op, self.name)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Values whose contents are known: weights, initializers, folded constants.
    pub consts: BTreeMap<ValueId, TensorData>,
    /// Inclusive upper bounds of symbolic dimensions (a decoder's batch and
    /// sequence length, say): what backends size buffers by. The interpreter
    /// refuses inputs beyond them.
    pub dim_bounds: BTreeMap<String, u64>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn add_value(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value {
            name: name.into(),
            ty,
        });
        id
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    pub fn add_const(&mut self, name: impl Into<String>, data: TensorData) -> ValueId {
        let id = self.add_value(name, data.ty());
        self.consts.insert(id, data);
        id
    }

    pub fn add_node(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Index of the node producing each value (None for inputs/consts).
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().flatten() {
                if let Some(slot) = p.get_mut(o.index()) {
                    *slot = Some(i);
                }
            }
        }
        p
    }

    /// Number of elements held in constants (the parameter count).
    pub fn const_elements(&self) -> usize {
        self.consts.values().map(|c| c.numel()).sum()
    }
}
