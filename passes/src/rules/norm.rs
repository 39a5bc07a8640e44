//! Normalizations: batchnorm folded into the preceding Conv or MatMul (new
//! weight and bias constants computed at compile time), and LayerNorm,
//! RMSNorm and Softmax recognized from the decomposed forms exporters write
//! (ReduceMean / Sub / Pow / Sqrt / Div ..., Exp / ReduceMax / ReduceSum).
//!
//! Recognition is not bit-exact: the ONNX ops compute in one step what the
//! decomposed graph rounds after every op, so results agree within the
//! float tolerance of the dtype (the translation-validation tests use it).

use super::{Rule, attrs_of, is_absent, ty_of, value_of, var};
use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, Subst, Symbol};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, Attrs, DType, Op, TensorData, TensorType};

type Guard = Box<dyn Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync>;

/// The constant a class holds, however large (weights are not decoded by
/// the analysis, but their data is in its side table).
pub fn const_data(eg: &TEGraph, id: Id) -> Option<&TensorData> {
    eg[id].nodes.iter().find_map(|n| match n {
        TNode::Const(ix) => eg.analysis.consts.get(*ix as usize),
        _ => None,
    })
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

fn static_dims(ty: Option<&TensorType>) -> Option<Vec<usize>> {
    ty?.shape.as_static()
}

/// `?ax` is the constant `[-1]` or `[rank-1]` for the rank of `?x`, and the
/// reduce op `?r` keeps dims: a reduction over the last axis only.
pub fn last_axis(r: &'static str, ax: &'static str, x: &'static str) -> Guard {
    Box::new(move |eg, _, s| {
        let keep =
            attrs_of(eg, s, r).is_some_and(|a| !matches!(a.get("keepdims"), Some(Attr::Int(0))));
        let Some(rank) = ty_of(eg, s, x)
            .and_then(|t| t.shape.dims())
            .map(|d| d.len() as i64)
        else {
            return false;
        };
        keep && rank >= 1
            && value_of(eg, s, ax)
                .and_then(|t| t.to_i64_vec())
                .is_some_and(|v| v == [-1] || v == [rank - 1])
    })
}

/// `?c` is a one-element constant equal to `x`.
pub fn scalar_is(c: &'static str, x: f64) -> Guard {
    Box::new(move |eg, _, s| {
        value_of(eg, s, c)
            .and_then(|t| t.to_f64_vec())
            .is_some_and(|v| v == [x])
    })
}

/// `?c` is a one-element positive float constant (an epsilon).
pub fn positive_scalar(c: &'static str) -> Guard {
    Box::new(move |eg, _, s| {
        value_of(eg, s, c)
            .and_then(|t| t.to_f64_vec())
            .is_some_and(|v| v.len() == 1 && v[0] > 0.0 && v[0].is_finite())
    })
}

/// `?p` (gamma or beta) has `?x`'s float dtype and a static shape that is
/// `[D]` (or `[1, .., 1, D]` of no higher rank) with `D` the last dim of `?x`.
pub fn last_dim_param(p: &'static str, x: &'static str) -> Guard {
    Box::new(move |eg, _, s| {
        let (Some(pt), Some(xt)) = (ty_of(eg, s, p), ty_of(eg, s, x)) else {
            return false;
        };
        let (Some(pd), Some(xd)) = (pt.shape.as_static(), static_dims(Some(xt))) else {
            return false;
        };
        let Some(&d) = xd.last() else { return false };
        pt.dtype == xt.dtype
            && is_float(xt.dtype)
            && !pd.is_empty()
            && pd.len() <= xd.len()
            && pd.last() == Some(&d)
            && pd[..pd.len() - 1].iter().all(|&k| k == 1)
    })
}

/// The matched class has `?x`'s static type.
pub fn keeps_x_type(eg: &mut TEGraph, root: Id, s: &Subst) -> bool {
    super::same_static_type(eg[root].data.ty(), ty_of(eg, s, "?x"))
}

fn all(gs: Vec<Guard>) -> Guard {
    Box::new(move |eg, id, s| gs.iter().all(|g| g(eg, id, s)))
}

/// Builds `op{attrs}(inputs)` and joins it with the matched class when the
/// types agree (the shared check of every recognizer here).
fn join(eg: &mut TEGraph, eclass: Id, op: Op, attrs: Attrs, ins: &[Id], rule: Symbol) -> Vec<Id> {
    let a = eg.add(TNode::Attrs(AttrKey::new(attrs)));
    let id = eg.add(TNode::op(op, a, ins));
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

fn scalar_f32(eg: &TEGraph, s: &Subst, v: &str) -> Option<f32> {
    let t = value_of(eg, s, v)?.to_f64_vec()?;
    match t.as_slice() {
        [x] => Some(*x as f32),
        _ => None,
    }
}

/// A recognized normalization: `op{axis=-1, epsilon=?eps}(?x, [?gamma], [?beta])`.
struct Norm {
    op: Op,
    gamma: bool,
    beta: bool,
}

impl Applier<TNode, TensorAnalysis> for Norm {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        s: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let mut attrs = Attrs::new();
        attrs.insert("axis".into(), Attr::Int(-1));
        if self.op != Op::Softmax {
            let Some(eps) = scalar_f32(eg, s, "?eps") else {
                return vec![];
            };
            attrs.insert("epsilon".into(), Attr::Float(eps));
            attrs.insert("stash_type".into(), Attr::Int(1));
        }
        let mut ins = vec![s[var("?x")]];
        if self.gamma {
            ins.push(s[var("?gamma")]);
        }
        if self.beta {
            ins.push(s[var("?beta")]);
        }
        join(eg, eclass, self.op, attrs, &ins, rule)
    }
}

/// The batchnorm bound to `?bn` (inference form) over a Conv or MatMul
/// whose weight and every BN parameter are constants.
struct FoldBn {
    matmul: bool,
    with_bias: bool,
}

/// `k = scale / sqrt(var + eps)` and `b' = (b - mean) * k + B` per channel.
fn bn_coeffs(
    eg: &TEGraph,
    s: &Subst,
    c: usize,
    conv_bias: Option<Id>,
) -> Option<(Vec<f64>, Vec<f64>)> {
    let get = |v: &str| -> Option<Vec<f64>> {
        let t = Tensor::from_data(const_data(eg, s[var(v)])?).ok()?;
        let x = t.to_f64_vec()?;
        (x.len() == c).then_some(x)
    };
    let attrs = attrs_of(eg, s, "?bn")?;
    if matches!(attrs.get("training_mode"), Some(Attr::Int(t)) if *t != 0) {
        return None;
    }
    let eps = match attrs.get("epsilon") {
        Some(Attr::Float(e)) => f64::from(*e),
        None => 1e-5,
        Some(_) => return None,
    };
    let (scale, beta, mean, var_) = (get("?s")?, get("?b")?, get("?m")?, get("?v")?);
    let b0 = match conv_bias {
        Some(id) => {
            let x = Tensor::from_data(const_data(eg, id)?).ok()?.to_f64_vec()?;
            (x.len() == c).then_some(x)?
        }
        None => vec![0.0; c],
    };
    let mut k = Vec::with_capacity(c);
    let mut bias = Vec::with_capacity(c);
    for i in 0..c {
        let ki = scale[i] / (var_[i] + eps).sqrt();
        if !ki.is_finite() {
            return None;
        }
        k.push(ki);
        bias.push((b0[i] - mean[i]) * ki + beta[i]);
    }
    Some((k, bias))
}

impl Applier<TNode, TensorAnalysis> for FoldBn {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        s: &Subst,
        _ast: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let (x, w) = (eg.find(s[var("?x")]), eg.find(s[var("?w")]));
        let target = if self.matmul {
            Op::FusedMatMul
        } else {
            Op::Conv
        };
        // Folding runs once per batchnorm: the class already holds the
        // folded op once it has fired (the rule is searched every iteration).
        let done = eg[eclass].nodes.iter().any(|n| match n {
            TNode::Op { op, args, .. } => {
                *op == target && args.get(1).is_some_and(|a| eg.find(*a) == x)
            }
            _ => false,
        });
        if done {
            return vec![];
        }
        let Some(wd) = const_data(eg, w) else {
            return vec![];
        };
        if !is_float(wd.dtype) {
            return vec![];
        }
        let wshape = wd.shape.clone();
        // Conv weights are [M, C/g, k...] (channel = axis 0); MatMul weights
        // [K, N] with the BN channel being the output column.
        let c = match (self.matmul, wshape.as_slice()) {
            (false, [m, _, ..]) => *m,
            (true, [_, n]) => *n,
            _ => return vec![],
        };
        if self.matmul {
            // BN's channel axis is 1, the matmul's last axis only for rank 2.
            let Some(d) = eg[eclass].data.ty().and_then(|t| t.shape.as_static()) else {
                return vec![];
            };
            if d.len() != 2 {
                return vec![];
            }
        }
        let conv_bias = if self.with_bias {
            Some(s[var("?cb")])
        } else {
            None
        };
        let Some((k, bias)) = bn_coeffs(eg, s, c, conv_bias) else {
            return vec![];
        };
        let Some(wv) = Tensor::from_data(wd).ok().and_then(|t| t.to_f64_vec()) else {
            return vec![];
        };
        let n = wv.len();
        let per = n.checked_div(c).unwrap_or(0);
        let folded: Vec<f64> = wv
            .iter()
            .enumerate()
            .map(|(i, &e)| {
                let ch = if self.matmul { i % c } else { i / per.max(1) };
                e * k[ch]
            })
            .collect();
        let dt = wd.dtype;
        let (Ok(wn), Ok(bn)) = (
            Tensor::from_f64(dt, wshape, folded).to_data(),
            Tensor::from_f64(dt, vec![c], bias).to_data(),
        ) else {
            return vec![];
        };
        let wi = eg.analysis.add_const(wn);
        let bi = eg.analysis.add_const(bn);
        let wid = eg.add(TNode::Const(wi));
        let bid = eg.add(TNode::Const(bi));
        if self.matmul {
            let absent = eg.add(TNode::Absent);
            join(
                eg,
                eclass,
                Op::FusedMatMul,
                Attrs::new(),
                &[x, wid, bid, absent],
                rule,
            )
        } else {
            let attrs = attrs_of(eg, s, "?c").cloned().unwrap_or_default();
            join(eg, eclass, Op::Conv, attrs, &[x, wid, bid], rule)
        }
    }
}

