//! ONNX Attention (opset 23+): scores (Q.K^T, scale, softcap, masks) into
//! a temporary, a row softmax whose probabilities are rounded to Q's dtype
//! (as the reference does), and probabilities . V written straight in the
//! output's layout. The two products are GEMM steps wherever the target
//! has GEMMs of the dtype (tensor cores on GPUs, f16/bf16 included),
//! grouped-query heads stacked as rows of one matrix per key head; 3-D
//! operands are addressed in place where their heads are one stride apart
//! and copied to [b, h, s, d] otherwise. Without GEMMs (16-bit on the cpu)
//! the products are loop kernels. A KV cache is appended into
//! `present_key`/`present_value`.

use super::linalg::{gemm_dtype, invalid};
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_ir::DType;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};
use smelt_runtime::cpu::Gemm;

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "Attention" => attention(l),
        "RotaryEmbedding" => rotary(l),
        _ => return None,
    })
}

/// How a [b, h, s, d] tensor is laid out: 4-D as is, or 3-D [b, s, h*d].
#[derive(Clone, Copy)]
struct Layout {
    b: u64,
    h: u64,
    s: u64,
    d: u64,
    three_d: bool,
}

impl Layout {
    fn of(t: &T, heads: u64) -> LResult<Layout> {
        match *t.dims.as_slice() {
            [b, h, s, d] => Ok(Layout {
                b,
                h,
                s,
                d,
                three_d: false,
            }),
            [b, s, hd] if heads > 0 && hd % heads == 0 => Ok(Layout {
                b,
                h: heads,
                s,
                d: hd / heads,
                three_d: true,
            }),
            _ => Err(LowerError::Invalid(format!(
                "Attention operand of shape {:?} does not split into heads",
                t.dims
            ))),
        }
    }

    /// (batch stride, row stride) of this tensor as a batch of `b * h /
    /// rep` matrices of `rep * s` rows each: the `rep` query heads that
    /// share one key head stacked into one matrix (grouped-query
    /// attention; `rep` 1 otherwise). None where those rows are not one
    /// stride apart.
    fn grouped(&self, rep: u64) -> Option<(i64, i64)> {
        let (s, d, rep) = (self.s as i64, self.d as i64, rep as i64);
        if !self.three_d || self.s == 1 {
            // Heads (and, with one row each, batches) are contiguous.
            Some((rep * s * d, d))
        } else if self.b == 1 && rep == 1 {
            Some((d, self.h as i64 * d))
        } else {
            None
        }
    }

    fn at(&self, b: Expr, h: Expr, s: Expr, d: Expr) -> Expr {
        if self.three_d {
            flat(&[b, s, h, d], &[self.b, self.s, self.h, self.d])
        } else {
            flat(&[b, h, s, d], &[self.b, self.h, self.s, self.d])
        }
    }
}

/// `present = concat(past, new)` along the sequence, in [b, h, s, d].
fn append(l: &mut Lower, past: Option<&T>, new: &T, nl: Layout, present: &T) -> LResult<()> {
    let (b, h, d) = (nl.b, nl.h, nl.d);
    let ps = past.map_or(0, |p| p.dims.get(2).copied().unwrap_or(0));
    if let Some(p) = past
        && p.dims != [b, h, ps, d]
    {
        return Err(LowerError::Invalid("Attention past cache shape".into()));
    }
    let total = ps + nl.s;
    if present.dims != [b, h, total, d] {
        return Err(LowerError::Invalid("Attention present cache shape".into()));
    }
    let mut k = Kernel::new("kv_append", vec![b, h, total, d]);
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let pp = past.map(|p| param(&mut k, "past", p, Access::Read));
    let np = param(&mut k, "new", new, Access::Read);
    let op = param(&mut k, "present", present, Access::Write);
    let at = flat(&ix, &present.dims);
    let from_new = load(
        np,
        nl.at(
            ix[0].clone(),
            ix[1].clone(),
            sub(ix[2].clone(), idx(ps as i64)),
            ix[3].clone(),
        ),
    );
    match pp {
        Some(pp) => k.body.push(Stmt::If {
            cond: cmp(CmpOp::Lt, ix[2].clone(), idx(ps as i64)),
            then: vec![Stmt::Store {
                buf: op,
                index: at.clone(),
                value: load(pp, flat(&ix, &[b, h, ps, d])),
            }],
            els: vec![Stmt::Store {
                buf: op,
                index: at,
                value: from_new,
            }],
        }),
        None => k.body.push(Stmt::Store {
            buf: op,
            index: at,
            value: from_new,
        }),
    }
    let mut args: Vec<&T> = past.into_iter().collect();
    args.push(new);
    args.push(present);
    l.kernel(k, &args)
}

