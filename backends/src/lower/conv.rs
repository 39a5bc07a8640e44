//! Convolutions: Conv, smelt's FusedConv and ConvTranspose.
//!
//! f32/f64 Conv is im2col into a temporary plus one batched GEMM (1x1
//! stride-1 unpadded convolutions skip im2col: the input already is the
//! column matrix). Depthwise convolutions, other dtypes and group/batch
//! combinations one GEMM cannot address run a direct kernel: one output
//! element per domain point, serial loops over input channels and taps.

use super::linalg::{activation, epilogue, gemm_dtype, invalid, view};
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty};
use smelt_runtime::cpu::Gemm;

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "Conv" => conv_node(l, false),
        "FusedConv" => conv_node(l, true),
        "ConvTranspose" => conv_transpose(l),
        "CausalConvWithState" => causal_conv(l),
        _ => return None,
    })
}

/// Window attributes of a sliding-window op, defaulted.
pub(super) struct Window {
    pub kernel: Vec<u64>,
    pub strides: Vec<u64>,
    pub dilations: Vec<u64>,
    /// Begin pads after auto_pad.
    pub pads: Vec<i64>,
}

impl Window {
    /// `ins` are the input's spatial dims, `kernel` the kernel dims when
    /// they come from weights.
    pub fn read(l: &Lower, ins: &[u64], kernel: Option<&[u64]>) -> LResult<Window> {
        let ctx = l.ctx();
        let sp = ins.len();
        let kernel: Vec<u64> = match (ctx.ints("kernel_shape").map_err(invalid)?, kernel) {
            (Some(k), _) => k.iter().map(|&x| x.max(1) as u64).collect(),
            (None, Some(k)) => k.to_vec(),
            (None, None) => return Err(LowerError::Invalid("kernel_shape is required".into())),
        };
        let per_dim = |name: &str| -> LResult<Vec<u64>> {
            match ctx.ints(name).map_err(invalid)? {
                None => Ok(vec![1; sp]),
                Some(v) if v.len() == sp && v.iter().all(|&x| x >= 1) => {
                    Ok(v.iter().map(|&x| x as u64).collect())
                }
                Some(_) => Err(LowerError::Invalid(format!("bad `{name}`"))),
            }
        };
        if kernel.len() != sp {
            return Err(LowerError::Invalid("kernel rank mismatch".into()));
        }
        let strides = per_dim("strides")?;
        let dilations = per_dim("dilations")?;
        let auto_pad = ctx.string("auto_pad", "NOTSET").map_err(invalid)?;
        let explicit = ctx.ints("pads").map_err(invalid)?;
        let mut pads = Vec::with_capacity(sp);
        for i in 0..sp {
            let (n, s) = (ins[i] as i64, strides[i] as i64);
            let span = ((kernel[i] - 1) * dilations[i] + 1) as i64;
            pads.push(match auto_pad.as_str() {
                "SAME_UPPER" | "SAME_LOWER" => {
                    let out = (n + s - 1) / s;
                    let total = ((out - 1) * s + span - n).max(0);
                    if auto_pad == "SAME_UPPER" {
                        total / 2
                    } else {
                        total - total / 2
                    }
                }
                "VALID" => 0,
                _ => match &explicit {
                    Some(p) if p.len() == 2 * sp => p[i],
                    None => 0,
                    Some(_) => return Err(LowerError::Invalid("bad `pads`".into())),
                },
            });
        }
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
        })
    }

    fn pointwise(&self) -> bool {
        self.kernel.iter().all(|&k| k == 1)
            && self.strides.iter().all(|&s| s == 1)
            && self.pads.iter().all(|&p| p == 0)
    }
}

/// `lo <= e < hi` as an i1.
pub(super) fn in_range(e: Expr, hi: u64) -> Expr {
    bin(
        BinOp::And,
        cmp(CmpOp::Ge, e.clone(), idx(0)),
        cmp(CmpOp::Lt, e, idx(hi as i64)),
    )
}

