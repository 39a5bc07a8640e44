//! Elementwise ops (numpy broadcasting): one kernel whose domain is the
//! output's shape and whose body loads each operand at its broadcast index.

use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

/// The flat index into an operand of dims `inp` (right-aligned against the
/// output's `out` dims, size-1 dims broadcast) at domain point `idx`.
pub fn broadcast_index(idx: &[Expr], out: &[u64], inp: &[u64]) -> Expr {
    let off = out.len() - inp.len();
    let sub: Vec<Expr> = inp
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            if n == 1 && out[off + d] != 1 {
                idx_zero()
            } else {
                idx[off + d].clone()
            }
        })
        .collect();
    flat(&sub, inp)
}

fn idx_zero() -> Expr {
    idx(0)
}

/// When every operand has the output's dims, the domain collapses to one
/// dimension (one loop, no index arithmetic).
fn domain_for(out: &T, ins: &[T]) -> (Vec<u64>, bool) {
    if ins.iter().all(|t| t.dims == out.dims) {
        (vec![out.numel()], true)
    } else {
        (out.dims.clone(), false)
    }
}

/// Emits `out[i] = f(ins[0][bi], ins[1][bi], ...)`.
pub fn map(
    l: &mut Lower,
    name: &str,
    ins: &[T],
    out: &T,
    f: impl FnOnce(&mut Kernel, Vec<Expr>) -> LResult<Expr>,
) -> LResult<()> {
    map_with(l, name, ins, &[], out, f)
}

/// `map` plus `scalars`: one-element operands (Clip's bounds, say) passed
/// to `f` after the broadcast operands.
pub fn map_with(
    l: &mut Lower,
    name: &str,
    ins: &[T],
    scalars: &[T],
    out: &T,
    f: impl FnOnce(&mut Kernel, Vec<Expr>) -> LResult<Expr>,
) -> LResult<()> {
    for t in ins {
        if t.rank() > out.rank() {
            return Err(LowerError::Invalid(format!(
                "{name}: operand of rank {} is larger than the output's {}",
                t.rank(),
                out.rank()
            )));
        }
    }
    let (domain, flat_domain) = domain_for(out, ins);
    let mut k = Kernel::new(name, domain);
    let idxs: Vec<Expr> = (0..k.domain.len()).map(|d| k.index(d)).collect();
    let mut loads = Vec::new();
    for (i, t) in ins.iter().enumerate() {
        let p = param(&mut k, &format!("x{i}"), t, Access::Read);
        let index = if flat_domain {
            idxs[0].clone()
        } else {
            broadcast_index(&idxs, &out.dims, &t.dims)
        };
        loads.push(load(p, index));
    }
    for (i, t) in scalars.iter().enumerate() {
        let p = param(&mut k, &format!("s{i}"), t, Access::Read);
        loads.push(load(p, idx(0)));
    }
    let y = param(&mut k, "y", out, Access::Write);
    let value = f(&mut k, loads)?;
    let oi = if flat_domain {
        idxs[0].clone()
    } else {
        flat(&idxs, &out.dims)
    };
    k.body.push(Stmt::Store {
        buf: y,
        index: oi,
        value,
    });
    let mut args: Vec<&T> = ins.iter().chain(scalars).collect();
    args.push(out);
    l.kernel(k, &args)
}

fn float_only(op: &str, t: &T) -> LResult<()> {
    if t.ty.is_float() {
        Ok(())
    } else {
        unsupported(format!("{op} of {}", t.dtype))
    }
}

fn c(ty: Ty, x: f64) -> Expr {
    lit(x, ty)
}

fn sigmoid(ty: Ty, x: Expr) -> Expr {
    div(c(ty, 1.0), add(c(ty, 1.0), un(UnOp::Exp, un(UnOp::Neg, x))))
}