fn attention(l: &mut Lower) -> LResult<()> {
    let q = l.input(0)?;
    let kin = l.input(1)?;
    let vin = l.input(2)?;
    let mask = l.opt_input(3);
    let past_k = l.opt_input(4);
    let past_v = l.opt_input(5);
    let nonpad = l.opt_input(6);
    let y = l.out(0)?;
    if !q.ty.is_float() || kin.ty != q.ty || vin.ty != q.ty || y.ty != q.ty {
        return unsupported(format!("Attention of {}", q.dtype));
    }
    let ctx = l.ctx();
    let (nq, nkv) = if q.rank() == 3 {
        (
            ctx.int("q_num_heads", 0).map_err(invalid)?.max(0) as u64,
            ctx.int("kv_num_heads", 0).map_err(invalid)?.max(0) as u64,
        )
    } else {
        (0, 0)
    };
    if q.rank() != kin.rank() || q.rank() != vin.rank() {
        return Err(LowerError::Invalid("Attention Q, K, V ranks differ".into()));
    }
    let ql = Layout::of(&q, nq)?;
    let kl = Layout::of(&kin, nkv)?;
    let vl = Layout::of(&vin, nkv)?;
    let (b, hq, sq, d) = (ql.b, ql.h, ql.s, ql.d);
    let past_len = past_k
        .as_ref()
        .map_or(0, |p| p.dims.get(2).copied().unwrap_or(0));
    let (hkv, skv, dv) = (kl.h, kl.s + past_len, vl.d);
    if kl.b != b || vl.b != b || kl.d != d || vl.h != hkv || vl.s != kl.s || hkv == 0 {
        return Err(LowerError::Invalid("Attention shapes do not fit".into()));
    }
    if hq % hkv != 0 {
        return Err(LowerError::Invalid("Attention heads do not group".into()));
    }
    if past_k.is_some() != past_v.is_some() {
        return unsupported("Attention with only one of past_key/past_value");
    }
    let scale = match ctx.attr("scale") {
        Some(_) => f64::from(ctx.float("scale", 0.0).map_err(invalid)?),
        None => 1.0 / (d as f64).sqrt(),
    };
    let softcap = f64::from(ctx.float("softcap", 0.0).map_err(invalid)?);
    let causal = ctx.int("is_causal", 0).map_err(invalid)? != 0;
    let mode = ctx.int("qk_matmul_output_mode", 0).map_err(invalid)?;
    let left = ctx.int("left_window_size", -1).map_err(invalid)?;
    let right = ctx.int("right_window_size", -1).map_err(invalid)?;
    if !(0..=3).contains(&mode) {
        return unsupported(format!("qk_matmul_output_mode {mode}"));
    }
    // Keys and values as [b, hkv, skv, d]: the present outputs when there
    // is a cache (or they are wanted), else the inputs themselves.
    let cache = |l: &mut Lower,
                 out: usize,
                 past: Option<&T>,
                 new: &T,
                 nl: Layout,
                 dd: u64|
     -> LResult<(T, Layout)> {
        let want = l.output(out);
        let full = Layout {
            b,
            h: hkv,
            s: skv,
            d: dd,
            three_d: false,
        };
        match (past, want) {
            (None, None) => Ok((new.clone(), nl)),
            (past, Some(p)) => {
                append(l, past, new, nl, &p)?;
                Ok((p, full))
            }
            (Some(past), None) => {
                let p = l.temp(new.dtype, &[b, hkv, skv, dd])?;
                append(l, Some(past), new, nl, &p)?;
                Ok((p, full))
            }
        }
    };
    let (kt, kl) = cache(l, 1, past_k.as_ref(), &kin, kl, d)?;
    let (vt, vl) = cache(l, 2, past_v.as_ref(), &vin, vl, dv)?;
    let rep = hq / hkv;
    let cty = q.ty.compute();
    let cdt = if cty == Ty::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let biased = l.temp(cdt, &[b, hq, sq, skv])?;
    let qk_out = l.output(3);

    // Both products are batched GEMMs where every operand is addressable
    // by (batch, row) strides, batches over key heads and rows over the
    // query heads of a group: f32/f64 everywhere, f16/bf16 where the
    // target's GEMMs take them (tensor cores), with f32 scores.
    let yl = Layout {
        b,
        h: hq,
        s: sq,
        d: vl.d,
        three_d: q.rank() == 3,
    };
    let low = match q.ty {
        Ty::BF16 if l.low_precision_gemm() => Some("bf16"),
        Ty::F16 if l.low_precision_gemm() => Some("f16"),
        _ => None,
    };
    let dt = gemm_dtype(&q).or(low);
    // Operands whose heads are not one stride apart (3-D with several
    // batches and rows, grouped 3-D queries) are copied to [b, h, s, d]
    // first and the output back: two copies buy the GEMM path.
    let split = |t: &Layout, rep: u64| dt.is_some() && t.grouped(rep).is_none();
    let (q, ql) = if split(&ql, rep) {
        heads(l, &q, ql)?
    } else {
        (q, ql)
    };
    let (kt, kl) = if split(&kl, 1) {
        heads(l, &kt, kl)?
    } else {
        (kt, kl)
    };
    let (vt, vl) = if split(&vl, 1) {
        heads(l, &vt, vl)?
    } else {
        (vt, vl)
    };
    let y_heads = if split(&yl, rep) {
        Some(l.temp(y.dtype, &[b, hq, sq, dv])?)
    } else {
        None
    };
    let y_gemm = if y_heads.is_some() {
        Layout {
            three_d: false,
            ..yl
        }
    } else {
        yl
    };
    let strides = [
        ql.grouped(rep),
        kl.grouped(1),
        vl.grouped(1),
        y_gemm.grouped(rep),
    ];
    let use_gemm = dt.is_some() && strides.iter().all(Option::is_some);
    let [qs, ks, vs, ys] = strides.map(|s| s.unwrap_or((0, 0)));
    // The scores and probabilities, [b, hq, sq, skv] dense, in the same
    // grouping.
    let ss = [(rep * sq * skv) as i64, skv as i64, 1];
    if let (true, Some(dt)) = (use_gemm, dt) {
        // biased = scale * Q . K^T; masks are added in place below.
        l.gemm(Gemm {
            dtype: dt.into(),
            batch: b * hkv,
            m: rep * sq,
            n: skv,
            k: d,
            a: q.buf,
            b: kt.buf,
            c: biased.buf,
            a_strides: [qs.0, qs.1, 1],
            b_strides: [ks.0, 1, ks.1],
            c_strides: ss,
            alpha: scale,
            beta: 0.0,
            c_dtype: low.map(|_| "f32".to_string()),
        });
    }

    // --- scores ---
    let mut k = Kernel::new("attn_scores", vec![b, hq, sq, skv]);
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let (bi, h, i, j) = (ix[0].clone(), ix[1].clone(), ix[2].clone(), ix[3].clone());
    let (qp, kp) = if use_gemm {
        (0, 0)
    } else {
        (
            param(&mut k, "q", &q, Access::Read),
            param(&mut k, "k", &kt, Access::Read),
        )
    };
    let mp = mask
        .as_ref()
        .map(|m| param(&mut k, "mask", m, Access::Read));
    let np = nonpad
        .as_ref()
        .map(|t| param(&mut k, "nonpad", t, Access::Read));
    let bp = param(&mut k, "biased", &biased, Access::Write);
    let op = match (&qk_out, mode) {
        (Some(t), 0..=2) => Some(param(&mut k, "qk", t, Access::Write)),
        _ => None,
    };
    let at = flat(&ix, &[b, hq, sq, skv]);
    let mut s = if use_gemm {
        load(bp, at.clone())
    } else {
        let kh = k.var("kh", Ty::I64, false);
        k.body.push(Stmt::Let(kh, div(h.clone(), idx(rep as i64))));
        let acc = k.var("acc", cty, true);
        let c = k.var("c", Ty::I64, false);
        k.body.push(Stmt::Decl(acc, lit(0.0, cty)));
        k.body.push(Stmt::Loop {
            var: c,
            extent: idx(d as i64),
            kind: LoopKind::Serial,
            body: vec![Stmt::Set(
                acc,
                add(
                    var(acc),
                    mul(
                        load(qp, ql.at(bi.clone(), h.clone(), i.clone(), var(c))),
                        load(kp, kl.at(bi.clone(), var(kh), j.clone(), var(c))),
                    ),
                ),
            )],
        });
        mul(var(acc), lit(scale, cty))
    };
    if softcap > 0.0 {
        s = mul(lit(softcap, cty), un(UnOp::Tanh, div(s, lit(softcap, cty))));
    }
    let sv = k.var("s", cty, false);
    k.body.push(Stmt::Let(sv, s));
    let ninf = lit(f64::NEG_INFINITY, cty);
    let mut bias = lit(0.0, cty);
    if let (Some(mp), Some(m)) = (mp, &mask) {
        if m.rank() == 0 || m.rank() > 4 {
            return Err(LowerError::Invalid("attn_mask must have rank 1..4".into()));
        }
        let mut ms = vec![1u64; 4 - m.rank()];
        ms.extend(&m.dims);
        let want = [b, hq, sq];
        for a in 0..3 {
            if ms[a] != 1 && ms[a] != want[a] {
                return Err(LowerError::Invalid(
                    "attn_mask does not broadcast to the scores".into(),
                ));
            }
        }
        let mlast = ms[3];
        let sub4: Vec<Expr> = [bi.clone(), h.clone(), i.clone()]
            .into_iter()
            .enumerate()
            .map(|(a, e)| if ms[a] == 1 { idx(0) } else { e })
            .chain([bin(BinOp::Min, j.clone(), idx(mlast as i64 - 1).max_zero())])
            .collect();
        let mv = load(mp, flat(&sub4, &ms));
        let mval = match m.ty {
            Ty::Bool => select(mv, lit(0.0, cty), ninf.clone()),
            t if t.is_float() => cast(cty, mv),
            _ => return unsupported("attn_mask of an integer dtype"),
        };
        bias = if mlast < skv {
            select(
                cmp(CmpOp::Lt, j.clone(), idx(mlast as i64)),
                mval,
                ninf.clone(),
            )
        } else {
            mval
        };
    }
    // Query position: past length, or the non-padded key count minus the
    // query length when only nonpad_kv_seqlen is given.
    let np_len = np.map(|p| load(p, bi.clone()));
    let pos = match (&np_len, past_len) {
        (Some(n), 0) => add(i.clone(), sub(n.clone(), idx(sq as i64))),
        _ => add(i.clone(), idx(past_len as i64)),
    };
    let pv = k.var("pos", Ty::I64, false);
    k.body.push(Stmt::Let(pv, pos));
    let mut masked: Option<Expr> = None;
    let mut or = |c: Expr| {
        masked = Some(match masked.take() {
            None => c,
            Some(a) => bin(BinOp::Or, a, c),
        })
    };
    if causal {
        or(cmp(CmpOp::Gt, j.clone(), var(pv)));
    }
    if left >= 0 {
        or(cmp(CmpOp::Gt, sub(var(pv), j.clone()), idx(left)));
    }
    if right >= 0 {
        or(cmp(CmpOp::Gt, sub(j.clone(), var(pv)), idx(right)));
    }
    if let Some(n) = np_len {
        or(cmp(CmpOp::Ge, j.clone(), n));
    }
    if let Some(mk) = masked {
        bias = select(mk, ninf.clone(), bias);
    }
    let bx = add(var(sv), bias);
    k.body.push(Stmt::Store {
        buf: bp,
        index: at.clone(),
        value: bx.clone(),
    });
    if let Some(op) = op {
        k.body.push(Stmt::Store {
            buf: op,
            index: at,
            value: if mode == 2 { bx } else { var(sv) },
        });
    }
    let mut args: Vec<&T> = if use_gemm { vec![] } else { vec![&q, &kt] };
    if let Some(m) = &mask {
        args.push(m);
    }
    if let Some(n) = &nonpad {
        if n.ty != Ty::I64 || n.numel() < b {
            return unsupported("nonpad_kv_seqlen must be int64 [batch]");
        }
        args.push(n);
    }
    args.push(&biased);
    if let (Some(t), 0..=2) = (&qk_out, mode) {
        args.push(t);
    }
    l.kernel(k, &args)?;

    // --- softmax over each row, probabilities rounded to Q's dtype ---
    let probs = l.temp(q.dtype, &[b, hq, sq, skv])?;
    let mut k = Kernel::new("attn_softmax", vec![b * hq * sq]);
    let r = k.index(0);
    let xp = param(&mut k, "biased", &biased, Access::Read);
    let pp = param(&mut k, "probs", &probs, Access::Write);
    let qo = match (&qk_out, mode) {
        (Some(t), 3) => Some(param(&mut k, "qk", t, Access::Write)),
        _ => None,
    };
    let base = mul(r, idx(skv as i64));
    let jv = k.var("j", Ty::I64, false);
    let at = add(base, var(jv));
    let mx = k.var("mx", cty, true);
    let sum = k.var("sum", cty, true);
    let inv = k.var("inv", cty, false);
    let x = load(xp, at.clone());
    k.body.push(Stmt::Decl(mx, ninf.clone()));
    k.body.push(Stmt::Loop {
        var: jv,
        extent: idx(skv as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(mx, bin(BinOp::Max, var(mx), x.clone()))],
    });
    k.body.push(Stmt::Decl(sum, lit(0.0, cty)));
    let live = cmp(CmpOp::Gt, var(mx), ninf.clone());
    let e = un(UnOp::Exp, sub(x, var(mx)));
    k.body.push(Stmt::Loop {
        var: jv,
        extent: idx(skv as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(sum, add(var(sum), e.clone()))],
    });
    k.body.push(Stmt::Let(inv, div(lit(1.0, cty), var(sum))));
    let p = select(live, mul(e, var(inv)), lit(0.0, cty));
    let mut body = vec![Stmt::Store {
        buf: pp,
        index: at.clone(),
        value: p.clone(),
    }];
    if let Some(qo) = qo {
        body.push(Stmt::Store {
            buf: qo,
            index: at,
            value: p,
        });
    }
    k.body.push(Stmt::Loop {
        var: jv,
        extent: idx(skv as i64),
        kind: LoopKind::Serial,
        body,
    });
    let mut args: Vec<&T> = vec![&biased, &probs];
    if let (Some(t), 3) = (&qk_out, mode) {
        args.push(t);
    }
    l.kernel(k, &args)?;

    // --- Y = probs . V in the output's layout ---
    let want = if yl.three_d {
        vec![b, sq, hq * dv]
    } else {
        vec![b, hq, sq, dv]
    };
    if y.dims != want {
        return Err(LowerError::Invalid("Attention output shape".into()));
    }
    if use_gemm {
        l.gemm(Gemm {
            dtype: dt.unwrap_or("f32").into(),
            batch: b * hkv,
            m: rep * sq,
            n: dv,
            k: skv,
            a: probs.buf,
            b: vt.buf,
            c: y_heads.as_ref().map_or(y.buf, |t| t.buf),
            a_strides: ss,
            b_strides: [vs.0, vs.1, 1],
            c_strides: [ys.0, ys.1, 1],
            alpha: 1.0,
            beta: 0.0,
            c_dtype: None,
        });
        if let Some(t) = &y_heads {
            unheads(l, t, &y, yl)?;
        }
        return Ok(());
    }
    // Domain in the output's memory order so the inner loop is contiguous.
    let dom = if yl.three_d {
        vec![b, sq, hq, dv]
    } else {
        vec![b, hq, sq, dv]
    };
    let mut k = Kernel::new("attn_pv", dom.clone());
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let (bi, h, i, c) = if yl.three_d {
        (ix[0].clone(), ix[2].clone(), ix[1].clone(), ix[3].clone())
    } else {
        (ix[0].clone(), ix[1].clone(), ix[2].clone(), ix[3].clone())
    };
    let pp = param(&mut k, "probs", &probs, Access::Read);
    let vp = param(&mut k, "v", &vt, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let kh = k.var("kh", Ty::I64, false);
    k.body.push(Stmt::Let(kh, div(h.clone(), idx(rep as i64))));
    let acc = k.var("acc", cty, true);
    let jv = k.var("j", Ty::I64, false);
    let prow = flat(&[bi.clone(), h.clone(), i.clone()], &[b, hq, sq]);
    k.body.push(Stmt::Decl(acc, lit(0.0, cty)));
    k.body.push(Stmt::Loop {
        var: jv,
        extent: idx(skv as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(
            acc,
            add(
                var(acc),
                mul(
                    load(pp, add(mul(prow, idx(skv as i64)), var(jv))),
                    load(vp, vl.at(bi.clone(), var(kh), var(jv), c.clone())),
                ),
            ),
        )],
    });
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&ix, &dom),
        value: var(acc),
    });
    l.kernel(k, &[&probs, &vt, &y])
}

