//! Fusion: epilogues of MatMul and Conv (bias, activation, residual) into
//! smelt's `FusedMatMul` / `FusedConv`, chains of unary element-wise ops
//! into one `FusedElementwise`, and decomposed GELU recognized as the ONNX
//! `Gelu` op. The fused ops are defined as the composition they replace
//! (`smelt_ir::semantics::fused`), so every rewrite here is exact.

use super::{Arg, Build, Rule, attrs_of, v, value_of, var};
use crate::analysis::TEGraph;
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, Subst, Symbol, rewrite as rw};
use smelt_ir::semantics::fused::UNARY;
use smelt_ir::{Attr, Attrs, Op};

/// Activations folded into MatMul/Conv epilogues.
const ACTIVATIONS: &[Op] = &[Op::Relu, Op::Sigmoid, Op::Tanh, Op::Gelu];

/// `op` with these attributes is the plain, attribute-free unary op that
/// the fused ops name (Gelu only in its exact, erf form).
pub fn plain_unary(op: Op, attrs: &Attrs) -> bool {
    if !UNARY.contains(&op) {
        return false;
    }
    attrs
        .iter()
        .all(|(k, a)| op == Op::Gelu && k == "approximate" && *a == Attr::String("none".into()))
}

/// The activation node bound to `?act` has no attributes that matter.
pub fn plain_activation(op: Op) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| attrs_of(eg, s, "?act").is_some_and(|a| plain_unary(op, a))
}

/// The fused op bound to `?f` has no activation yet.
pub fn no_activation(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    attrs_of(eg, s, "?f").is_some_and(|a| match a.get("activation") {
        None => true,
        Some(Attr::String(x)) => x.is_empty(),
        Some(_) => false,
    })
}

fn with_activation(base: Option<&Attrs>, act: Op) -> Option<Attrs> {
    let mut a = base.cloned().unwrap_or_default();
    a.insert("activation".into(), Attr::String(act.name().into()));
    Some(a)
}

macro_rules! act_builders {
    ($($name:ident = $op:expr;)*) => {$(
        #[allow(non_snake_case)]
        mod $name {
            use super::*;
            pub fn none(_: &TEGraph, _: &Subst) -> Option<Attrs> {
                with_activation(None, $op)
            }
            pub fn keep_f(eg: &TEGraph, s: &Subst) -> Option<Attrs> {
                with_activation(attrs_of(eg, s, "?f"), $op)
            }
            pub fn keep_c(eg: &TEGraph, s: &Subst) -> Option<Attrs> {
                with_activation(attrs_of(eg, s, "?c"), $op)
            }
        }
    )*};
}

act_builders! {
    relu = Op::Relu;
    sigmoid = Op::Sigmoid;
    tanh = Op::Tanh;
    gelu = Op::Gelu;
}

type AttrFn = fn(&TEGraph, &Subst) -> Option<Attrs>;

fn builders(op: Op) -> (AttrFn, AttrFn, AttrFn) {
    match op {
        Op::Relu => (relu::none, relu::keep_f, relu::keep_c),
        Op::Sigmoid => (sigmoid::none, sigmoid::keep_f, sigmoid::keep_c),
        Op::Tanh => (tanh::none, tanh::keep_f, tanh::keep_c),
        _ => (gelu::none, gelu::keep_f, gelu::keep_c),
    }
}

fn no_attrs(_: &TEGraph, _: &Subst) -> Option<Attrs> {
    Some(Attrs::new())
}

fn keep_f(eg: &TEGraph, s: &Subst) -> Option<Attrs> {
    attrs_of(eg, s, "?f").cloned()
}

fn conv_no_act(eg: &TEGraph, s: &Subst) -> Option<Attrs> {
    attrs_of(eg, s, "?c").cloned()
}

fn gelu_attrs(_: &TEGraph, _: &Subst) -> Option<Attrs> {
    let mut a = Attrs::new();
    a.insert("approximate".into(), Attr::String("none".into()));
    Some(a)
}

