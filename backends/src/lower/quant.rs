//! Casts to and from the 8-bit floats (with Cast's saturation), linear
//! quantization (QuantizeLinear / DequantizeLinear: per-tensor, per-axis,
//! blocked) and DynamicQuantizeLinear.
//!
//! FP8 buffers are storage types in kernels: a load decodes to f32 and a
//! store rounds to nearest even with overflow to inf / NaN, so saturation is
//! the clamp to the largest finite value applied here before the store.

use super::{LResult, Lower, LowerError, T, elementwise, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "Cast" | "CastLike" => {
            let (x, y) = (l.opt_input(0)?, l.output(0)?);
            if x.ty == Ty::F8E8M0 || y.ty == Ty::F8E8M0 {
                return Some(cast_e8m0(l, x, y));
            }
            let odd = |t: Ty| t.is_f8() || t.packed_bits().is_some();
            if !odd(x.ty) && !odd(y.ty) {
                return None;
            }
            cast_f8(l, x, y)
        }
        "QuantizeLinear" => quantize(l),
        "DequantizeLinear" => dequantize(l),
        "DynamicQuantizeLinear" => dynamic(l),
        _ => return None,
    };
    Some(r)
}

fn ierr(e: smelt_ir::semantics::OpError) -> LowerError {
    LowerError::Invalid(e.0)
}

/// The largest finite value of an FP8 type (OCP FP8 / onnx.numpy_helper).
fn f8_max(t: Ty) -> Option<f64> {
    Some(match t {
        Ty::F8E4M3FN => 448.0,
        Ty::F8E4M3FNUZ => 240.0,
        Ty::F8E5M2 | Ty::F8E5M2FNUZ => 57344.0,
        _ => return None,
    })
}

/// `v` (f32) clamped to the finite range of `t`; NaN stays NaN (the
/// kernel IR's min/max propagate it).
fn saturate(v: Expr, t: Ty) -> LResult<Expr> {
    let m =
        f8_max(t).ok_or_else(|| LowerError::Unsupported(format!("saturate to {}", t.name())))?;
    Ok(bin(BinOp::Max, bin(BinOp::Min, v, f32(m)), f32(-m)))
}

fn cast_f8(l: &mut Lower, x: T, y: T) -> LResult<()> {
    let sat = l.ctx().int("saturate", 1).map_err(ierr)? != 0;
    let (from, to) = (x.ty, y.ty);
    let small_float = |t: Ty| t.is_f8() || t == Ty::F4E2M1;
    if small_float(to) && !matches!(from, Ty::F16 | Ty::BF16 | Ty::F32) && !small_float(from) {
        // From f64 or an integer, going through f32 first could round twice.
        return unsupported(format!("cast from {} to {}", from.name(), to.name()));
    }
    let float_to_packed_int = to.packed_bits().is_some() && to.is_int() && from.is_float();
    elementwise::map(l, "cast", &[x], &y, move |_, v| {
        if float_to_packed_int {
            // Sub-byte integers (ml_dtypes) truncate and wrap; NaN and inf
            // give 0. The store keeps the low bits.
            let xf = cast(Ty::F64, v[0].clone());
            let finite = cmp(
                smelt_kernel::CmpOp::Lt,
                un(UnOp::Abs, xf.clone()),
                lit(f64::INFINITY, Ty::F64),
            );
            let i = select(finite, cast(Ty::I64, xf), idx(0));
            return Ok(cast(to, i));
        }
        let v = cast(to, v[0].clone());
        if to.is_f8() && sat {
            saturate(v, to)
        } else {
            Ok(v)
        }
    })
}

