//! Algebraic identities and simplifications. Constant folding itself is
//! not a rule: the analysis folds any class whose operands are known small
//! constants (see `analysis.rs`).

use super::{Build, Rule, attrs_of, is_absent, same_static_type, ty_of, v, value_of, var};
use crate::analysis::TEGraph;
use crate::analysis::TensorAnalysis;
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, Subst, Symbol, rewrite as rw};
use smelt_ir::{Attr, Attrs, Op};

type Guard = Box<dyn Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync>;

/// `?c` is a known constant whose every element equals `x`.
pub fn all_equal(
    c: &'static str,
    x: f64,
) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| {
        value_of(eg, s, c)
            .and_then(|t| t.to_f64_vec())
            .is_some_and(|v| !v.is_empty() && v.iter().all(|e| *e == x))
    }
}

/// The matched value has exactly the type of `?x` (no broadcasting grew it).
pub fn keeps_type(x: &'static str) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, root, s| same_static_type(eg[root].data.ty(), ty_of(eg, s, x))
}

fn both(
    a: impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync + 'static,
    b: impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync + 'static,
) -> Guard {
    Box::new(move |eg, id, s| a(eg, id, s) && b(eg, id, s))
}

/// A Reshape target that does not depend on the input's shape (no `0`
/// entries that copy an input dim), so the inner Reshape can be skipped.
pub fn explicit_reshape(
    shape: &'static str,
    attrs: &'static str,
) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| {
        let allowzero = matches!(
            attrs_of(eg, s, attrs).and_then(|a| a.get("allowzero")),
            Some(Attr::Int(1))
        );
        value_of(eg, s, shape)
            .and_then(|t| t.to_i64_vec())
            .is_some_and(|v| allowzero || v.iter().all(|&d| d != 0))
    }
}

fn perm(a: Option<&Attrs>) -> Option<Vec<i64>> {
    match a?.get("perm")? {
        Attr::Ints(p) => Some(p.clone()),
        _ => None,
    }
}

/// Transpose(Transpose(x, p1), p2) = Transpose(x, p1∘p2): output axis i
/// is input axis p1[p2[i]]. Needs both perms given (a missing perm means
/// reversal, which depends on the rank).
fn composed_perm(eg: &TEGraph, s: &Subst) -> Option<Attrs> {
    let p1 = perm(attrs_of(eg, s, "?pa"))?;
    let p2 = perm(attrs_of(eg, s, "?pb"))?;
    if p1.len() != p2.len() {
        return None;
    }
    let mut p = Vec::with_capacity(p2.len());
    for &i in &p2 {
        p.push(*p1.get(usize::try_from(i).ok()?)?);
    }
    let mut a = Attrs::new();
    a.insert("perm".into(), Attr::Ints(p));
    Some(a)
}

/// The Transpose's perm is the identity.
pub fn identity_perm(pa: &'static str) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| {
        perm(attrs_of(eg, s, pa)).is_some_and(|p| p.iter().enumerate().all(|(i, &x)| x == i as i64))
    }
}

fn keep_attrs(name: &'static str) -> impl Fn(&TEGraph, &Subst) -> Option<Attrs> {
    move |eg, s| attrs_of(eg, s, name).cloned()
}

/// Gemm's attributes as ONNX defaults them: `alpha = beta = 1`, no transposes.
fn plain_gemm_attrs() -> Attrs {
    let mut a = Attrs::new();
    a.insert("alpha".into(), Attr::Float(1.0));
    a.insert("beta".into(), Attr::Float(1.0));
    a.insert("transA".into(), Attr::Int(0));
    a.insert("transB".into(), Attr::Int(0));
    a
}

/// The Gemm bound to `?g` computes plain `A·B + C` (absent attributes take
/// their spec defaults, which are exactly that).
pub fn plain_gemm(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    let Some(a) = attrs_of(eg, s, "?g") else {
        return false;
    };
    let float = |k: &str| match a.get(k) {
        None => Some(1.0),
        Some(Attr::Float(f)) => Some(*f),
        _ => None,
    };
    let int = |k: &str| match a.get(k) {
        None => Some(0),
        Some(Attr::Int(i)) => Some(*i),
        _ => None,
    };
    float("alpha") == Some(1.0)
        && float("beta") == Some(1.0)
        && int("transA") == Some(0)
        && int("transB") == Some(0)
}

/// `MatMul(a, b) + c` is a 2-D product (the only shape Gemm takes) plus a
/// bias vector or scalar: the exporters' spelling of a Gemm. A 2-D `c` is
/// left alone, where it would only trade one matmul form for another.
pub fn matmul_2d_plus_bias(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    let rank = |v: &str| ty_of(eg, s, v).and_then(|t| t.shape.rank());
    rank("?a") == Some(2) && rank("?b") == Some(2) && rank("?c").is_some_and(|r| r <= 1)
}

