//! LinearAttention (opset 27): a recurrent key-value state per KV head,
//! S [d_k, d_v], updated every time step and read by the query:
//!   gated:  S *= exp(decay_t)            (per head or per key row)
//!   delta:  v_t = beta_t * (v_t - S^T k_t)
//!   always: S += k_t v_t^T ;  out_t = scale * q_t^T S
//! Query heads share KV heads in groups (GQA). `chunk_size` is a tuning
//! hint that does not change the result.

use super::fdata;
use crate::interp::Tensor;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::{Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    match op {
        Op::LinearAttention => Some(OpImpl {
            infer: infer_la,
            kernel: k_la,
        }),
        _ => None,
    }
}

fn heads(ctx: &Ctx) -> OpResult<(usize, usize)> {
    let q = ctx.int("q_num_heads", 0)?;
    let kv = ctx.int("kv_num_heads", 0)?;
    if q <= 0 || kv <= 0 || q % kv != 0 {
        op_bail!("q_num_heads ({q}) must be a positive multiple of kv_num_heads ({kv})");
    }
    Ok((q as usize, kv as usize))
}

fn infer_la(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (hq, hkv) = heads(ctx)?;
    let q = input(ins, 0)?.ty;
    let k = input(ins, 1)?.ty;
    let v = input(ins, 2)?.ty;
    let st = |d: &Dim, h: usize| match d {
        Dim::Static(n) => Dim::Static(n / h as u64),
        _ => Dim::Unknown,
    };
    let (qd, kd, vd) = (q.shape.dims(), k.shape.dims(), v.shape.dims());
    let b = qd.map_or(Dim::Unknown, |d| d[0].clone());
    let t = qd.map_or(Dim::Unknown, |d| d.get(1).cloned().unwrap_or(Dim::Unknown));
    let dk = kd
        .and_then(|d| d.get(2))
        .map_or(Dim::Unknown, |d| st(d, hkv));
    let dv = vd
        .and_then(|d| d.get(2))
        .map_or(Dim::Unknown, |d| st(d, hkv));
    let out_last = match &dv {
        Dim::Static(n) => Dim::Static(n * hq as u64),
        _ => Dim::Unknown,
    };
    let state_dtype = match ins.get(3) {
        Some(Some(p)) => p.ty.dtype,
        _ => q.dtype,
    };
    Ok(vec![
        TensorType::new(q.dtype, Shape(Some(vec![b.clone(), t, out_last]))),
        TensorType::new(
            state_dtype,
            Shape(Some(vec![b, Dim::Static(hkv as u64), dk, dv])),
        ),
    ])
}