/// Casts to and from E8M0 scales. Kernels hold E8M0 as raw codes: decoding
/// is 2^(code - 127) (0xFF is NaN); encoding keeps the f32 exponent field,
/// rounded up per `round_mode` from the mantissa bits, which are recovered
/// exactly in f64 (the value's power of two is found with a log and then
/// corrected, so it does not hinge on the log's rounding).
fn cast_e8m0(l: &mut Lower, x: T, y: T) -> LResult<()> {
    let ctx = l.ctx();
    let sat = ctx.int("saturate", 1).map_err(ierr)? != 0;
    let mode = ctx.string("round_mode", "up").map_err(ierr)?;
    let plain_float = |t: Ty| matches!(t, Ty::F16 | Ty::BF16 | Ty::F32 | Ty::F64);
    let f = |v: f64| lit(v, Ty::F64);
    if x.ty == Ty::F8E8M0 {
        if !plain_float(y.ty) {
            return unsupported(format!("cast from f8e8m0 to {}", y.ty.name()));
        }
        let to = y.ty.compute();
        return elementwise::map(l, "cast_e8m0", &[x], &y, move |_, v| {
            let c = cast(Ty::I64, v[0].clone());
            let p = bin(BinOp::Pow, f(2.0), cast(Ty::F64, sub(c.clone(), idx(127))));
            Ok(cast(
                to,
                select(cmp(smelt_kernel::CmpOp::Eq, c, idx(255)), f(f64::NAN), p),
            ))
        });
    }
    if !plain_float(x.ty) || !matches!(mode.as_str(), "up" | "down" | "nearest") {
        return unsupported(format!("cast from {} to f8e8m0 ({mode})", x.ty.name()));
    }
    elementwise::map(l, "cast_e8m0", &[x], &y, move |k, v| {
        use smelt_kernel::CmpOp::*;
        // The reference reads the f32 bits, so round to f32 first.
        let a = k.var("a", Ty::F64, false);
        let a_e = un(UnOp::Abs, cast(Ty::F64, cast(Ty::F32, v[0].clone())));
        let e0 = un(
            UnOp::Floor,
            div(un(UnOp::Log, var(a)), f(std::f64::consts::LN_2)),
        );
        let (e0v, ev) = (k.var("e0", Ty::F64, false), k.var("e", Ty::F64, false));
        let pw = |e: Expr| bin(BinOp::Pow, f(2.0), e);
        let e = add(
            sub(
                var(e0v),
                select(cmp(Gt, pw(var(e0v)), var(a)), f(1.0), f(0.0)),
            ),
            select(cmp(Le, mul(f(2.0), pw(var(e0v))), var(a)), f(1.0), f(0.0)),
        );
        let normal = cmp(Ge, var(a), f(2f64.powi(-126)));
        // The exponent field and the 23 mantissa bits.
        let exp = select(
            normal.clone(),
            cast(Ty::I64, add(var(ev), f(127.0))),
            idx(0),
        );
        let frac = select(
            normal,
            sub(div(var(a), pw(var(ev))), f(1.0)),
            div(var(a), f(2f64.powi(-126))),
        );
        let (expv, mv) = (k.var("exp", Ty::I64, false), k.var("m", Ty::I64, false));
        let bit = |m: i64| cmp(Ne, bin(BinOp::And, var(mv), idx(m)), idx(0));
        let up = match mode.as_str() {
            "up" => bit(0x7F_FFFF),
            "down" => cmp(Ne, idx(0), idx(0)),
            _ => select(
                bit(0x40_0000),
                select(bit(0x3F_FFFF), bit(0x3F_FFFF), cmp(Gt, var(expv), idx(0))),
                cmp(Ne, idx(0), idx(0)),
            ),
        };
        let up = if sat {
            select(cmp(Eq, var(expv), idx(0xFE)), cmp(Ne, idx(0), idx(0)), up)
        } else {
            up
        };
        let code = add(var(expv), select(up, idx(1), idx(0)));
        let special = select(
            un(UnOp::IsNan, var(a)),
            cmp(Eq, idx(0), idx(0)),
            cmp(Eq, var(a), f(f64::INFINITY)),
        );
        let code = select(special, idx(255), code);
        k.body.extend([
            Stmt::Let(a, a_e),
            Stmt::Let(e0v, e0),
            Stmt::Let(ev, e),
            Stmt::Let(expv, exp),
            Stmt::Let(mv, cast(Ty::I64, mul(frac, f(8_388_608.0)))),
        ]);
        Ok(cast(Ty::U8, code))
    })
}