/// `t` (laid out as `tl`) copied into a dense [b, h, s, d] temporary.
fn heads(l: &mut Lower, t: &T, tl: Layout) -> LResult<(T, Layout)> {
    let dims = [tl.b, tl.h, tl.s, tl.d];
    let out = l.temp(t.dtype, &dims)?;
    let mut k = Kernel::new("attn_heads", dims.to_vec());
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let src = param(&mut k, "src", t, Access::Read);
    let dst = param(&mut k, "dst", &out, Access::Write);
    k.body.push(Stmt::Store {
        buf: dst,
        index: flat(&ix, &dims),
        value: load(
            src,
            tl.at(ix[0].clone(), ix[1].clone(), ix[2].clone(), ix[3].clone()),
        ),
    });
    l.kernel(k, &[t, &out])?;
    Ok((
        out,
        Layout {
            three_d: false,
            ..tl
        },
    ))
}

/// The dense [b, h, s, d] `from` written into `to` (laid out as `tl`),
/// in `to`'s memory order.
fn unheads(l: &mut Lower, from: &T, to: &T, tl: Layout) -> LResult<()> {
    let dims = [tl.b, tl.h, tl.s, tl.d];
    let dom = if tl.three_d {
        vec![tl.b, tl.s, tl.h, tl.d]
    } else {
        dims.to_vec()
    };
    let mut k = Kernel::new("attn_unheads", dom.clone());
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let (bi, h, i, c) = if tl.three_d {
        (ix[0].clone(), ix[2].clone(), ix[1].clone(), ix[3].clone())
    } else {
        (ix[0].clone(), ix[1].clone(), ix[2].clone(), ix[3].clone())
    };
    let src = param(&mut k, "src", from, Access::Read);
    let dst = param(&mut k, "dst", to, Access::Write);
    k.body.push(Stmt::Store {
        buf: dst,
        index: flat(&ix, &dom),
        value: load(src, flat(&[bi, h, i, c], &dims)),
    });
    l.kernel(k, &[from, to])
}