fn activation_rules(op: Op) -> Vec<Rule> {
    let lower = op.name().to_lowercase();
    let (none, keep_fa, keep_ca) = builders(op);
    let o = op.name();
    vec![
        mk(
            format!("matmul-{lower}"),
            format!("({o} ?act (MatMul ?m ?x ?w))").as_str(),
            egg::ConditionalApplier {
                condition: plain_activation(op),
                applier: Build {
                    op: Op::FusedMatMul,
                    attrs: none,
                    inputs: vec![v("?x"), v("?w"), Arg::Absent, Arg::Absent],
                },
            },
        ),
        mk(
            format!("fused-matmul-{lower}"),
            format!("({o} ?act (FusedMatMul ?f ?x ?w ?b _))").as_str(),
            egg::ConditionalApplier {
                condition: move |eg: &mut TEGraph, id, s: &Subst| {
                    plain_activation(op)(eg, id, s) && no_activation(eg, id, s)
                },
                applier: Build {
                    op: Op::FusedMatMul,
                    attrs: keep_fa,
                    inputs: vec![v("?x"), v("?w"), v("?b"), Arg::Absent],
                },
            },
        ),
        mk(
            format!("conv-{lower}"),
            format!("({o} ?act (Conv ?c ?x ?w ?b))").as_str(),
            egg::ConditionalApplier {
                condition: plain_activation(op),
                applier: Build {
                    op: Op::FusedConv,
                    attrs: keep_ca,
                    inputs: vec![v("?x"), v("?w"), v("?b"), Arg::Absent],
                },
            },
        ),
        mk(
            format!("conv-nobias-{lower}"),
            format!("({o} ?act (Conv ?c ?x ?w))").as_str(),
            egg::ConditionalApplier {
                condition: plain_activation(op),
                applier: Build {
                    op: Op::FusedConv,
                    attrs: keep_ca,
                    inputs: vec![v("?x"), v("?w"), Arg::Absent, Arg::Absent],
                },
            },
        ),
        mk(
            format!("fused-conv-{lower}"),
            format!("({o} ?act (FusedConv ?f ?x ?w ?b _))").as_str(),
            egg::ConditionalApplier {
                condition: move |eg: &mut TEGraph, id, s: &Subst| {
                    plain_activation(op)(eg, id, s) && no_activation(eg, id, s)
                },
                applier: Build {
                    op: Op::FusedConv,
                    attrs: keep_fa,
                    inputs: vec![v("?x"), v("?w"), v("?b"), Arg::Absent],
                },
            },
        ),
    ]
}

/// `?c` holds only values within `tol` of `x`.
pub fn near(
    c: &'static str,
    x: f64,
    tol: f64,
) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| {
        value_of(eg, s, c)
            .and_then(|t| t.to_f64_vec())
            .is_some_and(|v| !v.is_empty() && v.iter().all(|e| (e - x).abs() <= tol))
    }
}

/// The pieces of decomposed GELU: x/√2 (or x·(1/√2)), +1, ·0.5, and a
/// result of x's type.
pub fn gelu_constants(eg: &mut TEGraph, id: Id, s: &Subst) -> bool {
    near("?s", std::f64::consts::SQRT_2, 1e-4)(eg, id, s)
        && near("?one", 1.0, 0.0)(eg, id, s)
        && near("?half", 0.5, 0.0)(eg, id, s)
        && super::algebra::keeps_type("?x")(eg, id, s)
}

/// `U(inner)` where `inner` is a plain unary op or a fused chain becomes
/// one longer `FusedElementwise` chain.
pub struct Chain {
    pub op: Op,
}

impl Applier<TNode, crate::analysis::TensorAnalysis> for Chain {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        s: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        if !attrs_of(eg, s, "?act").is_some_and(|a| plain_unary(self.op, a)) {
            return vec![];
        }
        let inner = s[var("?inner")];
        let mut cands: Vec<(Vec<String>, Id)> = Vec::new();
        for n in &eg[inner].nodes {
            let TNode::Op { op, nout: 1, args } = n else {
                continue;
            };
            let ([a, x], Some(attrs)) = (args.as_slice(), eg[args[0]].data.attrs.as_ref()) else {
                continue;
            };
            let _ = a;
            if *op == Op::FusedElementwise {
                if let Some(Attr::Strings(ops)) = attrs.attrs().get("ops") {
                    cands.push((ops.clone(), *x));
                }
            } else if plain_unary(*op, attrs.attrs()) {
                cands.push((vec![op.name().to_string()], *x));
            }
        }
        cands.sort();
        cands.dedup();
        let mut changed = vec![];
        for (mut ops, x) in cands {
            ops.push(self.op.name().to_string());
            let mut attrs = Attrs::new();
            attrs.insert("ops".into(), Attr::Strings(ops));
            let a = eg.add(TNode::Attrs(AttrKey::new(attrs)));
            let id = eg.add(TNode::op(Op::FusedElementwise, a, &[x]));
            let same = match (eg[id].data.ty(), eg[eclass].data.ty()) {
                (Some(n), Some(o)) => smelt_ir::infer::merge(o, n).is_ok(),
                _ => false,
            };
            if same && eg.union_trusted(eclass, id, rule) {
                changed.push(eclass);
            }
        }
        changed
    }
}