/// Where output position `out` (spatial indices) reads the input for kernel
/// tap `taps`: one `Let` per spatial dim (`out * stride + tap * dilation -
/// pad`), the condition that all lie inside `ins`, and the index variables.
pub(super) fn tap_input(
    k: &mut Kernel,
    win: &Window,
    out: &[Expr],
    taps: &[Expr],
    ins: &[u64],
) -> (Vec<Stmt>, Expr, Vec<Expr>) {
    let mut pre = Vec::new();
    let mut cond: Option<Expr> = None;
    let mut pos = Vec::new();
    for j in 0..taps.len() {
        let iv = k.var(format!("ii{j}"), Ty::I64, false);
        pre.push(Stmt::Let(
            iv,
            add(
                add(
                    mul(out[j].clone(), idx(win.strides[j] as i64)),
                    mul(taps[j].clone(), idx(win.dilations[j] as i64)),
                ),
                idx(-win.pads[j]),
            ),
        ));
        let ok = in_range(var(iv), ins[j]);
        cond = Some(match cond {
            None => ok,
            Some(a) => bin(BinOp::And, a, ok),
        });
        pos.push(var(iv));
    }
    (pre, cond.unwrap_or(Expr::Int(1, Ty::Bool)), pos)
}

fn conv_node(l: &mut Lower, fused: bool) -> LResult<()> {
    let x = l.input(0)?;
    let w = l.input(1)?;
    let bias = l.opt_input(2);
    let res = if fused { l.opt_input(3) } else { None };
    let y = l.out(0)?;
    let act = if fused {
        l.ctx().string("activation", "").map_err(invalid)?
    } else {
        String::new()
    };
    activation(&act, Ty::F32, f32(0.0))?;
    if x.rank() < 3 || w.rank() != x.rank() || y.rank() != x.rank() {
        return Err(LowerError::Invalid(
            "Conv needs X, W of equal rank >= 3".into(),
        ));
    }
    if x.ty != w.ty || y.ty != x.ty || !x.ty.is_float() {
        return unsupported(format!("Conv of {}", x.dtype));
    }
    let group = l.ctx().int("group", 1).map_err(invalid)?.max(1) as u64;
    let (n, c, m, cg) = (x.dims[0], x.dims[1], w.dims[0], w.dims[1]);
    if c != cg * group || m % group != 0 || y.dims[1] != m || y.dims[0] != n {
        return Err(LowerError::Invalid(format!(
            "Conv channels do not fit group {group}: X {:?}, W {:?}",
            x.dims, w.dims
        )));
    }
    let win = Window::read(l, &x.dims[2..], Some(&w.dims[2..]))?;
    if win.kernel != w.dims[2..] {
        return Err(LowerError::Invalid("kernel_shape differs from W".into()));
    }
    if let Some(b) = &bias
        && b.numel() != m
    {
        return Err(LowerError::Invalid("Conv bias size".into()));
    }
    let mg = m / group;
    let kp: u64 = win.kernel.iter().product();
    let p: u64 = y.dims[2..].iter().product();
    let depthwise = cg == 1 && mg == 1 && group > 1;
    let gemm_ok = gemm_dtype(&y).is_some() && (group == 1 || n == 1) && !depthwise;
    if !gemm_ok {
        return direct_conv(
            l,
            &x,
            &w,
            bias.as_ref(),
            &act,
            res.as_ref(),
            &y,
            group,
            &win,
        );
    }
    let dt = gemm_dtype(&y).unwrap_or("f32");
    let col = if win.pointwise() {
        view(&x, vec![n, c, p])
    } else {
        let col = l.temp(x.dtype, &[n, c * kp, p])?;
        im2col(l, &x, &col, &win, &y.dims[2..])?;
        col
    };
    let rows = cg * kp;
    let (batch, a_s, b_s, c_s) = if group == 1 {
        (n, 0, (c * kp * p) as i64, (m * p) as i64)
    } else {
        (
            group,
            (mg * rows) as i64,
            (rows * p) as i64,
            (mg * p) as i64,
        )
    };
    l.gemm(Gemm {
        dtype: dt.into(),
        batch,
        m: mg,
        n: p,
        k: rows,
        a: w.buf,
        b: col.buf,
        c: y.buf,
        a_strides: [a_s, rows as i64, 1],
        b_strides: [b_s, p as i64, 1],
        c_strides: [c_s, p as i64, 1],
        alpha: 1.0,
        beta: 0.0,
        c_dtype: None,
    });
    // The epilogue runs over (N, M, P) so that its inner loop is long.
    let flat_res = res.as_ref().is_none_or(|r| r.dims == y.dims);
    if flat_res {
        let yv = view(&y, vec![n, m, p]);
        let rv = res.as_ref().map(|r| view(r, vec![n, m, p]));
        epilogue(
            l,
            &yv,
            bias.as_ref().map(|b| (b, Some(1))),
            &act,
            rv.as_ref(),
        )
    } else {
        epilogue(
            l,
            &y,
            bias.as_ref().map(|b| (b, Some(1))),
            &act,
            res.as_ref(),
        )
    }
}