/// Unary float ops whose body is an expression of `x` (and attributes).
fn unary_float(a: &UnaryAttrs, op: &str, ty: Ty, x: Expr) -> Option<Expr> {
    let fa = |v: Option<f64>, d: f64| v.unwrap_or(d);
    let zero = c(ty, 0.0);
    Some(match op {
        "Exp" => un(UnOp::Exp, x),
        "Log" => un(UnOp::Log, x),
        "Sqrt" => un(UnOp::Sqrt, x),
        "Sin" => un(UnOp::Sin, x),
        "Cos" => un(UnOp::Cos, x),
        "Tan" => un(UnOp::Tan, x),
        "Asin" => un(UnOp::Asin, x),
        "Acos" => un(UnOp::Acos, x),
        "Atan" => un(UnOp::Atan, x),
        "Sinh" => un(UnOp::Sinh, x),
        "Cosh" => un(UnOp::Cosh, x),
        "Tanh" => un(UnOp::Tanh, x),
        "Asinh" => un(UnOp::Asinh, x),
        "Acosh" => un(UnOp::Acosh, x),
        "Atanh" => un(UnOp::Atanh, x),
        "Erf" => un(UnOp::Erf, x),
        "Floor" => un(UnOp::Floor, x),
        "Ceil" => un(UnOp::Ceil, x),
        "Round" => un(UnOp::Round, x),
        "Reciprocal" => div(c(ty, 1.0), x),
        "Sigmoid" => sigmoid(ty, x),
        "Relu" => select(cmp(CmpOp::Lt, x.clone(), zero.clone()), zero, x),
        "LeakyRelu" => {
            let a = fa(a.alpha, 0.01);
            select(cmp(CmpOp::Lt, x.clone(), zero), mul(c(ty, a), x.clone()), x)
        }
        "Elu" => {
            let a = fa(a.alpha, 1.0);
            select(
                cmp(CmpOp::Lt, x.clone(), zero),
                mul(c(ty, a), sub(un(UnOp::Exp, x.clone()), c(ty, 1.0))),
                x,
            )
        }
        "Selu" => {
            let g = fa(a.gamma, 1.050_700_987_355_480_5);
            let a = fa(a.alpha, 1.673_263_242_354_377_3);
            select(
                cmp(CmpOp::Le, x.clone(), zero),
                mul(
                    c(ty, g),
                    mul(c(ty, a), sub(un(UnOp::Exp, x.clone()), c(ty, 1.0))),
                ),
                mul(c(ty, g), x),
            )
        }
        "Celu" => {
            let a = fa(a.alpha, 1.0);
            // max(0, x) + min(0, a * (exp(x / a) - 1))
            add(
                bin(BinOp::Max, zero.clone(), x.clone()),
                bin(
                    BinOp::Min,
                    zero,
                    mul(c(ty, a), sub(un(UnOp::Exp, div(x, c(ty, a))), c(ty, 1.0))),
                ),
            )
        }
        "HardSigmoid" => {
            let b = fa(a.beta, 0.5);
            let a = fa(a.alpha, 0.2);
            bin(
                BinOp::Max,
                zero,
                bin(BinOp::Min, c(ty, 1.0), add(mul(c(ty, a), x), c(ty, b))),
            )
        }
        "HardSwish" => {
            let inner = bin(
                BinOp::Max,
                zero,
                bin(
                    BinOp::Min,
                    c(ty, 1.0),
                    add(mul(c(ty, 1.0 / 6.0), x.clone()), c(ty, 0.5)),
                ),
            );
            mul(x, inner)
        }
        "Softplus" => un(UnOp::Log, add(un(UnOp::Exp, x), c(ty, 1.0))),
        "Softsign" => div(x.clone(), add(c(ty, 1.0), un(UnOp::Abs, x))),
        "ThresholdedRelu" => {
            let a = fa(a.alpha, 1.0);
            select(cmp(CmpOp::Gt, x.clone(), c(ty, a)), x, zero)
        }
        "Mish" => mul(
            x.clone(),
            un(UnOp::Tanh, un(UnOp::Log, add(un(UnOp::Exp, x), c(ty, 1.0)))),
        ),
        "Gelu" => {
            if a.tanh_gelu {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                let x3 = mul(x.clone(), mul(x.clone(), x.clone()));
                let inner = mul(
                    c(ty, (2.0 / std::f64::consts::PI).sqrt()),
                    add(x.clone(), mul(c(ty, 0.044715), x3)),
                );
                mul(mul(c(ty, 0.5), x), add(c(ty, 1.0), un(UnOp::Tanh, inner)))
            } else {
                mul(
                    mul(c(ty, 0.5), x.clone()),
                    add(
                        c(ty, 1.0),
                        un(UnOp::Erf, mul(x, c(ty, std::f64::consts::FRAC_1_SQRT_2))),
                    ),
                )
            }
        }
        _ => return None,
    })
}

