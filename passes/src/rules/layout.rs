//! Layout choices the target prefers (its `preferred_layout` and
//! `prefers_transposed_weights`):
//!
//! - channels-last convolution: `Conv(x)` becomes
//!   `to_first(ConvNhwc(to_last(x)))`; the transposes then sink through
//!   element-wise ops and cancel between consecutive convolutions
//!   (`transpose-transpose` + `transpose-identity` from the algebra family),
//!   so a chain keeps channels-last and converts only at its ends;
//! - pre-transposed weights: `MatMul(x, W)` with W a constant matrix becomes
//!   `MatMulNT(x, Wᵀ)`, Wᵀ computed at compile time.
//!
//! The rules are only added for a target that prefers the new form; the cost
//! model (`extract::layout_factor`) charges the other form more there, so
//! extraction keeps a rewrite only when it pays for its transposes.

use super::{Rule, ty_of, var};
use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, Subst, Symbol, Var, rewrite as rw};
use smelt_ir::semantics::layout::{to_first, to_last};
use smelt_ir::target::Target;
use smelt_ir::{Attr, Attrs, Bytes, Op, Payload, TensorData};
use std::collections::HashMap;
use std::sync::Mutex;

type GuardFn = fn(&mut TEGraph, Id, &Subst) -> bool;

/// Unary element-wise ops a transpose commutes with.
const UNARY: &[Op] = &[
    Op::Relu,
    Op::Sigmoid,
    Op::Tanh,
    Op::Neg,
    Op::Abs,
    Op::Exp,
    Op::Sqrt,
    Op::Erf,
    Op::Gelu,
];

/// Binary element-wise ops a shared transpose commutes with.
const BINARY: &[Op] = &[Op::Add, Op::Sub, Op::Mul, Op::Div];

fn perm_attrs(p: Vec<i64>) -> Attrs {
    let mut a = Attrs::new();
    a.insert("perm".into(), Attr::Ints(p));
    a
}

/// `?x` has a known rank of at least 3 (batch, channels, one spatial axis).
pub fn conv_input_has_rank(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    ty_of(eg, s, "?x")
        .and_then(|t| t.shape.rank())
        .is_some_and(|r| r >= 3)
}

/// `?x` and `?y` have the same fully known type, so the element-wise op
/// does not broadcast and commutes with the shared transpose.
pub fn operands_same_type(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    super::same_static_type(ty_of(eg, s, "?x"), ty_of(eg, s, "?y"))
}

/// Joins `id` with `eclass` if their types agree (a rule never joins
/// classes of different types).
fn union_checked(eg: &mut TEGraph, eclass: Id, id: Id, rule: Symbol) -> Vec<Id> {
    let ok = match (eg[id].data.ty(), eg[eclass].data.ty()) {
        (Some(n), Some(o)) => n.dtype == o.dtype && smelt_ir::infer::merge(o, n).is_ok(),
        _ => false,
    };
    if ok && eg.union_trusted(eclass, id, rule) {
        vec![eclass]
    } else {
        vec![]
    }
}

/// `Conv{a}(x, rest...)` => `Transpose{to_first}(ConvNhwc{a}(Transpose{to_last}(x), rest...))`.
struct ToNhwc {
    rest: Vec<Var>,
}

impl Applier<TNode, TensorAnalysis> for ToNhwc {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let Some(r) = ty_of(eg, subst, "?x").and_then(|t| t.shape.rank()) else {
            return vec![];
        };
        let last = eg.add(TNode::Attrs(AttrKey::new(perm_attrs(to_last(r)))));
        let first = eg.add(TNode::Attrs(AttrKey::new(perm_attrs(to_first(r)))));
        let xt = eg.add(TNode::op(Op::Transpose, last, &[subst[var("?x")]]));
        let mut ins = vec![xt];
        ins.extend(self.rest.iter().map(|v| subst[*v]));
        let c = eg.add(TNode::op(Op::ConvNhwc, subst[var("?a")], &ins));
        let y = eg.add(TNode::op(Op::Transpose, first, &[c]));
        union_checked(eg, eclass, y, rule)
    }
}

/// The constant behind class `id`, if it has one.
fn const_data(eg: &TEGraph, id: Id) -> Option<&TensorData> {
    eg[id].nodes.iter().find_map(|n| match n {
        TNode::Const(i) => eg.analysis.consts.get(*i as usize),
        _ => None,
    })
}

/// The weight `?w` is a constant matrix stored as whole bytes per element,
/// so it can be transposed at compile time by moving bytes.
pub fn weight_is_const_matrix(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    const_data(eg, s[var("?w")]).is_some_and(|d| {
        d.shape.len() == 2 && d.dtype.bits() % 8 == 0 && d.dtype.bits() > 0 && d.raw().is_some()
    })
}