/// Weight and batchnorm parameters are constants. Other users of the
/// original weight keep it (the e-graph cannot tell whether there are any);
/// extraction drops it when nothing else needs it.
pub fn bn_constants(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    ["?w", "?s", "?b", "?m", "?v"]
        .iter()
        .all(|v| const_data(eg, s[var(v)]).is_some())
        && !is_absent(eg, s[var("?x")])
}

fn mk(
    name: String,
    pat: &str,
    applier: impl Applier<TNode, TensorAnalysis> + Send + Sync + 'static,
) -> Rule {
    let p: egg::Pattern<TNode> = pat.parse().expect("rule patterns are literals");
    egg::Rewrite::new(name, p, applier).expect("rule variables are bound by the pattern")
}

fn guarded(
    name: String,
    pat: &str,
    guard: Guard,
    applier: impl Applier<TNode, TensorAnalysis> + Send + Sync + 'static,
) -> Rule {
    mk(
        name,
        pat,
        egg::ConditionalApplier {
            condition: move |eg: &mut TEGraph, id: Id, s: &Subst| guard(eg, id, s),
            applier,
        },
    )
}

fn layer_norm_rules() -> Vec<Rule> {
    let d = "(Sub ?as ?x (ReduceMean ?r1 ?x ?ax1))";
    let vars = [
        ("pow", format!("(Pow ?ap {d} ?two)")),
        ("mul", format!("(Mul ?ap {d} {d})")),
    ];
    let mut out = Vec::new();
    for (vn, sq) in &vars {
        let std = format!("(Sqrt ?aq (Add ?ae (ReduceMean ?r2 {sq} ?ax2) ?eps))");
        let norms = [
            ("div", format!("(Div ?ad {d} {std})")),
            ("recip", format!("(Mul ?ad {d} (Reciprocal ?ar {std}))")),
        ];
        for (nn, n) in &norms {
            let base = || -> Vec<Guard> {
                let mut g = vec![
                    last_axis("?r1", "?ax1", "?x"),
                    last_axis("?r2", "?ax2", "?x"),
                    positive_scalar("?eps"),
                    last_dim_param("?gamma", "?x"),
                    Box::new(keeps_x_type),
                ];
                if *vn == "pow" {
                    g.push(scalar_is("?two", 2.0));
                }
                g
            };
            let mut g = base();
            g.push(last_dim_param("?beta", "?x"));
            out.push(guarded(
                format!("layernorm-{vn}-{nn}"),
                &format!("(Add ?aa (Mul ?am {n} ?gamma) ?beta)"),
                all(g),
                Norm {
                    op: Op::LayerNormalization,
                    gamma: true,
                    beta: true,
                },
            ));
            out.push(guarded(
                format!("layernorm-nobias-{vn}-{nn}"),
                &format!("(Mul ?am {n} ?gamma)"),
                all(base()),
                Norm {
                    op: Op::LayerNormalization,
                    gamma: true,
                    beta: false,
                },
            ));
        }
    }
    out
}

