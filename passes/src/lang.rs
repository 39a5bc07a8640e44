//! The e-graph language over the IR op table. There is no second op list:
//! an e-node is an `Op` from `smelt_ir::Op` plus its children, where the
//! first child is always the e-class of the node's attributes (an `Attrs`
//! leaf). Keeping attributes in their own e-class lets plain egg patterns
//! bind them (`(Transpose ?pa (Transpose ?pb ?x))`) and guards read them.

use egg::{FromOp, Id, Language};
use smelt_ir::{Attr, Attrs, Op};
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Attributes with a canonical text key, so they hash, compare and order
/// (f32 attributes and tensors are not `Hash`). The key is the identity;
/// `attrs` is carried along for guards and for rebuilding the graph.
#[derive(Clone, Debug)]
pub struct AttrKey(Arc<(String, Attrs)>);

impl AttrKey {
    pub fn new(attrs: Attrs) -> Self {
        let key = canonical(&attrs);
        AttrKey(Arc::new((key, attrs)))
    }

    /// Attributes that never merge with any other set: used for ops whose
    /// results differ between two identical calls (random number ops), so
    /// hash-consing does not turn two draws into one.
    pub fn unique(attrs: Attrs, nonce: usize) -> Self {
        let key = format!("{}#{nonce}", canonical(&attrs));
        AttrKey(Arc::new((key, attrs)))
    }

    pub fn empty() -> Self {
        AttrKey::new(Attrs::new())
    }

    pub fn attrs(&self) -> &Attrs {
        &self.0.1
    }

    pub fn key(&self) -> &str {
        &self.0.0
    }
}

impl PartialEq for AttrKey {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for AttrKey {}
impl std::hash::Hash for AttrKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}
impl PartialOrd for AttrKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AttrKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

fn canonical(attrs: &Attrs) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=");
        match v {
            // Bits, not decimal text: two floats are the same attribute only
            // if they are the same f32.
            Attr::Float(f) => {
                let _ = write!(s, "f{:08x}", f.to_bits());
            }
            Attr::Floats(fs) => {
                s.push_str("fs[");
                for f in fs {
                    let _ = write!(s, "{:08x} ", f.to_bits());
                }
                s.push(']');
            }
            Attr::Tensor(t) => {
                let _ = write!(s, "t{}{:?}", t.dtype, t.shape);
                match &t.payload {
                    smelt_ir::Payload::Raw(b) => {
                        for c in b.as_ref() {
                            let _ = write!(s, "{c:02x}");
                        }
                    }
                    smelt_ir::Payload::Strings(v) => {
                        let _ = write!(s, "{v:?}");
                    }
                }
            }
            other => {
                let _ = write!(s, "{other:?}");
            }
        }
    }
    s.push('}');
    s
}

/// An e-node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TNode {
    /// An op application. `args[0]` is the attribute class, the rest are the
    /// inputs in order (an omitted optional input is the `Absent` class).
    /// `nout` is the number of node outputs; a node with more than one is
    /// only used through `Proj`.
    Op {
        op: Op,
        nout: u8,
        args: Vec<Id>,
    },
    Attrs(AttrKey),
    /// An optional input that is not given.
    Absent,
    /// Graph input by position.
    Input(u32),
    /// A constant by index into the analysis' side table.
    Const(u32),
    /// Output `index` of a multi-output op.
    Proj {
        index: u32,
        arg: [Id; 1],
    },
    /// The root: the graph outputs in order.
    Outputs(Vec<Id>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Disc {
    Op(Op, u8, usize),
    Attrs(AttrKey),
    Absent,
    Input(u32),
    Const(u32),
    Proj(u32),
    Outputs(usize),
}

impl TNode {
    pub fn op(op: Op, attrs: Id, inputs: &[Id]) -> TNode {
        let mut args = Vec::with_capacity(inputs.len() + 1);
        args.push(attrs);
        args.extend_from_slice(inputs);
        TNode::Op { op, nout: 1, args }
    }

    /// The inputs of an op node (without the attribute class).
    pub fn inputs(&self) -> &[Id] {
        match self {
            TNode::Op { args, .. } => args.get(1..).unwrap_or(&[]),
            _ => &[],
        }
    }
}

impl Language for TNode {
    type Discriminant = Disc;

    fn discriminant(&self) -> Disc {
        match self {
            TNode::Op { op, nout, args } => Disc::Op(*op, *nout, args.len()),
            TNode::Attrs(a) => Disc::Attrs(a.clone()),
            TNode::Absent => Disc::Absent,
            TNode::Input(i) => Disc::Input(*i),
            TNode::Const(i) => Disc::Const(*i),
            TNode::Proj { index, .. } => Disc::Proj(*index),
            TNode::Outputs(v) => Disc::Outputs(v.len()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.discriminant() == other.discriminant()
    }

    fn children(&self) -> &[Id] {
        match self {
            TNode::Op { args, .. } => args,
            TNode::Proj { arg, .. } => arg,
            TNode::Outputs(v) => v,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            TNode::Op { args, .. } => args,
            TNode::Proj { arg, .. } => arg,
            TNode::Outputs(v) => v,
            _ => &mut [],
        }
    }
}

impl fmt::Display for TNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TNode::Op { op, nout, .. } if *nout > 1 => write!(f, "{op}/{nout}"),
            TNode::Op { op, .. } => write!(f, "{op}"),
            TNode::Attrs(a) => f.write_str(a.key()),
            TNode::Absent => f.write_str("_"),
            TNode::Input(i) => write!(f, "input{i}"),
            TNode::Const(i) => write!(f, "const{i}"),
            TNode::Proj { index, .. } => write!(f, "proj{index}"),
            TNode::Outputs(_) => f.write_str("outputs"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an op or a node of the e-graph language")]
pub struct BadNode(String);

/// Parses pattern atoms: op names (from the IR op table), `{}` (no
/// attributes), `_` (absent input), `projN` and `outputs`.
impl FromOp for TNode {
    type Error = BadNode;

    fn from_op(name: &str, children: Vec<Id>) -> Result<Self, BadNode> {
        match name {
            "_" if children.is_empty() => Ok(TNode::Absent),
            "{}" if children.is_empty() => Ok(TNode::Attrs(AttrKey::empty())),
            "outputs" => Ok(TNode::Outputs(children)),
            _ => {
                if let Some(ix) = name.strip_prefix("proj")
                    && let Ok(index) = ix.parse::<u32>()
                    && children.len() == 1
                {
                    return Ok(TNode::Proj {
                        index,
                        arg: [children[0]],
                    });
                }
                match name.parse::<Op>() {
                    Ok(op) if !children.is_empty() => Ok(TNode::Op {
                        op,
                        nout: 1,
                        args: children,
                    }),
                    _ => Err(BadNode(name.to_string())),
                }
            }
        }
    }
}

/// Ops whose result differs between two identical calls.
pub fn is_random(op: Op) -> bool {
    matches!(
        op,
        Op::Bernoulli
            | Op::Multinomial
            | Op::RandomNormal
            | Op::RandomNormalLike
            | Op::RandomUniform
            | Op::RandomUniformLike
            | Op::Dropout
    )
}