trait MaxZero {
    fn max_zero(self) -> Self;
}

impl MaxZero for Expr {
    /// Literal indices below zero clamp to zero (an empty mask dim).
    fn max_zero(self) -> Self {
        match self {
            Expr::Int(v, t) if v < 0 => Expr::Int(0, t),
            e => e,
        }
    }
}

/// RotaryEmbedding: each output element reads itself and its rotation
/// partner (the other half, or the neighbour when interleaved).
fn rotary(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let cos = l.input(1)?;
    let sin = l.input(2)?;
    let pos = l.opt_input(3);
    let y = l.out(0)?;
    if !x.ty.is_float() || cos.ty != x.ty || sin.ty != x.ty || y.ty != x.ty {
        return unsupported(format!("RotaryEmbedding of {}", x.dtype));
    }
    let ctx = l.ctx();
    // The domain: [b, h, s, d] for 4-D input, [b, s, h, d] for 3-D; both
    // are the input's own memory order.
    let (dom, s_axis) = match *x.dims.as_slice() {
        [b, h, s, d] => (vec![b, h, s, d], 2),
        [b, s, hd] => {
            let nh = ctx.int("num_heads", 0).map_err(invalid)?;
            if nh < 1 || hd % nh as u64 != 0 {
                return Err(LowerError::Invalid(
                    "3-D RotaryEmbedding needs num_heads dividing the hidden size".into(),
                ));
            }
            (vec![b, s, nh as u64, hd / nh as u64], 1)
        }
        _ => return Err(LowerError::Invalid("RotaryEmbedding rank".into())),
    };
    let (b, sq, d) = (dom[0], dom[s_axis], dom[3]);
    let rd = match ctx.int("rotary_embedding_dim", 0).map_err(invalid)? {
        0 => d,
        r if r > 0 && (r as u64) <= d && r % 2 == 0 => r as u64,
        _ => return Err(LowerError::Invalid("rotary_embedding_dim".into())),
    };
    let half = rd / 2;
    let interleaved = ctx.int("interleaved", 0).map_err(invalid)? != 0;
    if cos.dims.last() != Some(&half) || sin.dims != cos.dims || half == 0 {
        return Err(LowerError::Invalid("cos/sin cache shape".into()));
    }
    let rows = cos.numel() / half;
    if let Some(p) = &pos
        && (p.ty != Ty::I64 || p.numel() != b * sq)
    {
        return unsupported("position_ids must be int64 [batch, seq]");
    }
    if pos.is_none() && rows < b * sq {
        return Err(LowerError::Invalid("cos/sin caches are too small".into()));
    }
    let mut k = Kernel::new("rotary", dom.clone());
    let ix: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let xp = param(&mut k, "x", &x, Access::Read);
    let cp = param(&mut k, "cos", &cos, Access::Read);
    let sp = param(&mut k, "sin", &sin, Access::Read);
    let pp = pos.as_ref().map(|t| param(&mut k, "pos", t, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    let bs = add(mul(ix[0].clone(), idx(sq as i64)), ix[s_axis].clone());
    let row = match pp {
        // Out-of-range ids are clamped so that the load stays in bounds.
        Some(pp) => bin(
            BinOp::Max,
            idx(0),
            bin(BinOp::Min, load(pp, bs), idx(rows as i64 - 1)),
        ),
        None => bs,
    };
    let dd = ix[3].clone();
    let rotated = cmp(CmpOp::Lt, dd.clone(), idx(rd as i64));
    let (first, partner, i) = if interleaved {
        let even = cmp(CmpOp::Eq, rem(dd.clone(), idx(2)), idx(0));
        (
            even.clone(),
            select(even, add(dd.clone(), idx(1)), sub(dd.clone(), idx(1))),
            div(dd.clone(), idx(2)),
        )
    } else {
        let lo = cmp(CmpOp::Lt, dd.clone(), idx(half as i64));
        (
            lo.clone(),
            select(
                lo.clone(),
                add(dd.clone(), idx(half as i64)),
                sub(dd.clone(), idx(half as i64)),
            ),
            select(lo, dd.clone(), sub(dd.clone(), idx(half as i64))),
        )
    };
    let pv = k.var("partner", Ty::I64, false);
    let iv = k.var("i", Ty::I64, false);
    k.body
        .push(Stmt::Let(pv, select(rotated.clone(), partner, dd.clone())));
    k.body
        .push(Stmt::Let(iv, select(rotated.clone(), i, idx(0))));
    let at = flat(&ix, &dom);
    let base = sub(at.clone(), dd.clone());
    let xv = load(xp, at.clone());
    let xo = load(xp, add(base, var(pv)));
    let ci = add(mul(row, idx(half as i64)), var(iv));
    let (c, s) = (load(cp, ci.clone()), load(sp, ci));
    let rot = select(
        first,
        sub(mul(c.clone(), xv.clone()), mul(s.clone(), xo.clone())),
        add(mul(s, xo), mul(c, xv.clone())),
    );
    k.body.push(Stmt::Store {
        buf: yp,
        index: at,
        value: select(rotated, rot, xv),
    });
    let mut args = vec![&x, &cos, &sin];
    if let Some(p) = &pos {
        args.push(p);
    }
    args.push(&y);
    l.kernel(k, &args)
}