pub fn rules() -> Vec<Rule> {
    let mut r = vec![
        rw!("matmul-bias"; "(Add ?a (MatMul ?m ?x ?w) ?b)" => {
            Build { op: Op::FusedMatMul, attrs: no_attrs, inputs: vec![v("?x"), v("?w"), v("?b"), Arg::Absent] }
        }),
        rw!("matmul-bias-left"; "(Add ?a ?b (MatMul ?m ?x ?w))" => {
            Build { op: Op::FusedMatMul, attrs: no_attrs, inputs: vec![v("?x"), v("?w"), v("?b"), Arg::Absent] }
        }),
        rw!("fused-matmul-residual"; "(Add ?a (FusedMatMul ?f ?x ?w ?b _) ?r)" => {
            Build { op: Op::FusedMatMul, attrs: keep_f, inputs: vec![v("?x"), v("?w"), v("?b"), v("?r")] }
        }),
        rw!("fused-matmul-residual-left"; "(Add ?a ?r (FusedMatMul ?f ?x ?w ?b _))" => {
            Build { op: Op::FusedMatMul, attrs: keep_f, inputs: vec![v("?x"), v("?w"), v("?b"), v("?r")] }
        }),
        rw!("conv-residual"; "(Add ?a (Conv ?c ?x ?w ?b) ?r)" => {
            Build { op: Op::FusedConv, attrs: conv_no_act, inputs: vec![v("?x"), v("?w"), v("?b"), v("?r")] }
        }),
        rw!("fused-conv-residual"; "(Add ?a (FusedConv ?f ?x ?w ?b _) ?r)" => {
            Build { op: Op::FusedConv, attrs: keep_f, inputs: vec![v("?x"), v("?w"), v("?b"), v("?r")] }
        }),
        rw!("gelu-erf"; "(Mul ?m1 (Mul ?m2 ?x (Add ?a (Erf ?e (Div ?d ?x ?s)) ?one)) ?half)" => {
            Build { op: Op::Gelu, attrs: gelu_attrs, inputs: vec![v("?x")] }
        } if gelu_constants),
        rw!("gelu-erf-half-first"; "(Mul ?m1 (Mul ?m2 ?x ?half) (Add ?a (Erf ?e (Div ?d ?x ?s)) ?one))" => {
            Build { op: Op::Gelu, attrs: gelu_attrs, inputs: vec![v("?x")] }
        } if gelu_constants),
    ];
    r.extend(attention_rules());
    for &op in ACTIVATIONS {
        r.extend(activation_rules(op));
    }
    for &op in UNARY {
        let name = format!("chain-{}", op.name().to_lowercase());
        let pat = format!("({} ?act ?inner)", op.name());
        r.push(mk(name, pat.as_str(), Chain { op }));
    }
    r
}

fn mk(
    name: String,
    pat: &str,
    applier: impl Applier<TNode, crate::analysis::TensorAnalysis> + Send + Sync + 'static,
) -> Rule {
    let p: egg::Pattern<TNode> = pat.parse().expect("rule patterns are literals");
    egg::Rewrite::new(name, p, applier).expect("rule variables are bound by the pattern")
}

/// Scaled dot-product attention written out: `MatMul(Softmax(QKᵀ·scale
/// [+ mask]), V)` with 4-D `[B, H, S, D]` operands becomes the ONNX
/// `Attention` op. Kᵀ is usually a Transpose of the heads reshape; K is
/// then the same Transpose with the last two output axes swapped, which
/// `transpose-transpose` would otherwise have to discover.
pub struct Attn {
    /// The scale is a divisor (`Div` by √d) rather than a factor.
    pub divide: bool,
    pub mask: bool,
}

fn perm_of(a: &Attrs) -> Option<Vec<i64>> {
    match a.get("perm")? {
        Attr::Ints(p) => Some(p.clone()),
        _ => None,
    }
}

fn rank4_float(t: Option<&smelt_ir::TensorType>) -> Option<Vec<usize>> {
    let t = t?;
    let d = t.shape.as_static()?;
    (d.len() == 4
        && matches!(
            t.dtype,
            smelt_ir::DType::F32
                | smelt_ir::DType::F16
                | smelt_ir::DType::BF16
                | smelt_ir::DType::F64
        ))
    .then_some(d)
}