fn rms_norm_rules() -> Vec<Rule> {
    let sqs = [("pow", "(Pow ?ap ?x ?two)"), ("mul", "(Mul ?ap ?x ?x)")];
    let mut out = Vec::new();
    for (vn, sq) in sqs {
        let std = format!("(Sqrt ?aq (Add ?ae (ReduceMean ?r2 {sq} ?ax2) ?eps))");
        let norms = [
            ("div", format!("(Div ?ad ?x {std})")),
            ("recip", format!("(Mul ?ad ?x (Reciprocal ?ar {std}))")),
        ];
        for (nn, n) in &norms {
            let mut g: Vec<Guard> = vec![
                last_axis("?r2", "?ax2", "?x"),
                positive_scalar("?eps"),
                last_dim_param("?gamma", "?x"),
                Box::new(keeps_x_type),
            ];
            if vn == "pow" {
                g.push(scalar_is("?two", 2.0));
            }
            out.push(guarded(
                format!("rmsnorm-{vn}-{nn}"),
                &format!("(Mul ?am {n} ?gamma)"),
                all(g),
                Norm {
                    op: Op::RMSNormalization,
                    gamma: true,
                    beta: false,
                },
            ));
        }
    }
    out
}

fn float_x(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    ty_of(eg, s, "?x").is_some_and(|t| is_float(t.dtype))
}