/// `[K, N]` row-major bytes to `[N, K]`.
fn transpose_matrix(d: &TensorData) -> Option<TensorData> {
    let (&[k, n], Some(raw)) = (d.shape.as_slice(), d.raw()) else {
        return None;
    };
    let es = (d.dtype.bits() / 8) as usize;
    if es == 0 || raw.len() != k.checked_mul(n)?.checked_mul(es)? {
        return None;
    }
    let mut out = vec![0u8; raw.len()];
    for i in 0..k {
        for j in 0..n {
            let src = (i * n + j) * es;
            let dst = (j * k + i) * es;
            out[dst..dst + es].copy_from_slice(&raw[src..src + es]);
        }
    }
    TensorData::new(d.dtype, vec![n, k], Payload::Raw(Bytes::from_vec(out))).ok()
}

/// `MatMul(x, W)` => `MatMulNT(x, Wᵀ)` with Wᵀ a new constant. One Wᵀ per
/// weight class: the rule matches again every iteration and for every use
/// of a shared weight, and each must reuse the same constant.
#[derive(Default)]
struct PreTransposed {
    made: Mutex<HashMap<Id, Id>>,
}

impl Applier<TNode, TensorAnalysis> for PreTransposed {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let w = eg.find(subst[var("?w")]);
        let known = self.made.lock().ok().and_then(|m| m.get(&w).copied());
        let wt = match known {
            Some(wt) => wt,
            None => {
                let Some(d) = const_data(eg, w).and_then(transpose_matrix) else {
                    return vec![];
                };
                let ix = eg.analysis.add_const(d);
                let wt = eg.add(TNode::Const(ix));
                if let Ok(mut m) = self.made.lock() {
                    m.insert(w, wt);
                }
                wt
            }
        };
        let a = eg.add(TNode::Attrs(AttrKey::empty()));
        let id = eg.add(TNode::op(Op::MatMulNT, a, &[subst[var("?x")], wt]));
        union_checked(eg, eclass, id, rule)
    }
}

fn sink_rules() -> Vec<Rule> {
    let mut v = Vec::new();
    for op in UNARY {
        let name = format!("transpose-sink-{}", op.name().to_lowercase());
        let lhs: egg::Pattern<TNode> = format!("({op} ?a (Transpose ?p ?x))")
            .parse()
            .expect("layout rule patterns are literals");
        let rhs: egg::Pattern<TNode> = format!("(Transpose ?p ({op} ?a ?x))")
            .parse()
            .expect("layout rule patterns are literals");
        v.push(Rule::new(name, lhs, rhs).expect("layout rules are well formed"));
    }
    for op in BINARY {
        let name = format!("transpose-sink-{}", op.name().to_lowercase());
        let lhs: egg::Pattern<TNode> = format!("({op} ?a (Transpose ?p ?x) (Transpose ?p ?y))")
            .parse()
            .expect("layout rule patterns are literals");
        let rhs: egg::Pattern<TNode> = format!("(Transpose ?p ({op} ?a ?x ?y))")
            .parse()
            .expect("layout rule patterns are literals");
        let cond = egg::ConditionalApplier {
            condition: operands_same_type as GuardFn,
            applier: rhs,
        };
        v.push(Rule::new(name, lhs, cond).expect("layout rules are well formed"));
    }
    v
}

/// The layout rules `target` wants: none for a channels-first target
/// without a weight preference.
pub fn rules_for(target: &Target) -> Vec<Rule> {
    rules_with(
        target.preferred_layout == "nhwc",
        target.prefers_transposed_weights,
    )
}

/// Every layout rule (for rule listings and validation).
pub fn rules() -> Vec<Rule> {
    rules_with(true, true)
}

fn rules_with(nhwc: bool, transposed_weights: bool) -> Vec<Rule> {
    let mut v = Vec::new();
    if nhwc {
        v.push(rw!("conv-to-nhwc"; "(Conv ?a ?x ?w)" => {
            ToNhwc { rest: vec![var("?w")] }
        } if conv_input_has_rank as GuardFn));
        v.push(rw!("conv-bias-to-nhwc"; "(Conv ?a ?x ?w ?b)" => {
            ToNhwc { rest: vec![var("?w"), var("?b")] }
        } if conv_input_has_rank as GuardFn));
        v.extend(sink_rules());
    }
    if transposed_weights {
        v.push(rw!("matmul-weight-transposed"; "(MatMul ?a ?x ?w)" => {
            PreTransposed::default()
        } if weight_is_const_matrix as GuardFn));
    }
    v
}