/// The attributes unary float ops read, fetched once (defaults are the
/// op's own, applied in `unary_float`).
struct UnaryAttrs {
    alpha: Option<f64>,
    beta: Option<f64>,
    gamma: Option<f64>,
    tanh_gelu: bool,
}

impl UnaryAttrs {
    fn read(l: &Lower) -> LResult<Self> {
        let ctx = l.ctx();
        let f = |n: &str| -> LResult<Option<f64>> {
            if ctx.attr(n).is_none() {
                return Ok(None);
            }
            ctx.float(n, 0.0)
                .map(|v| Some(v as f64))
                .map_err(|e| LowerError::Invalid(e.0))
        };
        Ok(UnaryAttrs {
            alpha: f("alpha")?,
            beta: f("beta")?,
            gamma: f("gamma")?,
            tanh_gelu: ctx
                .string("approximate", "none")
                .map_err(|e| LowerError::Invalid(e.0))?
                == "tanh",
        })
    }
}

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    let r = match op {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" | "And" | "Or" | "Xor" | "Equal" | "Less" | "LessOrEqual" | "Greater"
        | "GreaterOrEqual" | "BitShift" => binary(l, op),
        "Max" | "Min" | "Sum" | "Mean" => variadic(l, op),
        "Identity" => (|| {
            let x = l.input(0)?;
            let y = l.out(0)?;
            l.alias(&y, &x);
            Ok(())
        })(),
        "Abs" | "Neg" | "Sign" | "Not" | "BitwiseNot" | "IsNaN" | "IsInf" => simple_unary(l, op),
        "Where" => where_(l),
        "FusedElementwise" => fused_chain(l),
        "Clip" => clip(l),
        "Cast" => cast_node(l),
        "PRelu" => prelu(l),
        _ => return unary_float_node(l, op),
    };
    Some(r)
}

fn unary_float_node(l: &mut Lower, op: &str) -> Option<LResult<()>> {
    let a = match UnaryAttrs::read(l) {
        Ok(a) => a,
        Err(e) => return Some(Err(e)),
    };
    unary_float(&a, op, Ty::F32, f32(0.0))?;
    Some((|| {
        let x = l.input(0)?;
        let y = l.out(0)?;
        float_only(op, &x)?;
        let ty = x.ty.compute();
        map(l, &op.to_ascii_lowercase(), &[x], &y, |_, v| {
            unary_float(&a, op, ty, v[0].clone())
                .ok_or_else(|| LowerError::Unsupported(op.to_string()))
        })
    })())
}