/// `col[n, c, k..., o...] = x[n, c, o*s + k*d - pad]` (0 in the padding);
/// the column matrix is (C*K) x P per image.
fn im2col(l: &mut Lower, x: &T, col: &T, win: &Window, outs: &[u64]) -> LResult<()> {
    let sp = outs.len();
    let mut dom = vec![x.dims[0], x.dims[1]];
    dom.extend(&win.kernel);
    dom.extend(outs);
    let mut k = Kernel::new("im2col", dom.clone());
    let xp = param(&mut k, "x", x, Access::Read);
    let cp = param(&mut k, "col", col, Access::Write);
    let ins = &x.dims[2..];
    let mut inb: Option<Expr> = None;
    let mut sub = vec![k.index(0), k.index(1)];
    for (j, &nj) in ins.iter().enumerate() {
        let kv = k.index(2 + j);
        let ov = k.index(2 + sp + j);
        let ii = add(
            add(
                mul(ov, idx(win.strides[j] as i64)),
                mul(kv, idx(win.dilations[j] as i64)),
            ),
            idx(-win.pads[j]),
        );
        let iv = k.var(format!("ii{j}"), Ty::I64, false);
        k.body.push(Stmt::Let(iv, ii));
        let ok = in_range(var(iv), nj);
        inb = Some(match inb {
            None => ok,
            Some(a) => bin(BinOp::And, a, ok),
        });
        // Clamped so that the (discarded) load stays in bounds.
        sub.push(bin(
            BinOp::Max,
            idx(0),
            bin(BinOp::Min, var(iv), idx(nj as i64 - 1)),
        ));
    }
    let all: Vec<Expr> = (0..dom.len()).map(|d| k.index(d)).collect();
    let v = load(xp, flat(&sub, &x.dims));
    let value = match inb {
        Some(c) => select(c, v, lit(0.0, x.ty)),
        None => v,
    };
    k.body.push(Stmt::Store {
        buf: cp,
        index: flat(&all, &dom),
        value,
    });
    l.kernel(k, &[x, col])
}

/// Nested serial loops over the kernel taps, innermost last; `body` gets
/// the tap variables.
pub(super) fn tap_loops(
    k: &mut Kernel,
    kernel: &[u64],
    body: impl FnOnce(&mut Kernel, &[Expr]) -> Vec<Stmt>,
) -> Vec<Stmt> {
    let vars: Vec<_> = (0..kernel.len())
        .map(|j| k.var(format!("k{j}"), Ty::I64, false))
        .collect();
    let taps: Vec<Expr> = vars.iter().map(|&v| var(v)).collect();
    let mut stmts = body(k, &taps);
    for (j, v) in vars.iter().enumerate().rev() {
        stmts = vec![Stmt::Loop {
            var: *v,
            extent: idx(kernel[j] as i64),
            kind: LoopKind::Serial,
            body: stmts,
        }];
    }
    stmts
}