/// Shapes, dtypes and the softmax axis fit `Attention`.
fn attention_fits(eg: &TEGraph, s: &Subst, mask: bool) -> Option<f64> {
    let q = rank4_float(super::ty_of(eg, s, "?q"))?;
    let kt = rank4_float(super::ty_of(eg, s, "?kt"))?;
    let v = rank4_float(super::ty_of(eg, s, "?v"))?;
    let dt = super::ty_of(eg, s, "?q")?.dtype;
    if super::ty_of(eg, s, "?kt")?.dtype != dt || super::ty_of(eg, s, "?v")?.dtype != dt {
        return None;
    }
    // Q [B,H,S,D] · Kᵀ [B,H,D,T] · V [B,H,T,Dv], heads and batch equal
    // (no broadcasting, which Attention does not do).
    if q[0] != kt[0]
        || q[0] != v[0]
        || q[1] != kt[1]
        || q[1] != v[1]
        || q[3] != kt[2]
        || kt[3] != v[2]
    {
        return None;
    }
    let axis = match attrs_of(eg, s, "?sm")?.get("axis") {
        None => -1,
        Some(Attr::Int(a)) => *a,
        Some(_) => return None,
    };
    if axis != -1 && axis != 3 {
        return None;
    }
    if mask {
        let m = super::ty_of(eg, s, "?mask")?;
        let md = m.shape.as_static()?;
        // Attention pads a short last mask dim with -inf instead of
        // broadcasting it, so only a full-length last dim is the same as Add.
        if m.dtype != dt || md.is_empty() || md.len() > 4 || md.last() != Some(&kt[3]) {
            return None;
        }
        let want = [q[0], q[1], q[2], kt[3]];
        let off = 4 - md.len();
        if md
            .iter()
            .enumerate()
            .any(|(i, &k)| k != 1 && k != want[i + off])
        {
            return None;
        }
    }
    let sv = value_of(eg, s, "?s")?.to_f64_vec()?;
    match sv.as_slice() {
        [x] if x.is_finite() && *x != 0.0 => Some(*x),
        _ => None,
    }
}

impl Applier<TNode, crate::analysis::TensorAnalysis> for Attn {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        s: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let Some(sv) = attention_fits(eg, s, self.mask) else {
            return vec![];
        };
        if eg[eclass].nodes.iter().any(|n| {
            matches!(
                n,
                TNode::Op {
                    op: Op::Attention,
                    ..
                }
            )
        }) {
            return vec![];
        }
        let scale = if self.divide { 1.0 / sv } else { sv };
        let kt = s[var("?kt")];
        // K from the transpose that made Kᵀ, with its last two axes swapped.
        let from_transpose = eg[kt].nodes.iter().find_map(|n| match n {
            TNode::Op {
                op: Op::Transpose,
                nout: 1,
                args,
            } if args.len() == 2 => {
                let p = perm_of(eg[args[0]].data.attrs.as_ref()?.attrs())?;
                (p.len() == 4).then(|| (args[1], vec![p[0], p[1], p[3], p[2]]))
            }
            _ => None,
        });
        let (src, perm) = from_transpose.unwrap_or((kt, vec![0, 1, 3, 2]));
        let mut pa = Attrs::new();
        pa.insert("perm".into(), Attr::Ints(perm));
        let pa = eg.add(TNode::Attrs(AttrKey::new(pa)));
        let k = eg.add(TNode::op(Op::Transpose, pa, &[src]));
        let mut a = Attrs::new();
        a.insert("scale".into(), Attr::Float(scale as f32));
        let a = eg.add(TNode::Attrs(AttrKey::new(a)));
        let mut ins = vec![s[var("?q")], k, s[var("?v")]];
        if self.mask {
            ins.push(s[var("?mask")]);
        }
        let id = eg.add(TNode::op(Op::Attention, a, &ins));
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
}

fn attention_rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for (sn, sop, divide) in [("div", "Div", true), ("mul", "Mul", false)] {
        let scores = format!("({sop} ?ad (MatMul ?m1 ?q ?kt) ?s)");
        out.push(mk(
            format!("attention-{sn}-mask"),
            &format!("(MatMul ?m2 (Softmax ?sm (Add ?aa {scores} ?mask)) ?v)"),
            Attn { divide, mask: true },
        ));
        out.push(mk(
            format!("attention-{sn}"),
            &format!("(MatMul ?m2 (Softmax ?sm {scores}) ?v)"),
            Attn {
                divide,
                mask: false,
            },
        ));
    }
    out
}
