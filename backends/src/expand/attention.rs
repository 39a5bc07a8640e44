//! Attention's positional masking (boolean masks, sliding windows,
//! `nonpad_kv_seqlen`, and the causal triangle when it combines with them)
//! folded into one additive float mask, leaving an Attention with a plain
//! float mask that a target lowers natively. A position is masked when:
//! the boolean mask is false there, j > p (causal), p − j > left,
//! j − p > right, or j ≥ nonpad[b]; p = i + offset, the offset being the
//! past length, or nonpad[b] − S_q for padded keys without a past.

use super::Builder;
use super::steps::{Out, add, concat, int_attr, reshape};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::Attention => Some(attention),
        _ => None,
    }
}

/// Sequence length of Q/K/V given as [B, S, H·D] or [B, H, S, D].
fn seq_len(shape: &[usize]) -> Option<usize> {
    match shape.len() {
        3 => Some(shape[1]),
        4 => Some(shape[2]),
        _ => None,
    }
}

fn attention(b: &mut Builder, n: &Node) -> Out {
    let (Some(q), Some(k), Some(v)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let mask = Builder::input(n, 3);
    let nonpad = Builder::input(n, 6);
    let bool_mask = mask.is_some_and(|m| b.dtype(m) == DType::Bool);
    let (left, right) = (
        int_attr(n, "left_window_size", -1),
        int_attr(n, "right_window_size", -1),
    );
    if !bool_mask && nonpad.is_none() && left < 0 && right < 0 {
        return Ok(None);
    }
    let (Some(qs), Some(ks)) = (b.shape(q), b.shape(k)) else {
        return Ok(None);
    };
    let dt = b.dtype(q);
    let (Some(sq), Some(sk)) = (seq_len(&qs), seq_len(&ks)) else {
        return Ok(None);
    };
    let past_k = Builder::input(n, 4);
    let past = match past_k {
        Some(p) => match b.shape(p).as_deref() {
            Some([_, _, l, _]) => *l,
            _ => return Ok(None),
        },
        None => 0,
    };
    let (bs, skv) = (qs[0], past + sk);
    let causal = int_attr(n, "is_causal", 0) != 0;
    let neg = b.scalar(dt, f64::NEG_INFINITY)?;
    let zero = b.scalar(dt, 0.0)?;

    // The given mask, 4-D, in Q's dtype, widened to all keys.
    let mut total = match mask {
        None => None,
        Some(m) => {
            let Some(ms) = b.shape(m) else {
                return Ok(None);
            };
            if ms.is_empty() || ms.len() > 4 {
                return Ok(None);
            }
            let f = if bool_mask {
                b.op(Op::Where, &[m, zero, neg], &[])?
            } else {
                m
            };
            let mut s4 = vec![1; 4 - ms.len()];
            s4.extend(&ms);
            let f = reshape(b, f, &s4)?;
            let lm = s4[3];
            Some(if lm < skv {
                let mut pad = s4.clone();
                pad[3] = skv - lm;
                let count = pad.iter().product();
                let p = b.const_f(dt, &pad, vec![f64::NEG_INFINITY; count])?;
                concat(b, &[f, p], 3)?
            } else if lm == skv {
                f
            } else {
                return Ok(None);
            })
        }
    };

    // Positional masking.
    let runtime_offset = nonpad.is_some() && past == 0;
    let masked_at = |p: i64, j: i64| {
        (causal && j > p) || (left >= 0 && p - j > left) || (right >= 0 && j - p > right)
    };
    let pos = if !runtime_offset {
        let vals: Vec<f64> = (0..sq * skv)
            .map(|x| {
                let (i, j) = ((x / skv) as i64, (x % skv) as i64);
                if masked_at(i + past as i64, j) {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let any = vals.iter().any(|x| x.is_infinite());
        if any {
            Some(b.const_f(dt, &[1, 1, sq, skv], vals)?)
        } else {
            None
        }
    } else {
        None
    };
    if let Some(p) = pos {
        total = Some(match total {
            Some(t) => add(b, t, p)?,
            None => p,
        });
    }
    if let Some(np) = nonpad {
        if b.shape(np) != Some(vec![bs]) {
            return Ok(None);
        }
        let np = if b.dtype(np) == DType::I64 {
            np
        } else {
            super::steps::cast(b, np, DType::I64)?
        };
        let np4 = reshape(b, np, &[bs, 1, 1, 1])?;
        let j = b.const_i64(&[1, 1, 1, skv], (0..skv as i64).collect())?;
        let mut cond = b.op(Op::GreaterOrEqual, &[j, np4], &[])?;
        if runtime_offset && (causal || left >= 0 || right >= 0) {
            // p = i + nonpad[b] − S_q
            let i = b.const_i64(
                &[1, 1, sq, 1],
                (0..sq as i64).map(|i| i - sq as i64).collect(),
            )?;
            let p = add(b, i, np4)?;
            let d = b.op(Op::Sub, &[p, j], &[])?; // p − j
            let mut parts = Vec::new();
            if causal {
                let z = b.const_i64(&[], vec![0])?;
                parts.push(b.op(Op::Less, &[d, z], &[])?);
            }
            if left >= 0 {
                let l = b.const_i64(&[], vec![left])?;
                parts.push(b.op(Op::Greater, &[d, l], &[])?);
            }
            if right >= 0 {
                let r = b.const_i64(&[], vec![-right])?;
                parts.push(b.op(Op::Less, &[d, r], &[])?);
            }
            for c in parts {
                cond = b.op(Op::Or, &[cond, c], &[])?;
            }
        }
        let m = b.op(Op::Where, &[cond, neg, zero], &[])?;
        total = Some(match total {
            Some(t) => add(b, t, m)?,
            None => m,
        });
    }
    let mut attrs: Vec<(&str, Attr)> = n
        .attrs
        .iter()
        .filter(|(key, _)| {
            !matches!(
                key.as_str(),
                "is_causal" | "left_window_size" | "right_window_size"
            )
        })
        .map(|(key, a)| (key.as_str(), a.clone()))
        .collect();
    attrs.push(("is_causal", Attr::Int(0)));
    let ins: Vec<Option<ValueId>> = vec![
        Some(q),
        Some(k),
        Some(v),
        total,
        past_k,
        Builder::input(n, 5),
    ];
    let outs = b.node(Op::Attention, &ins, &attrs)?;
    let mut res: Vec<Option<ValueId>> =
        (0..n.outputs.len()).map(|i| outs.get(i).copied()).collect();
    // A row with every key masked attends to nothing: its output (and its
    // probabilities) are zeros, where a softmax over -inf alone is NaN.
    if let Some(t) = total {
        let ax = b.const_i64(&[1], vec![3])?;
        let mx = b.op(Op::ReduceMax, &[t, ax], &[("keepdims", Attr::Int(1))])?;
        let empty = b.op(Op::Equal, &[mx, neg], &[])?;
        if let Some(Some(y)) = res.first().copied() {
            res[0] = Some(zero_rows(b, n, y, empty, zero)?);
        }
        if int_attr(n, "qk_matmul_output_mode", 0) == 3
            && let Some(Some(p)) = res.get(3).copied()
        {
            res[3] = Some(b.op(Op::Where, &[empty, zero, p], &[])?);
        }
    }
    Ok(Some(res))
}

/// `y` (Y as [B, H, S, D] or [B, S, H·D]) with the rows where `empty`
/// ([B|1, H|1, S, 1]) holds set to zero.
fn zero_rows(
    b: &mut Builder,
    n: &Node,
    y: ValueId,
    empty: ValueId,
    zero: ValueId,
) -> Result<ValueId, String> {
    let ys = b
        .shape(y)
        .ok_or("Attention output without a static shape")?;
    if ys.len() == 4 {
        return b.op(Op::Where, &[empty, zero, y], &[]);
    }
    let h = int_attr(n, "q_num_heads", 0).max(1) as usize;
    let [bb, s, hd] = ys[..] else {
        return Err(format!("Attention output of shape {ys:?}"));
    };
    if hd % h != 0 {
        return Err(format!("Attention output of shape {ys:?}"));
    }
    // [B|1, S, H|1, 1] against Y as [B, S, H, D].
    let e = super::steps::transpose(b, empty, &[0, 2, 1, 3])?;
    let y4 = reshape(b, y, &[bb, s, h, hd / h])?;
    let z = b.op(Op::Where, &[e, zero, y4], &[])?;
    reshape(b, z, &ys)
}