#[allow(clippy::too_many_arguments)]
fn direct_conv(
    l: &mut Lower,
    x: &T,
    w: &T,
    bias: Option<&T>,
    act: &str,
    res: Option<&T>,
    y: &T,
    group: u64,
    win: &Window,
) -> LResult<()> {
    let sp = x.rank() - 2;
    let (m, cg) = (w.dims[0], w.dims[1]);
    let mg = m / group;
    let ins = x.dims[2..].to_vec();
    let ty = y.ty.compute();
    let mut k = Kernel::new("conv", y.dims.clone());
    let all: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let xp = param(&mut k, "x", x, Access::Read);
    let wp = param(&mut k, "w", w, Access::Read);
    let bp = bias.map(|b| param(&mut k, "b", b, Access::Read));
    let yp = param(&mut k, "y", y, Access::Write);
    let acc = k.var("acc", ty, true);
    let ic = k.var("ic", Ty::I64, false);
    let (nv, mv) = (all[0].clone(), all[1].clone());
    // First input channel of this output channel's group.
    let c0 = mul(div(mv.clone(), idx(mg as i64)), idx(cg as i64));
    let cin = add(c0, var(ic));
    let inner = tap_loops(&mut k, &win.kernel, |k, taps| {
        let (mut pre, cond, pos) = tap_input(k, win, &all[2..2 + sp], taps, &ins[..sp]);
        let mut sub = vec![nv.clone(), cin.clone()];
        sub.extend(pos);
        let mut wsub = vec![mv.clone(), var(ic)];
        wsub.extend(taps.iter().cloned());
        let prod = mul(
            load(xp, flat(&sub, &x.dims)),
            load(wp, flat(&wsub, &w.dims)),
        );
        pre.push(Stmt::If {
            cond,
            then: vec![Stmt::Set(acc, add(var(acc), prod))],
            els: vec![],
        });
        pre
    });
    let init = match bp {
        Some(b) => load(b, mv.clone()),
        None => lit(0.0, ty),
    };
    k.body.push(Stmt::Decl(acc, init));
    k.body.push(Stmt::Loop {
        var: ic,
        extent: idx(cg as i64),
        kind: LoopKind::Serial,
        body: inner,
    });
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&all, &y.dims),
        value: var(acc),
    });
    let mut args = vec![x, w];
    if let Some(b) = bias {
        args.push(b);
    }
    args.push(y);
    l.kernel(k, &args)?;
    epilogue(l, y, None, act, res)
}