/// Gemm(A, B, C) = MatMul(A, B) + C: two nodes, so not a `Build`.
struct GemmDecompose;

impl Applier<TNode, TensorAnalysis> for GemmDecompose {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let empty = eg.add(TNode::Attrs(AttrKey::new(Attrs::new())));
        let (a, b, c) = (subst[var("?a")], subst[var("?b")], subst[var("?c")]);
        let mut id = eg.add(TNode::op(Op::MatMul, empty, &[a, b]));
        if !is_absent(eg, c) {
            id = eg.add(TNode::op(Op::Add, empty, &[id, c]));
        }
        // Broadcasting C may not grow the product: only join equal types.
        if !same_static_type(eg[id].data.ty(), eg[eclass].data.ty()) {
            return vec![];
        }
        if eg.union_trusted(eclass, id, rule) {
            vec![eclass]
        } else {
            vec![]
        }
    }
}

pub fn rules() -> Vec<Rule> {
    let reshape_attrs: fn(&TEGraph, &Subst) -> Option<Attrs> = |eg, s| keep_attrs("?b")(eg, s);
    vec![
        rw!("mul-one"; "(Mul ?a ?x ?c)" => "?x" if both(all_equal("?c", 1.0), keeps_type("?x"))),
        rw!("mul-one-left"; "(Mul ?a ?c ?x)" => "?x" if both(all_equal("?c", 1.0), keeps_type("?x"))),
        // x + 0 turns -0 into +0; values compare equal, so it is kept as an identity.
        rw!("add-zero"; "(Add ?a ?x ?c)" => "?x" if both(all_equal("?c", 0.0), keeps_type("?x"))),
        rw!("add-zero-left"; "(Add ?a ?c ?x)" => "?x" if both(all_equal("?c", 0.0), keeps_type("?x"))),
        rw!("sub-zero"; "(Sub ?a ?x ?c)" => "?x" if both(all_equal("?c", 0.0), keeps_type("?x"))),
        rw!("div-one"; "(Div ?a ?x ?c)" => "?x" if both(all_equal("?c", 1.0), keeps_type("?x"))),
        rw!("pow-one"; "(Pow ?a ?x ?c)" => "?x" if both(all_equal("?c", 1.0), keeps_type("?x"))),
        rw!("identity-elim"; "(Identity ?a ?x)" => "?x"),
        rw!("neg-neg"; "(Neg ?a (Neg ?b ?x))" => "?x"),
        rw!("not-not"; "(Not ?a (Not ?b ?x))" => "?x"),
        rw!("reciprocal-reciprocal"; "(Reciprocal ?a (Reciprocal ?b ?x))" => "?x" if keeps_type("?x")),
        rw!("transpose-identity"; "(Transpose ?pa ?x)" => "?x" if identity_perm("?pa")),
        rw!("transpose-transpose"; "(Transpose ?pb (Transpose ?pa ?x))" => {
            Build { op: Op::Transpose, attrs: composed_perm, inputs: vec![v("?x")] }
        }),
        rw!("reshape-reshape"; "(Reshape ?b (Reshape ?a ?x ?s1) ?s2)" => {
            Build { op: Op::Reshape, attrs: reshape_attrs, inputs: vec![v("?x"), v("?s2")] }
        } if explicit_reshape("?s2", "?b")),
        rw!("reshape-noop"; "(Reshape ?a ?x ?s)" => "?x" if keeps_type("?x")),
        rw!("squeeze-unsqueeze"; "(Squeeze ?a (Unsqueeze ?b ?x ?ax1) ?ax2)" => "?x" if keeps_type("?x")),
        rw!("cast-noop"; "(Cast ?a ?x)" => "?x" if keeps_type("?x")),
        rw!("expand-noop"; "(Expand ?a ?x ?s)" => "?x" if keeps_type("?x")),
        rw!("relu-relu"; "(Relu ?a (Relu ?b ?x))" => "(Relu ?a ?x)"),
        rw!("abs-abs"; "(Abs ?a (Abs ?b ?x))" => "(Abs ?a ?x)"),
        rw!("abs-neg"; "(Abs ?a (Neg ?b ?x))" => "(Abs ?a ?x)"),
        rw!("gemm-decompose"; "(Gemm ?g ?a ?b ?c)" => { GemmDecompose } if plain_gemm),
        rw!("gemm-recompose"; "(Add ?x (MatMul ?m ?a ?b) ?c)" => {
            Build { op: Op::Gemm, attrs: |_, _| Some(plain_gemm_attrs()), inputs: vec![v("?a"), v("?b"), v("?c")] }
        } if matmul_2d_plus_bias),
    ]
}