/// The kernel domain for a tensor of `dims` (a scalar runs as one point)
/// and the domain variables indexing it.
fn domain(k_dims: &[u64]) -> Vec<u64> {
    if k_dims.is_empty() {
        vec![1]
    } else {
        k_dims.to_vec()
    }
}

/// Flat index into a scale / zero point `p` for the element of `x` at
/// `idx`: one value for all, one per slice along `axis`, or one per block
/// of `block` elements along `axis` (the IR's `param_index`).
fn param_index(l: &Lower, x: &T, p: &T, at: &[Expr]) -> LResult<Expr> {
    if p.numel() == 1 {
        return Ok(idx0());
    }
    let ctx = l.ctx();
    let axis = ctx.int("axis", 1).map_err(ierr)?;
    let r = x.rank() as i64;
    if axis < -r || axis >= r {
        return Err(LowerError::Invalid(format!(
            "{}: axis {axis} out of range",
            l.op()
        )));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let block = ctx.int("block_size", 0).map_err(ierr)?;
    let dim = x.dims[axis];
    if block <= 0 {
        if p.rank() != 1 || p.dims[0] != dim {
            return Err(LowerError::Invalid(format!(
                "{}: per-axis parameter {:?} does not match axis {axis} of {:?}",
                l.op(),
                p.dims,
                x.dims
            )));
        }
        return Ok(at[axis].clone());
    }
    let block = block as u64;
    let ok = p.rank() == x.rank()
        && p.dims.iter().zip(&x.dims).enumerate().all(|(k, (&a, &b))| {
            if k == axis {
                a == dim.div_ceil(block)
            } else {
                a == b
            }
        });
    if !ok {
        return Err(LowerError::Invalid(format!(
            "{}: blocked parameter {:?} does not match {:?} with block_size {block}",
            l.op(),
            p.dims,
            x.dims
        )));
    }
    let mut pi = at.to_vec();
    pi[axis] = div(pi[axis].clone(), idx(block as i64));
    Ok(flat(&pi, &p.dims))
}

fn idx0() -> Expr {
    idx(0)
}

fn quantize(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let s = l.input(1)?;
    let zp = l.opt_input(2);
    let y = l.out(0)?;
    let ctx = l.ctx();
    let sat = ctx.int("saturate", 1).map_err(ierr)? != 0;
    // The precision numpy divides in (the IR's `div_dtype`); a 16-bit
    // quotient would need a rounding step kernels cannot express.
    let ct = match ctx.int("precision", 0).map_err(ierr)? {
        0 if x.ty == Ty::F64 || s.ty == Ty::F64 || !x.ty.is_float() => Ty::F64,
        0 if x.ty == Ty::F32 || s.ty == Ty::F32 => Ty::F32,
        1 => Ty::F32,
        11 => Ty::F64,
        _ => return unsupported("QuantizeLinear in a 16-bit precision"),
    };
    if !s.ty.is_float() {
        return unsupported("QuantizeLinear with a non-float scale");
    }
    let range = match y.ty {
        Ty::I8 => Some((-128.0, 127.0)),
        Ty::U8 => Some((0.0, 255.0)),
        Ty::I16 => Some((-32768.0, 32767.0)),
        Ty::U16 => Some((0.0, 65535.0)),
        Ty::I4 => Some((-8.0, 7.0)),
        Ty::U4 => Some((0.0, 15.0)),
        Ty::I2 => Some((-2.0, 1.0)),
        Ty::U2 => Some((0.0, 3.0)),
        t if t.is_f8() || t == Ty::F4E2M1 => None,
        t => return unsupported(format!("QuantizeLinear to {}", t.name())),
    };
    let mut k = Kernel::new("quantize", domain(&y.dims));
    let idxs: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let px = param(&mut k, "x", &x, Access::Read);
    let ps = param(&mut k, "scale", &s, Access::Read);
    let si = param_index(l, &x, &s, &idxs)?;
    let mut args = vec![x.clone(), s.clone()];
    // FP8 ignores its zero point; FP4 adds it (it saturates anyway).
    let zl = match (&zp, range) {
        (Some(z), _) if !y.ty.is_f8() => {
            let pz = param(&mut k, "zero_point", z, Access::Read);
            let zi = param_index(l, &x, z, &idxs)?;
            args.push(z.clone());
            Some(cast(ct, load(pz, zi)))
        }
        _ => None,
    };
    let py = param(&mut k, "y", &y, Access::Write);
    args.push(y.clone());
    let v = div(
        cast(ct, load(px, flat(&idxs, &x.dims))),
        cast(ct, load(ps, si)),
    );
    let value = match range {
        Some((lo, hi)) => {
            let t = k.var("q", ct, false);
            // NaN quantizes like the int32 "indefinite" value: the low end.
            let r = select(
                un(UnOp::IsNan, var(t)),
                lit(lo, ct),
                un(UnOp::Round, var(t)),
            );
            let r = match zl {
                Some(z) => add(r, z),
                None => r,
            };
            k.body.push(Stmt::Let(t, v));
            cast(
                y.ty,
                bin(BinOp::Max, bin(BinOp::Min, r, lit(hi, ct)), lit(lo, ct)),
            )
        }
        None if y.ty == Ty::F4E2M1 => {
            let v = cast(Ty::F32, v);
            match zl {
                Some(z) => add(v, cast(Ty::F32, z)),
                None => v,
            }
        }
        None => {
            let v = cast(Ty::F32, v);
            if sat { saturate(v, y.ty)? } else { v }
        }
    };
    k.body.push(Stmt::Store {
        buf: py,
        index: flat(&idxs, &y.dims),
        value,
    });
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(k, &refs)
}

fn dequantize(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let s = l.input(1)?;
    // Float inputs (FP8) carry no zero point worth subtracting.
    let zp = l.opt_input(2).filter(|_| !x.ty.is_float());
    let y = l.out(0)?;
    if !s.ty.is_float() || !y.ty.is_float() {
        return unsupported("DequantizeLinear with a non-float scale");
    }
    if let Some(z) = &zp
        && z.ty != x.ty
    {
        return unsupported("DequantizeLinear zero point of another type");
    }
    // (x - zp) * scale is exact in f64 for these inputs, as the reference
    // computes it; in f32 it rounds once to the same f32 result when the
    // difference has few bits.
    let narrow = matches!(x.ty, Ty::I8 | Ty::U8 | Ty::I16 | Ty::U16)
        || x.ty.is_f8()
        || x.ty.packed_bits().is_some();
    let ct = if y.ty == Ty::F32 && narrow && s.ty != Ty::F64 {
        Ty::F32
    } else {
        Ty::F64
    };
    let mut k = Kernel::new("dequantize", domain(&y.dims));
    let idxs: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let px = param(&mut k, "x", &x, Access::Read);
    let ps = param(&mut k, "scale", &s, Access::Read);
    let si = param_index(l, &x, &s, &idxs)?;
    let mut args = vec![x.clone(), s.clone()];
    let mut v = cast(ct, load(px, flat(&idxs, &x.dims)));
    if let Some(z) = &zp {
        let pz = param(&mut k, "zero_point", z, Access::Read);
        let zi = param_index(l, &x, z, &idxs)?;
        args.push(z.clone());
        v = sub(v, cast(ct, load(pz, zi)));
    }
    let py = param(&mut k, "y", &y, Access::Write);
    args.push(y.clone());
    let v = mul(v, cast(ct, load(ps, si)));
    // An f64 result stored to a 16-bit float rounds once, directly.
    let value = if y.ty == Ty::F64 || ct == Ty::F64 && y.ty != Ty::F32 {
        v
    } else {
        cast(y.ty, v)
    };
    k.body.push(Stmt::Store {
        buf: py,
        index: flat(&idxs, &y.dims),
        value,
    });
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(k, &refs)
}

/// uint8 quantization with scale and zero point from the data's range, in
/// f32 step by step like the specification's formula: one serial kernel
/// finds the range and writes scale and zero point, a map quantizes.
fn dynamic(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let (Some(ys), Some(yz)) = (l.output(1), l.output(2)) else {
        return unsupported("DynamicQuantizeLinear without its scale outputs");
    };
    if x.ty != Ty::F32 || ys.ty != Ty::F32 || yz.ty != Ty::U8 || y.ty != Ty::U8 {
        return unsupported("DynamicQuantizeLinear on other than f32 -> u8");
    }
    let n = x.numel() as i64;
    let mut k = Kernel::new("dynq_range", vec![1]);
    let px = param(&mut k, "x", &x, Access::Read);
    let pscale = param(&mut k, "scale", &ys, Access::Write);
    let pzp = param(&mut k, "zero_point", &yz, Access::Write);
    let (mx, mn) = (k.var("mx", Ty::F32, true), k.var("mn", Ty::F32, true));
    let i = k.var("i", Ty::I64, false);
    let v = k.var("v", Ty::F32, false);
    let (range, scale) = (k.var("range", Ty::F32, false), k.var("sc", Ty::F32, false));
    // Both start at 0 so the range always contains zero; NaN is skipped
    // (ordered comparisons), as f32::max / min do.
    k.body.push(Stmt::Decl(mx, f32(0.0)));
    k.body.push(Stmt::Decl(mn, f32(0.0)));
    k.body.push(Stmt::Loop {
        var: i,
        extent: idx(n),
        kind: smelt_kernel::LoopKind::Serial,
        body: vec![
            Stmt::Let(v, load(px, var(i))),
            Stmt::Set(
                mx,
                select(
                    cmp(smelt_kernel::CmpOp::Gt, var(v), var(mx)),
                    var(v),
                    var(mx),
                ),
            ),
            Stmt::Set(
                mn,
                select(
                    cmp(smelt_kernel::CmpOp::Lt, var(v), var(mn)),
                    var(v),
                    var(mn),
                ),
            ),
        ],
    });
    k.body.push(Stmt::Let(
        range,
        select(
            cmp(smelt_kernel::CmpOp::Eq, var(mx), var(mn)),
            f32(1.0),
            sub(var(mx), var(mn)),
        ),
    ));
    k.body.push(Stmt::Let(scale, div(var(range), f32(255.0))));
    k.body.push(Stmt::Store {
        buf: pscale,
        index: idx(0),
        value: var(scale),
    });
    let zp = un(
        UnOp::Round,
        bin(
            BinOp::Max,
            bin(
                BinOp::Min,
                sub(f32(0.0), div(var(mn), var(scale))),
                f32(255.0),
            ),
            f32(0.0),
        ),
    );
    k.body.push(Stmt::Store {
        buf: pzp,
        index: idx(0),
        value: cast(Ty::U8, zp),
    });
    l.kernel(k, &[&x, &ys, &yz])?;

    let mut k = Kernel::new("dynq", domain(&y.dims));
    let idxs: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let px = param(&mut k, "x", &x, Access::Read);
    let pscale = param(&mut k, "scale", &ys, Access::Read);
    let pzp = param(&mut k, "zero_point", &yz, Access::Read);
    let py = param(&mut k, "y", &y, Access::Write);
    let q = add(
        un(
            UnOp::Round,
            div(load(px, flat(&idxs, &x.dims)), load(pscale, idx(0))),
        ),
        cast(Ty::F32, load(pzp, idx(0))),
    );
    let q = bin(BinOp::Max, bin(BinOp::Min, q, f32(255.0)), f32(0.0));
    k.body.push(Stmt::Store {
        buf: py,
        index: flat(&idxs, &y.dims),
        value: cast(Ty::U8, q),
    });
    l.kernel(k, &[&x, &ys, &yz, &y])
}
