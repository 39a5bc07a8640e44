//! Rewrite rules as data: one file per family, each rule an egg `rw!` with
//! a kebab-case name, a pattern, and guards that are named functions. Rules
//! whose right-hand side needs new attributes or constants use a `Build`
//! applier (an op, computed attributes and pattern variables as inputs).

pub mod algebra;
pub mod fusion;
pub mod layout;
pub mod norm;
pub mod tensat;

use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, Rewrite, Subst, Symbol, Var};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attrs, Op, TensorType};

pub type Rule = Rewrite<TNode, TensorAnalysis>;

pub fn var(s: &str) -> Var {
    s.parse()
        .expect("pattern variable names in rules are literals")
}

/// The single type of the class bound to `v`.
pub fn ty_of<'a>(eg: &'a TEGraph, subst: &Subst, v: &str) -> Option<&'a TensorType> {
    eg[subst[var(v)]].data.ty()
}

pub fn value_of<'a>(eg: &'a TEGraph, subst: &Subst, v: &str) -> Option<&'a Tensor> {
    eg[subst[var(v)]].data.value.as_deref()
}

pub fn attrs_of<'a>(eg: &'a TEGraph, subst: &Subst, v: &str) -> Option<&'a Attrs> {
    eg[subst[var(v)]].data.attrs.as_ref().map(|k| k.attrs())
}

pub fn is_absent(eg: &TEGraph, id: Id) -> bool {
    eg[id].nodes.iter().any(|n| matches!(n, TNode::Absent))
}

/// Whether both types are fully known and equal (so replacing one value by
/// the other cannot change a shape, e.g. through broadcasting).
pub fn same_static_type(a: Option<&TensorType>, b: Option<&TensorType>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.dtype == b.dtype
                && a.shape.dims().is_some()
                && a.shape == b.shape
                && a.shape
                    .dims()
                    .is_some_and(|d| d.iter().all(|x| !matches!(x, smelt_ir::Dim::Unknown)))
        }
        _ => false,
    }
}

/// An input of a `Build`: a pattern variable or an absent optional input.
#[derive(Clone, Debug)]
pub enum Arg {
    V(Var),
    Absent,
}

pub fn v(s: &str) -> Arg {
    Arg::V(var(s))
}

type AttrFn = fn(&TEGraph, &Subst) -> Option<Attrs>;

/// Builds `op{attrs}(inputs)` and joins it with the matched class. When
/// `attrs` returns `None` the rule does nothing (a late guard).
pub struct Build {
    pub op: Op,
    pub attrs: AttrFn,
    pub inputs: Vec<Arg>,
}

impl Applier<TNode, TensorAnalysis> for Build {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let Some(attrs) = (self.attrs)(eg, subst) else {
            return vec![];
        };
        let a = eg.add(TNode::Attrs(AttrKey::new(attrs)));
        let mut ins = Vec::with_capacity(self.inputs.len());
        for x in &self.inputs {
            ins.push(match x {
                Arg::V(v) => subst[*v],
                Arg::Absent => eg.add(TNode::Absent),
            });
        }
        let id = eg.add(TNode::op(self.op, a, &ins));
        // A rule must never join classes of different types; if the new
        // node's type rule disagrees, drop the rewrite.
        let (new_ty, old_ty) = (eg[id].data.ty(), eg[eclass].data.ty());
        let ok = match (new_ty, old_ty) {
            (Some(n), Some(o)) => n.dtype == o.dtype && smelt_ir::infer::merge(o, n).is_ok(),
            _ => false,
        };
        if !ok {
            return vec![];
        }
        if eg.union_trusted(eclass, id, rule) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

/// Every rule, by family, in a fixed order.
pub fn family(name: &str) -> Option<Vec<Rule>> {
    match name {
        "algebra" | "canon" => Some(algebra::rules()),
        "fusion" | "fuse" => {
            let mut r = norm::rules();
            r.extend(fusion::rules());
            Some(r)
        }
        "norm" => Some(norm::rules()),
        // Every layout rule; the pass manager uses `layout::rules_for`,
        // which keeps only what the target prefers.
        "layout" => Some(layout::rules()),
        "tensat" => Some(tensat::rules()),
        _ => None,
    }
}