fn k_la(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (hq, hkv) = heads(ctx)?;
    let q = operand(ins, 0)?;
    let k = operand(ins, 1)?;
    let v = operand(ins, 2)?;
    let opt = |i: usize| ins.get(i).copied().flatten();
    if q.rank() != 3 || k.rank() != 3 || v.rank() != 3 {
        op_bail!("query, key and value must be rank 3 (B, T, H*D)");
    }
    let (b, t) = (q.shape[0], q.shape[1]);
    if k.shape[..2] != [b, t] || v.shape[..2] != [b, t] {
        op_bail!("query, key and value disagree on batch or time");
    }
    if q.shape[2] % hq != 0 || k.shape[2] % hkv != 0 || v.shape[2] % hkv != 0 {
        op_bail!("hidden sizes are not divisible by the head counts");
    }
    let dk = q.shape[2] / hq;
    let dv = v.shape[2] / hkv;
    if k.shape[2] / hkv != dk {
        op_bail!(
            "key head size {} differs from query head size {dk}",
            k.shape[2] / hkv
        );
    }
    let rule = ctx.string("update_rule", "gated_delta")?;
    let (gating, delta) = match rule.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => op_bail!("unknown update_rule `{r}`"),
    };
    let decay = opt(4);
    let beta = opt(5);
    if gating != decay.is_some() || delta != beta.is_some() {
        op_bail!("update_rule `{rule}` does not match the decay/beta inputs given");
    }
    let (qv, kv, vv) = (fdata(q, "query")?, fdata(k, "key")?, fdata(v, "value")?);
    // decay: last dim H_kv (one gate per head) or H_kv*d_k (per key row).
    let (dvals, per_row) = match decay {
        Some(d) => {
            if d.rank() != 3 || d.shape[..2] != [b, t] {
                op_bail!("decay must be [B, T, *], found {:?}", d.shape);
            }
            let per_row = match d.shape[2] {
                x if x == hkv => false,
                x if x == hkv * dk => true,
                x => op_bail!("decay last dim {x} must be {hkv} or {}", hkv * dk),
            };
            (fdata(d, "decay")?, per_row)
        }
        None => (&[][..], false),
    };
    let (bvals, beta_w) = match beta {
        Some(x) => {
            if x.rank() != 3 || x.shape[..2] != [b, t] || (x.shape[2] != hkv && x.shape[2] != 1) {
                op_bail!(
                    "beta must be [B, T, {hkv}] or [B, T, 1], found {:?}",
                    x.shape
                );
            }
            (fdata(x, "beta")?, x.shape[2])
        }
        None => (&[][..], 1),
    };
    let ssize = dk * dv;
    let (mut state, state_dtype) = match opt(3) {
        Some(p) => {
            if p.shape != [b, hkv, dk, dv] {
                op_bail!(
                    "past_state shape {:?} should be {:?}",
                    p.shape,
                    [b, hkv, dk, dv]
                );
            }
            (fdata(p, "past_state")?.to_vec(), p.dtype)
        }
        None => (vec![0.0; b * hkv * ssize], q.dtype),
    };
    let scale = ctx.float("scale", 0.0)? as f64;
    // Scale 0 means the default 1/sqrt(d_k).
    let scale = if scale == 0.0 {
        1.0 / (dk as f64).sqrt()
    } else {
        scale
    };
    let group = hq / hkv;
    let mut out = vec![0.0; b * t * hq * dv];
    for bi in 0..b {
        for ti in 0..t {
            let row = bi * t + ti;
            for h in 0..hkv {
                let s = &mut state[(bi * hkv + h) * ssize..(bi * hkv + h + 1) * ssize];
                let kt = &kv[row * hkv * dk + h * dk..row * hkv * dk + (h + 1) * dk];
                let mut vt: Vec<f64> =
                    vv[row * hkv * dv + h * dv..row * hkv * dv + (h + 1) * dv].to_vec();
                if gating {
                    for i in 0..dk {
                        let g = if per_row {
                            dvals[row * hkv * dk + h * dk + i]
                        } else {
                            dvals[row * hkv + h]
                        };
                        let e = g.exp();
                        for m in 0..dv {
                            s[i * dv + m] *= e;
                        }
                    }
                }
                if delta {
                    let bt = bvals[row * beta_w + if beta_w == 1 { 0 } else { h }];
                    for m in 0..dv {
                        let got: f64 = (0..dk).map(|i| s[i * dv + m] * kt[i]).sum();
                        vt[m] = bt * (vt[m] - got);
                    }
                }
                for i in 0..dk {
                    for m in 0..dv {
                        s[i * dv + m] += kt[i] * vt[m];
                    }
                }
                for g in 0..group {
                    let hqi = h * group + g;
                    let qt = &qv[row * hq * dk + hqi * dk..row * hq * dk + (hqi + 1) * dk];
                    for m in 0..dv {
                        let r: f64 = (0..dk).map(|i| qt[i] * s[i * dv + m]).sum();
                        out[row * hq * dv + hqi * dv + m] = scale * r;
                    }
                }
            }
        }
    }
    Ok(vec![
        Tensor::from_f64(q.dtype, vec![b, t, hq * dv], out),
        Tensor::from_f64(state_dtype, vec![b, hkv, dk, dv], state),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn linear_rule_accumulates_outer_products() {
        // One head, d_k = d_v = 1, scale 1: S_t = sum k*v, out_t = q_t * S_t.
        // k = [1, 2], v = [3, 4], q = [1, 1] -> S = 3, 11 -> out = [3, 11].
        let q = f32t(&[1, 2, 1], &[1., 1.]);
        let k = f32t(&[1, 2, 1], &[1., 2.]);
        let v = f32t(&[1, 2, 1], &[3., 4.]);
        let attrs = [
            ("q_num_heads", Attr::Int(1)),
            ("kv_num_heads", Attr::Int(1)),
            ("scale", Attr::Float(1.0)),
            ("update_rule", Attr::String("linear".into())),
        ];
        let y = run(Op::LinearAttention, &attrs, &[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_close(&y[0], &[3., 11.]);
        assert_close(&y[1], &[11.]);
        // The default gated_delta rule needs decay and beta.
        assert!(
            run(
                Op::LinearAttention,
                &attrs[..2],
                &[Some(&q), Some(&k), Some(&v)]
            )
            .is_err()
        );
    }
}