fn conv_transpose(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let w = l.input(1)?;
    let bias = l.opt_input(2);
    let y = l.out(0)?;
    if x.rank() < 3 || w.rank() != x.rank() || y.rank() != x.rank() {
        return Err(LowerError::Invalid("ConvTranspose ranks".into()));
    }
    if x.ty != w.ty || y.ty != x.ty || !x.ty.is_float() {
        return unsupported(format!("ConvTranspose of {}", x.dtype));
    }
    let ctx = l.ctx();
    let sp = x.rank() - 2;
    let group = ctx.int("group", 1).map_err(invalid)?.max(1) as u64;
    let (c, mg) = (x.dims[1], w.dims[1]);
    let m = mg * group;
    if w.dims[0] != c || c % group != 0 || y.dims[1] != m {
        return Err(LowerError::Invalid("ConvTranspose channels".into()));
    }
    let cg = c / group;
    // Geometry: the window reads kernel/strides/dilations; begin pads
    // follow the ConvTranspose rules (output_shape, SAME_*, explicit).
    let mut win = Window::read(l, &x.dims[2..], Some(&w.dims[2..]))?;
    let auto_pad = ctx.string("auto_pad", "NOTSET").map_err(invalid)?;
    let out_pad = ctx
        .ints("output_padding")
        .map_err(invalid)?
        .unwrap_or(vec![0; sp]);
    let out_shape = ctx.ints("output_shape").map_err(invalid)?;
    let explicit = ctx.ints("pads").map_err(invalid)?;
    if out_pad.len() != sp {
        return Err(LowerError::Invalid("bad output_padding".into()));
    }
    let same = matches!(auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
    for i in 0..sp {
        let s = win.strides[i] as i64;
        let nin = x.dims[2 + i] as i64;
        let span = ((win.kernel[i] - 1) * win.dilations[i] + 1) as i64;
        let full = s * (nin - 1) + out_pad[i] + span;
        let target = match &out_shape {
            Some(o) if o.len() >= sp => Some(o[o.len() - sp + i]),
            Some(_) => return Err(LowerError::Invalid("bad output_shape".into())),
            None if same => Some(nin * s),
            None => None,
        };
        win.pads[i] = match target {
            Some(t) => {
                let total = full - t;
                if auto_pad == "SAME_UPPER" {
                    total.div_euclid(2)
                } else {
                    total - total.div_euclid(2)
                }
            }
            None => match &explicit {
                Some(p) if p.len() == 2 * sp => p[i],
                _ => 0,
            },
        };
    }
    let ins = x.dims[2..].to_vec();
    let ty = y.ty.compute();
    let mut k = Kernel::new("convtranspose", y.dims.clone());
    let all: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let xp = param(&mut k, "x", &x, Access::Read);
    let wp = param(&mut k, "w", &w, Access::Read);
    let bp = bias.as_ref().map(|b| param(&mut k, "b", b, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    let acc = k.var("acc", ty, true);
    let ic = k.var("ic", Ty::I64, false);
    let (nv, mv) = (all[0].clone(), all[1].clone());
    let g = div(mv.clone(), idx(mg as i64));
    let cin = add(mul(g, idx(cg as i64)), var(ic));
    let ocl = rem(mv.clone(), idx(mg as i64));
    let inner = tap_loops(&mut k, &win.kernel, |k, taps| {
        let mut sub = vec![nv.clone(), cin.clone()];
        let mut cond: Option<Expr> = None;
        let mut pre = Vec::new();
        for j in 0..sp {
            // Output o receives input i where i*s + k*d - pad = o.
            let t = k.var(format!("t{j}"), Ty::I64, false);
            pre.push(Stmt::Let(
                t,
                sub_(
                    add(all[2 + j].clone(), idx(win.pads[j])),
                    mul(taps[j].clone(), idx(win.dilations[j] as i64)),
                ),
            ));
            let s = win.strides[j] as i64;
            let iv = k.var(format!("ii{j}"), Ty::I64, false);
            pre.push(Stmt::Let(iv, div(var(t), idx(s))));
            let mut ok = bin(
                BinOp::And,
                cmp(CmpOp::Ge, var(t), idx(0)),
                cmp(CmpOp::Lt, var(iv), idx(ins[j] as i64)),
            );
            if s != 1 {
                ok = bin(BinOp::And, ok, cmp(CmpOp::Eq, rem(var(t), idx(s)), idx(0)));
            }
            cond = Some(match cond {
                None => ok,
                Some(a) => bin(BinOp::And, a, ok),
            });
            sub.push(var(iv));
        }
        let mut wsub = vec![cin.clone(), ocl.clone()];
        wsub.extend(taps.iter().cloned());
        let prod = mul(
            load(xp, flat(&sub, &x.dims)),
            load(wp, flat(&wsub, &w.dims)),
        );
        pre.push(Stmt::If {
            cond: cond.unwrap_or(Expr::Int(1, Ty::Bool)),
            then: vec![Stmt::Set(acc, add(var(acc), prod))],
            els: vec![],
        });
        pre
    });
    let init = match bp {
        Some(b) => load(b, mv.clone()),
        None => lit(0.0, ty),
    };
    k.body.push(Stmt::Decl(acc, init));
    k.body.push(Stmt::Loop {
        var: ic,
        extent: idx(cg as i64),
        kind: LoopKind::Serial,
        body: inner,
    });
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&all, &y.dims),
        value: var(acc),
    });
    let mut args = vec![&x, &w];
    if let Some(b) = &bias {
        args.push(b);
    }
    args.push(&y);
    l.kernel(k, &args)
}

fn sub_(a: Expr, b: Expr) -> Expr {
    smelt_kernel::ir::build::sub(a, b)
}

