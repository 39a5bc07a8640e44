//! NegativeLogLikelihoodLoss from gathers with run-time indices and the
//! vector unit: loss[n, d] = -x[n, t[n, d], d] · w[t[n, d]], zero where
//! t = ignore_index, then reduced (none, sum, or mean over the weights of
//! the targets that count).

use super::Error;
use super::elementwise::{self, int_dt};
use super::lower::{Lw, TRef, unsup};
use super::movement::{self, gather_elements_into};
use super::rows::{self, row_sum};
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{Dt, VOp, VSrc};

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let t = lw.input(n, 1)?;
    if !matches!(x.gdt, DType::F32 | DType::F16 | DType::BF16) {
        return Err(unsup(n.op, format!("dtype {}", x.gdt)));
    }
    if !matches!(t.gdt, DType::I32 | DType::I64) || int_dt(t.gdt).is_none() {
        return Err(unsup(n.op, format!("targets of dtype {}", t.gdt)));
    }
    if !lw.p.hw.tile.vector.dtypes.iter().any(|d| d == "i64") {
        return Err(unsup(n.op, "the vector unit has no i64 for the targets"));
    }
    if x.shape.len() < 2 {
        return Err(Error::Graph(format!(
            "{}: input rank below 2",
            n.describe()
        )));
    }
    let (nb, c) = (x.shape[0], x.shape[1]);
    let d: usize = x.shape[2..].iter().product();
    if n.op == Op::SoftmaxCrossEntropyLoss {
        // log_softmax over the classes with them last ([N, D, C]), then
        // the NLL of that as N·D samples of C classes and no spatial axis.
        let x3 = TRef {
            shape: vec![nb, c, d],
            ..x.clone()
        };
        let xt = rows::axes_last(lw, &x3, &[1])?;
        let lp = lw.temp_like("sce.logprob", &x, &[nb, d, c]);
        rows::log_softmax_rows(lw, &xt, &lp, (nb * d) as u64, c as u64)?;
        if n.outputs.get(1).copied().flatten().is_some() {
            let y = lw.output(n, 1)?;
            let y3 = TRef {
                shape: vec![nb, c, d],
                ..y
            };
            lw.p.phase();
            movement::copy_nd(
                &mut lw.p,
                &lp,
                &movement::View {
                    off: 0,
                    strides: vec![(d * c) as i64, 1, c as i64],
                },
                &y3,
                &movement::plain(&y3),
                &[nb, c, d],
            )?;
        }
        let lp = TRef {
            shape: vec![nb * d, c, 1],
            ..lp
        };
        return nll(lw, n, lp, t);
    }
    let x3 = TRef {
        shape: vec![nb, c, d],
        ..x.clone()
    };
    nll(lw, n, x3, t)
}

