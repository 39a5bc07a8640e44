//! LinearAttention. Column m of a KV head's state S [d_k, d_v] evolves on
//! its own (gating scales rows, the delta rule reads S^T k at column m
//! only, the update adds k v_m, the query reads column m), so one kernel
//! over (batch, KV head, m) walks the time steps serially and keeps its
//! column in f64 scratch, as the reference keeps S in f64.

use super::reduce::{bad, serial};
use super::{LResult, Lower, T, param, unsupported};
use smelt_ir::DType;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "LinearAttention" => Some(linear_attention(l)),
        _ => None,
    }
}

fn ld(buf: usize, i: Expr) -> Expr {
    cast(Ty::F64, load(buf, i))
}

use smelt_kernel::Expr;

fn linear_attention(l: &mut Lower) -> LResult<()> {
    let ctx = l.ctx();
    let hq = ctx.int("q_num_heads", 0).map_err(bad)?;
    let hkv = ctx.int("kv_num_heads", 0).map_err(bad)?;
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 {
        return unsupported("LinearAttention head counts");
    }
    let (hq, hkv) = (hq as u64, hkv as u64);
    let q = l.input(0)?;
    let k = l.input(1)?;
    let v = l.input(2)?;
    let past = l.opt_input(3);
    let decay = l.opt_input(4);
    let beta = l.opt_input(5);
    let out = l.output(0);
    let present = l.output(1);
    for t in [&q, &k, &v]
        .into_iter()
        .chain(&past)
        .chain(&decay)
        .chain(&beta)
    {
        if !t.ty.is_float() || t.rank() != if Some(t) == past.as_ref() { 4 } else { 3 } {
            return unsupported("LinearAttention operand types");
        }
    }
    let (b, t) = (q.dims[0], q.dims[1]);
    if k.dims[..2] != [b, t] || v.dims[..2] != [b, t] {
        return unsupported("LinearAttention batch/time mismatch");
    }
    if q.dims[2] % hq != 0 || k.dims[2] % hkv != 0 || v.dims[2] % hkv != 0 {
        return unsupported("LinearAttention hidden sizes");
    }
    let dk = q.dims[2] / hq;
    let dv = v.dims[2] / hkv;
    if k.dims[2] / hkv != dk || b == 0 || t == 0 || dk == 0 || dv == 0 {
        return unsupported("LinearAttention head sizes");
    }
    let rule = ctx.string("update_rule", "gated_delta").map_err(bad)?;
    let (gating, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => return unsupported(format!("update_rule `{r}`")),
    };
    if gating != decay.is_some() || delta != beta.is_some() {
        return unsupported("update_rule does not match decay/beta");
    }
    let per_row = match &decay {
        Some(d) if d.dims[..2] == [b, t] && d.dims[2] == hkv => false,
        Some(d) if d.dims[..2] == [b, t] && d.dims[2] == hkv * dk => true,
        Some(_) => return unsupported("decay shape"),
        None => false,
    };
    let beta_w = match &beta {
        Some(x) if x.dims[..2] == [b, t] && (x.dims[2] == hkv || x.dims[2] == 1) => x.dims[2],
        Some(_) => return unsupported("beta shape"),
        None => 1,
    };
    if let Some(p) = &past
        && p.dims != [b, hkv, dk, dv]
    {
        return unsupported("past_state shape");
    }
    let scale = ctx.float("scale", 0.0).map_err(bad)? as f64;
    let scale = if scale == 0.0 {
        1.0 / (dk as f64).sqrt()
    } else {
        scale
    };
    let group = hq / hkv;
    let sd = [b, hkv, dk, dv];
    let st = l.temp(DType::F64, &sd)?;

    let mut kn = Kernel::new("linear_attention", vec![b, hkv, dv]);
    let mut args: Vec<T> = Vec::new();
    let mut add_param = |kn: &mut Kernel, n: &str, x: &T, a: Access| {
        args.push(x.clone());
        param(kn, n, x, a)
    };
    let pq = add_param(&mut kn, "q", &q, Access::Read);
    let pk = add_param(&mut kn, "k", &k, Access::Read);
    let pv = add_param(&mut kn, "v", &v, Access::Read);
    let pp = past
        .as_ref()
        .map(|x| add_param(&mut kn, "past", x, Access::Read));
    let pd = decay
        .as_ref()
        .map(|x| add_param(&mut kn, "decay", x, Access::Read));
    let pb = beta
        .as_ref()
        .map(|x| add_param(&mut kn, "beta", x, Access::Read));
    let ps = add_param(&mut kn, "s", &st, Access::Write);
    let po = out
        .as_ref()
        .map(|x| add_param(&mut kn, "out", x, Access::Write));
    let pn = present
        .as_ref()
        .map(|x| add_param(&mut kn, "present", x, Access::Write));
    let (bi, h, m) = (kn.index(0), kn.index(1), kn.index(2));
    let s_at = |i: Expr| flat(&[bi.clone(), h.clone(), i, m.clone()], &sd);

    let i0 = kn.var("i", Ty::I64, false);
    let init = match pp {
        Some(p) => ld(p, s_at(var(i0))),
        None => lit(0.0, Ty::F64),
    };
    kn.body.push(serial(
        i0,
        dk,
        vec![Stmt::Store {
            buf: ps,
            index: s_at(var(i0)),
            value: init,
        }],
    ));

    let ti = kn.var("t", Ty::I64, false);
    let row = add(mul(bi.clone(), idx(t as i64)), var(ti));
    let mut body = Vec::new();
    let k_at = |i: Expr| {
        add(
            mul(row.clone(), idx((hkv * dk) as i64)),
            add(mul(h.clone(), idx(dk as i64)), i),
        )
    };
    if let Some(pd) = pd {
        let i = kn.var("i", Ty::I64, false);
        let di = if per_row {
            k_at(var(i))
        } else {
            add(mul(row.clone(), idx(hkv as i64)), h.clone())
        };
        body.push(serial(
            i,
            dk,
            vec![Stmt::Store {
                buf: ps,
                index: s_at(var(i)),
                value: mul(load(ps, s_at(var(i))), un(UnOp::Exp, ld(pd, di))),
            }],
        ));
    }
    let vm = ld(
        pv,
        add(
            mul(row.clone(), idx((hkv * dv) as i64)),
            add(mul(h.clone(), idx(dv as i64)), m.clone()),
        ),
    );
    let vt = kn.var("vt", Ty::F64, false);
    match pb {
        Some(pb) => {
            let got = kn.var("got", Ty::F64, true);
            let i = kn.var("i", Ty::I64, false);
            body.push(Stmt::Decl(got, lit(0.0, Ty::F64)));
            body.push(serial(
                i,
                dk,
                vec![Stmt::Set(
                    got,
                    add(var(got), mul(load(ps, s_at(var(i))), ld(pk, k_at(var(i))))),
                )],
            ));
            let bidx = if beta_w == 1 {
                row.clone()
            } else {
                add(mul(row.clone(), idx(beta_w as i64)), h.clone())
            };
            body.push(Stmt::Let(vt, mul(ld(pb, bidx), sub(vm, var(got)))));
        }
        None => body.push(Stmt::Let(vt, vm)),
    }
    let i = kn.var("i", Ty::I64, false);
    body.push(serial(
        i,
        dk,
        vec![Stmt::Store {
            buf: ps,
            index: s_at(var(i)),
            value: add(load(ps, s_at(var(i))), mul(ld(pk, k_at(var(i))), var(vt))),
        }],
    ));
    if let Some(po) = po {
        let yt = kn.params[po].ty.compute();
        for g in 0..group {
            let hqi = add(mul(h.clone(), idx(group as i64)), idx(g as i64));
            let acc = kn.var("r", Ty::F64, true);
            let i = kn.var("i", Ty::I64, false);
            let qi = add(
                mul(row.clone(), idx((hq * dk) as i64)),
                add(mul(hqi.clone(), idx(dk as i64)), var(i)),
            );
            body.push(Stmt::Decl(acc, lit(0.0, Ty::F64)));
            body.push(serial(
                i,
                dk,
                vec![Stmt::Set(
                    acc,
                    add(var(acc), mul(ld(pq, qi), load(ps, s_at(var(i))))),
                )],
            ));
            body.push(Stmt::Store {
                buf: po,
                index: add(
                    mul(row.clone(), idx((hq * dv) as i64)),
                    add(mul(hqi, idx(dv as i64)), m.clone()),
                ),
                value: cast(yt, mul(lit(scale, Ty::F64), var(acc))),
            });
        }
    }
    kn.body.push(serial(ti, t, body));
    if let Some(pn) = pn {
        let nt = kn.params[pn].ty.compute();
        let i = kn.var("i", Ty::I64, false);
        kn.body.push(serial(
            i,
            dk,
            vec![Stmt::Store {
                buf: pn,
                index: s_at(var(i)),
                value: cast(nt, load(ps, s_at(var(i)))),
            }],
        ));
    }
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(kn, &refs)
}