/// CausalConvWithState: a depthwise causal conv over `past_state ++ x`
/// along the sequence, plus the new state (the last k-1 padded steps).
fn causal_conv(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let w = l.input(1)?;
    let bias = l.opt_input(2);
    let past = l.opt_input(3);
    let y = l.out(0)?;
    let state = l.output(1);
    if x.rank() != 3 || w.rank() != 3 || !x.ty.is_float() || w.ty != x.ty || y.ty != x.ty {
        return unsupported("CausalConvWithState shapes or dtype");
    }
    let (b, c, len) = (x.dims[0], x.dims[1], x.dims[2]);
    let kw = w.dims[2];
    if w.dims[0] != c || w.dims[1] != 1 || kw == 0 || y.dims != x.dims {
        return Err(LowerError::Invalid(
            "CausalConvWithState weight shape".into(),
        ));
    }
    let silu = match l
        .ctx()
        .string("activation", "none")
        .map_err(invalid)?
        .as_str()
    {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(LowerError::Invalid(format!("unknown activation `{a}`"))),
    };
    if let Some(bt) = &bias
        && bt.numel() != c
    {
        return Err(LowerError::Invalid("CausalConvWithState bias size".into()));
    }
    let kp = kw - 1;
    if let Some(p) = &past
        && p.dims != [b, c, kp]
    {
        return Err(LowerError::Invalid("past_state shape".into()));
    }
    let past = past.filter(|_| kp > 0);
    let ty = x.ty.compute();
    // Step `p` of the padded sequence (past then x) of row `row`, into `dst`.
    let padded =
        |xp: usize, pp: Option<usize>, row: &Expr, p: Expr, dst: smelt_kernel::Var| -> Vec<Stmt> {
            let from_x = Stmt::Set(
                dst,
                load(
                    xp,
                    add(
                        mul(row.clone(), idx(len as i64)),
                        sub_(p.clone(), idx(kp as i64)),
                    ),
                ),
            );
            let from_past = match pp {
                Some(pp) => Stmt::Set(
                    dst,
                    load(pp, add(mul(row.clone(), idx(kp as i64)), p.clone())),
                ),
                None => Stmt::Set(dst, lit(0.0, ty)),
            };
            vec![Stmt::If {
                cond: cmp(CmpOp::Lt, p, idx(kp as i64)),
                then: vec![from_past],
                els: vec![from_x],
            }]
        };
    let mut k = Kernel::new("causal_conv", vec![b * c, len]);
    let (row, t) = (k.index(0), k.index(1));
    let xp = param(&mut k, "x", &x, Access::Read);
    let wp = param(&mut k, "w", &w, Access::Read);
    let bp = bias.as_ref().map(|t| param(&mut k, "b", t, Access::Read));
    let pp = past
        .as_ref()
        .map(|t| param(&mut k, "past", t, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    let ch = k.var("ch", Ty::I64, false);
    k.body.push(Stmt::Let(ch, rem(row.clone(), idx(c as i64))));
    let acc = k.var("acc", ty, true);
    let v = k.var("v", ty, true);
    let j = k.var("j", Ty::I64, false);
    k.body.push(Stmt::Decl(
        acc,
        match bp {
            Some(bp) => load(bp, var(ch)),
            None => lit(0.0, ty),
        },
    ));
    k.body.push(Stmt::Decl(v, lit(0.0, ty)));
    let mut body = padded(xp, pp, &row, add(t.clone(), var(j)), v);
    body.push(Stmt::Set(
        acc,
        add(
            var(acc),
            mul(load(wp, add(mul(var(ch), idx(kw as i64)), var(j))), var(v)),
        ),
    ));
    k.body.push(Stmt::Loop {
        var: j,
        extent: idx(kw as i64),
        kind: LoopKind::Serial,
        body,
    });
    let out = if silu {
        mul(var(acc), activation("Sigmoid", ty, var(acc))?)
    } else {
        var(acc)
    };
    k.body.push(Stmt::Store {
        buf: yp,
        index: add(mul(row, idx(len as i64)), t),
        value: out,
    });
    let mut args = vec![&x, &w];
    if let Some(bt) = &bias {
        args.push(bt);
    }
    if let Some(p) = &past {
        args.push(p);
    }
    args.push(&y);
    l.kernel(k, &args)?;
    if let Some(st) = state
        && kp > 0
    {
        let mut k = Kernel::new("causal_state", vec![b * c, kp]);
        let (row, q) = (k.index(0), k.index(1));
        let xp = param(&mut k, "x", &x, Access::Read);
        let pp = past
            .as_ref()
            .map(|t| param(&mut k, "past", t, Access::Read));
        let sp = param(&mut k, "state", &st, Access::Write);
        let v = k.var("v", ty, true);
        k.body.push(Stmt::Decl(v, lit(0.0, ty)));
        let body = padded(xp, pp, &row, add(q.clone(), idx(len as i64)), v);
        k.body.extend(body);
        k.body.push(Stmt::Store {
            buf: sp,
            index: add(mul(row, idx(kp as i64)), q),
            value: var(v),
        });
        let mut args = vec![&x];
        if let Some(p) = &past {
            args.push(p);
        }
        args.push(&st);
        l.kernel(k, &args)?;
    }
    Ok(())
}