fn binary(l: &mut Lower, op: &str) -> LResult<()> {
    let a = l.input(0)?;
    let b = l.input(1)?;
    let y = l.out(0)?;
    let ty = a.ty.compute();
    let direction = if op == "BitShift" {
        l.ctx()
            .string("direction", "")
            .map_err(|e| LowerError::Invalid(e.0))?
    } else {
        String::new()
    };
    let fmod = l
        .ctx()
        .int("fmod", 0)
        .map_err(|e| LowerError::Invalid(e.0))?;
    // An integer base with a float exponent: f64 power truncated to i64,
    // then wrapped to the base's type, as the reference does.
    let int_base_float_exp = op == "Pow" && !ty.is_float() && b.ty.is_float();
    if op == "Pow" && b.ty.compute() != ty && !ty.is_float() && !int_base_float_exp {
        return unsupported("Pow of an integer base with another exponent type");
    }
    map(l, &op.to_ascii_lowercase(), &[a, b], &y, move |_, v| {
        let (x, z) = (v[0].clone(), v[1].clone());
        Ok(match op {
            "Add" => add(x, z),
            "Sub" => sub(x, z),
            "Mul" => mul(x, z),
            "Div" => div(x, z),
            "Pow" if int_base_float_exp => cast(
                ty,
                cast(Ty::I64, bin(BinOp::Pow, cast(Ty::F64, x), cast(Ty::F64, z))),
            ),
            "Pow" => {
                let z = if ty.is_float() { cast(ty, z) } else { z };
                bin(BinOp::Pow, x, z)
            }
            "Mod" => {
                if fmod != 0 {
                    rem(x, z)
                } else if ty.is_float() {
                    // numpy's mod: the remainder takes the divisor's sign (a
                    // zero one too); x mod 0 and NaNs stay fmod's NaN.
                    let m = rem(x, z.clone());
                    let zero = lit(0.0, ty);
                    let zneg = cmp(CmpOp::Lt, z.clone(), zero.clone());
                    let keep = bin(
                        BinOp::Or,
                        cmp(CmpOp::Eq, z.clone(), zero.clone()),
                        un(UnOp::IsNan, m.clone()),
                    );
                    let flip = cmp(
                        CmpOp::Ne,
                        cmp(CmpOp::Lt, m.clone(), zero.clone()),
                        zneg.clone(),
                    );
                    select(
                        keep,
                        m.clone(),
                        select(
                            cmp(CmpOp::Eq, m.clone(), zero.clone()),
                            select(zneg, lit(-0.0, ty), zero),
                            select(flip, add(m.clone(), z), m),
                        ),
                    )
                } else {
                    // Python-style: the result takes the divisor's sign.
                    let r = rem(x, z.clone());
                    let zero = lit(0.0, ty);
                    let fix = Expr::Bin(
                        BinOp::And,
                        Box::new(cmp(CmpOp::Ne, r.clone(), zero.clone())),
                        Box::new(cmp(
                            CmpOp::Ne,
                            cmp(CmpOp::Lt, r.clone(), zero.clone()),
                            cmp(CmpOp::Lt, z.clone(), zero),
                        )),
                    );
                    select(fix, add(r.clone(), z), r)
                }
            }
            "BitwiseAnd" | "And" => bin(BinOp::And, x, z),
            "BitwiseOr" | "Or" => bin(BinOp::Or, x, z),
            "BitwiseXor" | "Xor" => bin(BinOp::Xor, x, z),
            "BitShift" => {
                if direction == "LEFT" {
                    bin(BinOp::Shl, x, z)
                } else {
                    bin(BinOp::Shr, x, z)
                }
            }
            "Equal" => cmp(CmpOp::Eq, x, z),
            "Less" => cmp(CmpOp::Lt, x, z),
            "LessOrEqual" => cmp(CmpOp::Le, x, z),
            "Greater" => cmp(CmpOp::Gt, x, z),
            "GreaterOrEqual" => cmp(CmpOp::Ge, x, z),
            _ => return unsupported(op.to_string()),
        })
    })
}

fn variadic(l: &mut Lower, op: &str) -> LResult<()> {
    let ins: Vec<T> = (0..l.n_inputs()).filter_map(|i| l.opt_input(i)).collect();
    let y = l.out(0)?;
    if ins.is_empty() {
        return Err(LowerError::Invalid(format!("{op} without inputs")));
    }
    let ty = y.ty.compute();
    let n = ins.len();
    if op == "Mean" && !ty.is_float() {
        return unsupported("Mean of integers");
    }
    map(l, &op.to_ascii_lowercase(), &ins, &y, move |_, v| {
        let bop = match op {
            "Max" => BinOp::Max,
            "Min" => BinOp::Min,
            _ => BinOp::Add,
        };
        let mut it = v.into_iter();
        let mut acc = it.next().unwrap_or_else(|| lit(0.0, ty));
        for x in it {
            acc = bin(bop, acc, x);
        }
        if op == "Mean" {
            acc = div(acc, lit(n as f64, ty));
        }
        Ok(acc)
    })
}