/// The loss of x3 ([N, C, D]) for targets t (N·D of them).
fn nll(lw: &mut Lw, n: &Node, x3: TRef, t: TRef) -> Result<(), Error> {
    let (nb, d) = (x3.shape[0], x3.shape[2]);
    let m = nb * d;
    let reduction = match n.attr("reduction") {
        Some(Attr::String(s)) => s.clone(),
        _ => "mean".to_string(),
    };
    let ignore = match n.attr("ignore_index") {
        Some(Attr::Int(i)) => Some(*i),
        _ => None,
    };
    // An ignored target would index outside x: gather with it replaced by
    // 0 and zero the product with a keep mask.
    let tf = TRef {
        shape: vec![nb, 1, d],
        ..t.clone()
    };
    let (ti, keep) = match ignore {
        Some(ii) => {
            if (ii as f32) as i64 != ii {
                return Err(unsup(n.op, "ignore_index beyond an f32 immediate"));
            }
            let ii = ii as f32;
            let tc = lw.temp_like("nll.target", &tf, &tf.shape);
            elementwise::run_in(
                lw,
                &tc,
                vec![(tf.clone(), None)],
                true,
                Dt::I64,
                &move |b, dst, s, tmp| {
                    vec![
                        b.v(VOp::Eq, tmp, first(s), VSrc::Imm(ii)),
                        b.v(VOp::Eq, tmp, tmp, VSrc::Imm(0.0)),
                        b.v(VOp::Sel, dst, tmp, s[0]),
                    ]
                },
            )?;
            let keep = lw.temp_f32("nll.keep", &[m]);
            let tflat = TRef {
                shape: vec![m],
                ..t.clone()
            };
            elementwise::run_in(
                lw,
                &keep,
                vec![(tflat, None)],
                true,
                Dt::I64,
                &move |b, dst, s, _| {
                    vec![
                        b.v(VOp::Eq, dst, first(s), VSrc::Imm(ii)),
                        b.v(VOp::Eq, dst, dst, VSrc::Imm(0.0)),
                    ]
                },
            )?;
            (tc, Some(keep))
        }
        None => (tf, None),
    };
    // g[n, 0, d] = x[n, t[n, d], d].
    let g = lw.temp_like("nll.picked", &x3, &[nb, 1, d]);
    gather_elements_into(lw, n.op, &x3, &ti, &g, 1)?;
    let g = TRef {
        shape: vec![m],
        ..g
    };
    // The weight of each target (1 without weights), times the keep mask.
    let mut factors = Vec::new();
    if Lw::has_input(n, 2) {
        let w = lw.input(n, 2)?;
        let wg = lw.temp_like("nll.weight", &w, &[m]);
        let tflat = TRef {
            shape: vec![m],
            ..ti.clone()
        };
        gather_elements_into(lw, n.op, &w, &tflat, &wg, 0)?;
        factors.push(wg);
    }
    let has_keep = keep.is_some();
    factors.extend(keep);
    let wsum = if reduction == "mean" {
        let wt = lw.temp_f32("nll.wt", &[m]);
        match factors.as_slice() {
            [] => None,
            [f] => Some(f.clone()),
            [a, b] => {
                mul_into(lw, &wt, a, b)?;
                Some(wt)
            }
            _ => None,
        }
    } else {
        None
    };
    let out = lw.output(n, 0)?;
    let loss = if reduction == "none" {
        TRef {
            shape: vec![m],
            ..out.clone()
        }
    } else {
        lw.temp_f32("nll.loss", &[m])
    };
    let mut ins = vec![(g, None)];
    ins.extend(factors.iter().map(|f| (f.clone(), None)));
    elementwise::run(lw, &loss, ins, true, &move |b, dst, s, _| {
        let mut v = vec![b.v(VOp::Neg, dst, first(s), VSrc::None)];
        let (weights, keep) = if has_keep {
            (&s[1..s.len() - 1], s.last())
        } else {
            (&s[1..], None)
        };
        for x in weights {
            v.push(b.v(VOp::Mul, dst, dst, *x));
        }
        // A select, so an ignored sample gives +0 as the reference does.
        if let Some(VSrc::Full(k)) = keep {
            v.push(b.v(VOp::Sel, dst, *k, VSrc::Full(dst)));
        }
        v
    })?;
    match reduction.as_str() {
        "none" => Ok(()),
        "sum" => row_sum(lw, &loss, &out, 1, m as u64),
        "mean" => {
            let total = lw.temp_f32("nll.total", &[1]);
            row_sum(lw, &loss, &total, 1, m as u64)?;
            match wsum {
                // Unweighted, nothing ignored: the mean over all targets.
                None => {
                    elementwise::run(lw, &out, vec![(total, None)], true, &move |b, dst, s, _| {
                        vec![b.v(VOp::Mul, dst, first(s), VSrc::Imm(1.0 / m as f32))]
                    })
                }
                Some(w) => {
                    let wtot = lw.temp_f32("nll.wtotal", &[1]);
                    row_sum(lw, &w, &wtot, 1, m as u64)?;
                    elementwise::run(
                        lw,
                        &out,
                        vec![(total, None), (wtot, None)],
                        true,
                        &|b, dst, s, _| vec![b.v(VOp::Div, dst, first(s), s[1])],
                    )
                }
            }
        }
        r => Err(unsup(n.op, format!("reduction {r}"))),
    }
}

fn mul_into(lw: &mut Lw, y: &TRef, a: &TRef, b: &TRef) -> Result<(), Error> {
    elementwise::run(
        lw,
        y,
        vec![(a.clone(), None), (b.clone(), None)],
        true,
        &|bl, dst, s, _| vec![bl.v(VOp::Mul, dst, first(s), s[1])],
    )
}

fn first(s: &[VSrc]) -> u32 {
    match s.first() {
        Some(VSrc::Full(a)) => *a,
        _ => 0,
    }
}
