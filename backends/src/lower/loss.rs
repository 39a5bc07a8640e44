//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (the latter is
//! a LogSoftmax along axis 1, written to its optional log_prob output or a
//! temporary, followed by the same NLL kernel). `none` is one point per
//! sample position; `sum`/`mean` are a single point that loops over all
//! positions (mean divides by the sum of the applied weights).

use super::reduce::{acc_float, bad, serial};
use super::softmax::softmax_kernel;
use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "NegativeLogLikelihoodLoss" => loss(l, false),
        "SoftmaxCrossEntropyLoss" => loss(l, true),
        _ => return None,
    })
}

fn loss(l: &mut Lower, softmax: bool) -> LResult<()> {
    let op = l.op();
    let x = l.input(0)?;
    let target = l.input(1)?;
    let weight = l.opt_input(2);
    let y = l.out(0)?;
    let ctx = l.ctx();
    let red = ctx.string("reduction", "mean").map_err(bad)?;
    let ignore = match ctx.attr("ignore_index") {
        Some(_) => Some(ctx.int("ignore_index", 0).map_err(bad)?),
        None => None,
    };
    let xt = x.ty.compute();
    if !xt.is_float() || !target.ty.is_int() {
        return unsupported(format!("{op} of {} with {} targets", x.dtype, target.dtype));
    }
    if x.rank() < 2 || x.numel() == 0 {
        return unsupported(format!("{op} of shape {:?}", x.dims));
    }
    let (n, c) = (x.dims[0], x.dims[1]);
    let d: u64 = x.dims[2..].iter().product();
    let mut want_t = vec![n];
    want_t.extend(&x.dims[2..]);
    if target.dims != want_t {
        return unsupported(format!(
            "{op}: target shape {:?} for input shape {:?}",
            target.dims, x.dims
        ));
    }
    if let Some(w) = &weight
        && (w.numel() != c || !w.ty.is_float())
    {
        return unsupported(format!("{op}: weight of shape {:?}", w.dims));
    }
    let logp = if softmax {
        let lp = match l.output(1) {
            Some(t) => t,
            None => l.temp(x.dtype, &x.dims)?,
        };
        let k = softmax_kernel("LogSoftmax", &x, &lp, 1)?;
        l.kernel(k, &[&x, &lp])?;
        lp
    } else {
        x.clone()
    };
    let at = acc_float(xt);
    let all = match red.as_str() {
        "none" => false,
        "sum" | "mean" => true,
        r => return unsupported(format!("{op} with reduction `{r}`")),
    };
    let domain = if all { vec![1] } else { vec![n, d] };
    let mut k = Kernel::new(op.to_ascii_lowercase(), domain);
    let lp = param(&mut k, "logp", &logp, Access::Read);
    let tp = param(&mut k, "target", &target, Access::Read);
    let wp = weight
        .as_ref()
        .map(|w| param(&mut k, "weight", w, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    // One sample position (ni, di): its loss and applied weight.
    let position = |k: &mut Kernel, ni: Expr, di: Expr| -> (Vec<Stmt>, Expr, Expr) {
        let t = k.var("t", Ty::I64, false);
        let tc = k.var("tc", Ty::I64, false);
        let w = k.var("w", at, false);
        let mut s = vec![
            Stmt::Let(
                t,
                cast(
                    Ty::I64,
                    load(tp, add(mul(ni.clone(), idx(d as i64)), di.clone())),
                ),
            ),
            // Out-of-range targets are invalid; clamping keeps the read
            // inside the buffer.
            Stmt::Let(
                tc,
                bin(
                    BinOp::Min,
                    bin(BinOp::Max, var(t), idx(0)),
                    idx(c as i64 - 1),
                ),
            ),
        ];
        let wv = match wp {
            Some(p) => cast(at, load(p, var(tc))),
            None => lit(1.0, at),
        };
        let wv = match ignore {
            Some(ii) => select(cmp(CmpOp::Eq, var(t), idx(ii)), lit(0.0, at), wv),
            None => wv,
        };
        s.push(Stmt::Let(w, wv));
        let li = add(
            add(mul(ni, idx((c * d) as i64)), mul(var(tc), idx(d as i64))),
            di,
        );
        let v = mul(un(UnOp::Neg, cast(at, load(lp, li))), var(w));
        // An ignored position contributes 0 even where its (clamped)
        // log-probability is infinite.
        let v = match ignore {
            Some(ii) => select(cmp(CmpOp::Eq, var(t), idx(ii)), lit(0.0, at), v),
            None => v,
        };
        (s, v, var(w))
    };
    let yt = y.ty.compute();
    if all {
        let sum = k.var("sum", at, true);
        let wsum = k.var("wsum", at, true);
        k.body.push(Stmt::Decl(sum, lit(0.0, at)));
        k.body.push(Stmt::Decl(wsum, lit(0.0, at)));
        let ni = k.var("n", Ty::I64, false);
        let di = k.var("d", Ty::I64, false);
        let (mut s, v, w) = position(&mut k, var(ni), var(di));
        s.push(Stmt::Set(sum, add(var(sum), v)));
        s.push(Stmt::Set(wsum, add(var(wsum), w)));
        k.body.push(serial(ni, n, vec![serial(di, d, s)]));
        let r = if red == "mean" {
            div(var(sum), var(wsum))
        } else {
            var(sum)
        };
        k.body.push(Stmt::Store {
            buf: yp,
            index: idx(0),
            value: cast(yt, r),
        });
    } else {
        let (ni, di) = (k.index(0), k.index(1));
        let (mut s, v, _) = position(&mut k, ni.clone(), di.clone());
        s.push(Stmt::Store {
            buf: yp,
            index: add(mul(ni, idx(d as i64)), di),
            value: cast(yt, v),
        });
        k.body.extend(s);
    }
    let mut args: Vec<&T> = vec![&logp, &target];
    if let Some(w) = &weight {
        args.push(w);
    }
    args.push(&y);
    l.kernel(k, &args)
}