fn simple_unary(l: &mut Lower, op: &str) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ty = x.ty.compute();
    let ctx = l.ctx();
    let detect_pos = ctx
        .int("detect_positive", 1)
        .map_err(|e| LowerError::Invalid(e.0))?;
    let detect_neg = ctx
        .int("detect_negative", 1)
        .map_err(|e| LowerError::Invalid(e.0))?;
    map(l, &op.to_ascii_lowercase(), &[x], &y, move |_, v| {
        let x = v[0].clone();
        let zero = lit(0.0, ty);
        Ok(match op {
            "Identity" => x,
            "Abs" => un(UnOp::Abs, x),
            "Neg" => un(UnOp::Neg, x),
            "Not" | "BitwiseNot" => un(UnOp::Not, x),
            "IsNaN" => un(UnOp::IsNan, x),
            "Sign" => {
                if ty.is_unsigned() {
                    select(cmp(CmpOp::Gt, x, zero.clone()), lit(1.0, ty), zero)
                } else {
                    select(
                        cmp(CmpOp::Gt, x.clone(), zero.clone()),
                        lit(1.0, ty),
                        select(cmp(CmpOp::Lt, x.clone(), zero.clone()), lit(-1.0, ty), {
                            // NaN stays NaN; zero stays zero.
                            if ty.is_float() { x } else { zero }
                        }),
                    )
                }
            }
            "IsInf" => {
                if !ty.is_float() {
                    Expr::Int(0, Ty::Bool)
                } else {
                    let pos = cmp(CmpOp::Eq, x.clone(), Expr::Float(f64::INFINITY, ty));
                    let neg = cmp(CmpOp::Eq, x, Expr::Float(f64::NEG_INFINITY, ty));
                    match (detect_pos != 0, detect_neg != 0) {
                        (true, true) => bin(BinOp::Or, pos, neg),
                        (true, false) => pos,
                        (false, true) => neg,
                        (false, false) => Expr::Int(0, Ty::Bool),
                    }
                }
            }
            _ => return unsupported(op.to_string()),
        })
    })
}

/// smelt's `FusedElementwise {ops=[..]}`: the unary ops applied in order,
/// one expression. 16-bit floats are refused: the reference rounds to the
/// dtype after every step, which one fused f32 expression would skip.
fn fused_chain(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ops = match l.node.attr("ops") {
        Some(smelt_ir::Attr::Strings(v)) => v.clone(),
        _ => return Err(LowerError::Invalid("FusedElementwise needs `ops`".into())),
    };
    if !matches!(x.ty, Ty::F32 | Ty::F64) {
        return unsupported(format!("FusedElementwise of {}", x.dtype));
    }
    let ty = x.ty;
    let none = UnaryAttrs {
        alpha: None,
        beta: None,
        gamma: None,
        tanh_gelu: false,
    };
    map(l, "fused", &[x], &y, |_, v| {
        let mut e = v[0].clone();
        for op in &ops {
            e = match op.as_str() {
                "Neg" => un(UnOp::Neg, e),
                "Abs" => un(UnOp::Abs, e),
                "Sign" => {
                    let zero = lit(0.0, ty);
                    select(
                        cmp(CmpOp::Gt, e.clone(), zero.clone()),
                        lit(1.0, ty),
                        select(cmp(CmpOp::Lt, e.clone(), zero), lit(-1.0, ty), e),
                    )
                }
                other => unary_float(&none, other, ty, e)
                    .ok_or_else(|| LowerError::Unsupported(format!("{other} in a fused chain")))?,
            };
        }
        Ok(e)
    })
}

fn where_(l: &mut Lower) -> LResult<()> {
    let c0 = l.input(0)?;
    let a = l.input(1)?;
    let b = l.input(2)?;
    let y = l.out(0)?;
    map(l, "where", &[c0, a, b], &y, |_, v| {
        Ok(select(v[0].clone(), v[1].clone(), v[2].clone()))
    })
}

fn clip(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let lo = l.opt_input(1);
    let hi = l.opt_input(2);
    let (has_lo, has_hi) = (lo.is_some(), hi.is_some());
    let scalars: Vec<T> = lo.into_iter().chain(hi).collect();
    if scalars.iter().any(|t| t.numel() != 1) {
        return Err(LowerError::Invalid("Clip bounds must be scalars".into()));
    }
    map_with(l, "clip", &[x], &scalars, &y, |_, v| {
        let mut e = v[0].clone();
        let mut next = 1;
        if has_lo {
            e = bin(BinOp::Max, e, v[next].clone());
            next += 1;
        }
        if has_hi {
            e = bin(BinOp::Min, e, v[next].clone());
        }
        Ok(e)
    })
}

fn cast_node(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let to = y.ty;
    map(l, "cast", &[x], &y, move |_, v| Ok(cast(to, v[0].clone())))
}

fn prelu(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let s = l.input(1)?;
    let y = l.out(0)?;
    let ty = x.ty.compute();
    map(l, "prelu", &[x, s], &y, move |_, v| {
        let zero = lit(0.0, ty);
        Ok(select(
            cmp(CmpOp::Lt, v[0].clone(), zero),
            mul(v[1].clone(), v[0].clone()),
            v[0].clone(),
        ))
    })
}