fn softmax_rules() -> Vec<Rule> {
    let e = "(Exp ?ae (Sub ?as ?x (ReduceMax ?r1 ?x ?ax1)))";
    let e_plain = "(Exp ?ae ?x)";
    vec![
        guarded(
            "softmax-stable".into(),
            &format!("(Div ?ad {e} (ReduceSum ?r2 {e} ?ax2))"),
            all(vec![
                last_axis("?r1", "?ax1", "?x"),
                last_axis("?r2", "?ax2", "?x"),
                Box::new(float_x),
                Box::new(keeps_x_type),
            ]),
            Norm {
                op: Op::Softmax,
                gamma: false,
                beta: false,
            },
        ),
        guarded(
            "softmax-plain".into(),
            &format!("(Div ?ad {e_plain} (ReduceSum ?r2 {e_plain} ?ax2))"),
            all(vec![
                last_axis("?r2", "?ax2", "?x"),
                Box::new(float_x),
                Box::new(keeps_x_type),
            ]),
            Norm {
                op: Op::Softmax,
                gamma: false,
                beta: false,
            },
        ),
    ]
}

fn bn_rules() -> Vec<Rule> {
    let bn = |inner: &str| format!("(BatchNormalization ?bn {inner} ?s ?b ?m ?v)");
    vec![
        guarded(
            "batchnorm-fold-conv".into(),
            &bn("(Conv ?c ?x ?w)"),
            Box::new(bn_constants),
            FoldBn {
                matmul: false,
                with_bias: false,
            },
        ),
        guarded(
            "batchnorm-fold-conv-bias".into(),
            &bn("(Conv ?c ?x ?w ?cb)"),
            Box::new(bn_constants),
            FoldBn {
                matmul: false,
                with_bias: true,
            },
        ),
        guarded(
            "batchnorm-fold-matmul".into(),
            &bn("(MatMul ?c ?x ?w)"),
            Box::new(bn_constants),
            FoldBn {
                matmul: true,
                with_bias: false,
            },
        ),
    ]
}

pub fn rules() -> Vec<Rule> {
    let mut r = bn_rules();
    r.extend(layer_norm_rules());
    r.extend(rms_norm_rules());
    r.extend(softmax_rules());
    r
}
