//! RNN, GRU and LSTM. Each time step needs every hidden unit of the step
//! before, so the sequence is one kernel per step over (direction, batch,
//! hidden unit); both directions of a bidirectional layer advance in the
//! same kernel. The state lives in f64 scratch `[seq + 1, dirs, batch, H]`
//! (slot s is the state before step s) because the reference keeps it in
//! f64 and rounds only the outputs. GRU without `linear_before_reset`
//! needs the whole reset gate before the candidate, so it takes two
//! kernels per step.

use super::reduce::{bad, serial};
use super::{LResult, Lower, T, param, unsupported};
use smelt_ir::{Attr, DType};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let cell = match l.op() {
        "RNN" => Cell::Rnn,
        "GRU" => Cell::Gru,
        "LSTM" => Cell::Lstm,
        _ => return None,
    };
    Some(recurrent(l, cell))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    fn gates(self) -> u64 {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

fn f(x: f64) -> Expr {
    lit(x, Ty::F64)
}

impl Act {
    /// `x` must be a variable or cheap: it is repeated.
    fn apply(self, x: Expr) -> Expr {
        let pos = |x: &Expr| cmp(CmpOp::Ge, x.clone(), f(0.0));
        match self {
            Act::Relu => bin(BinOp::Max, x, f(0.0)),
            Act::Tanh => un(UnOp::Tanh, x),
            Act::Sigmoid => div(f(1.0), add(f(1.0), un(UnOp::Exp, un(UnOp::Neg, x)))),
            Act::Affine(a, b) => add(mul(f(a), x), f(b)),
            Act::LeakyRelu(a) => select(pos(&x), x.clone(), mul(f(a), x)),
            Act::ThresholdedRelu(a) => select(cmp(CmpOp::Gt, x.clone(), f(a)), x, f(0.0)),
            Act::ScaledTanh(a, b) => mul(f(a), un(UnOp::Tanh, mul(f(b), x))),
            Act::HardSigmoid(a, b) => bin(
                BinOp::Min,
                bin(BinOp::Max, add(mul(f(a), x), f(b)), f(0.0)),
                f(1.0),
            ),
            Act::Elu(a) => select(pos(&x), x.clone(), mul(f(a), sub(un(UnOp::Exp, x), f(1.0)))),
            Act::Softsign => div(x.clone(), add(f(1.0), un(UnOp::Abs, x))),
            Act::Softplus => select(
                cmp(CmpOp::Gt, x.clone(), f(30.0)),
                x.clone(),
                un(UnOp::Log, add(f(1.0), un(UnOp::Exp, x))),
            ),
        }
    }
}

/// The activation list, one set per direction, parsed as the reference
/// does (alphas and betas consumed in order by the functions taking them).
fn activations(l: &Lower, cell: Cell, dirs: usize) -> LResult<Vec<Act>> {
    let per_dir = cell.default_acts().len();
    let ctx = l.ctx();
    let names: Vec<String> = match ctx.attr("activations") {
        None => cell.default_acts().iter().map(|s| s.to_string()).collect(),
        Some(Attr::Strings(v)) => v.clone(),
        Some(Attr::String(s)) => vec![s.clone()],
        Some(_) => return unsupported("activations attribute of a non-string kind"),
    };
    let names: Vec<String> = if names.len() == per_dir && dirs == 2 {
        names.iter().chain(names.iter()).cloned().collect()
    } else {
        names.into_iter().take(per_dir * dirs).collect()
    };
    if names.len() != per_dir * dirs {
        return unsupported("activation count does not match the directions");
    }
    let alphas = ctx
        .floats("activation_alpha")
        .map_err(bad)?
        .unwrap_or_default();
    let betas = ctx
        .floats("activation_beta")
        .map_err(bad)?
        .unwrap_or_default();
    let (mut ai, mut bi) = (0, 0);
    let take = |v: &[f32], i: &mut usize, d: f64| {
        let r = v.get(*i).map_or(d, |&x| x as f64);
        *i += 1;
        r
    };
    let mut out = Vec::new();
    for n in &names {
        out.push(match n.to_ascii_lowercase().as_str() {
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "sigmoid" => Act::Sigmoid,
            "affine" => Act::Affine(take(&alphas, &mut ai, 1.0), take(&betas, &mut bi, 0.0)),
            "leakyrelu" => Act::LeakyRelu(take(&alphas, &mut ai, 0.01)),
            "thresholdedrelu" => Act::ThresholdedRelu(take(&alphas, &mut ai, 1.0)),
            "scaledtanh" => {
                Act::ScaledTanh(take(&alphas, &mut ai, 1.0), take(&betas, &mut bi, 1.0))
            }
            "hardsigmoid" => {
                Act::HardSigmoid(take(&alphas, &mut ai, 0.2), take(&betas, &mut bi, 0.5))
            }
            "elu" => Act::Elu(take(&alphas, &mut ai, 1.0)),
            "softsign" => Act::Softsign,
            "softplus" => Act::Softplus,
            _ => return unsupported(format!("activation `{n}`")),
        });
    }
    Ok(out)
}

/// Everything a step kernel needs to know about the layer.
struct Layer {
    cell: Cell,
    dirs: u64,
    seq: u64,
    batch: u64,
    isz: u64,
    h: u64,
    layout1: bool,
    reverse: bool,
    acts: Vec<Act>,
    clip: Option<f64>,
    lbr: bool,
    input_forget: bool,
}

/// Parameter slots of one step kernel.
struct P {
    x: usize,
    w: usize,
    r: usize,
    b: Option<usize>,
    lens: Option<usize>,
    p: Option<usize>,
    hs: usize,
    cs: Option<usize>,
    rg: Option<usize>,
    y: Option<usize>,
}

fn ld(buf: usize, i: Expr) -> Expr {
    cast(Ty::F64, load(buf, i))
}

impl Layer {
    fn state_dims(&self) -> Vec<u64> {
        vec![self.seq + 1, self.dirs, self.batch, self.h]
    }

    /// Activation `n` of the cell, per direction, applied to variable `x`.
    fn act(&self, k: &Kernel, n: usize, x: Expr) -> Expr {
        let per = self.cell.default_acts().len();
        let a0 = self.acts[n];
        if self.dirs == 2 && self.acts[per + n] != a0 {
            let a1 = self.acts[per + n];
            select(
                cmp(CmpOp::Eq, k.index(0), idx(1)),
                a1.apply(x.clone()),
                a0.apply(x),
            )
        } else {
            a0.apply(x)
        }
    }

    fn clip(&self, x: Expr) -> Expr {
        match self.clip {
            Some(c) => bin(BinOp::Min, bin(BinOp::Max, x, f(-c)), f(c)),
            None => x,
        }
    }

    /// Binds `act(clip(pre))` to a new variable.
    fn gate(&self, k: &mut Kernel, s: &mut Vec<Stmt>, name: &str, n: usize, pre: Expr) -> Expr {
        let p = k.var(format!("{name}_pre"), Ty::F64, false);
        s.push(Stmt::Let(p, self.clip(pre)));
        let g = k.var(name, Ty::F64, false);
        let e = self.act(k, n, var(p));
        s.push(Stmt::Let(g, e));
        var(g)
    }

    /// `acc = init + sum_i term(i)` over `n` terms, as a new variable.
    fn dot(
        k: &mut Kernel,
        s: &mut Vec<Stmt>,
        n: u64,
        init: Expr,
        term: impl Fn(Expr) -> Expr,
    ) -> Expr {
        let acc = k.var("acc", Ty::F64, true);
        let i = k.var("i", Ty::I64, false);
        s.push(Stmt::Decl(acc, init));
        s.push(serial(
            i,
            n,
            vec![Stmt::Set(acc, add(var(acc), term(var(i))))],
        ));
        var(acc)
    }

    fn hp(&self, k: &Kernel, p: &P, step: u64, i: Expr) -> Expr {
        load(
            p.hs,
            flat(
                &[idx(step as i64), k.index(0), k.index(1), i],
                &self.state_dims(),
            ),
        )
    }

    fn state_at(&self, k: &Kernel, step: u64) -> Expr {
        flat(
            &[idx(step as i64), k.index(0), k.index(1), k.index(2)],
            &self.state_dims(),
        )
    }

    fn y_at(&self, k: &Kernel, t: Expr) -> Expr {
        let (d, b, j) = (k.index(0), k.index(1), k.index(2));
        if self.layout1 {
            flat(&[b, t, d, j], &[self.batch, self.seq, self.dirs, self.h])
        } else {
            flat(&[t, d, b, j], &[self.seq, self.dirs, self.batch, self.h])
        }
    }

    /// x_t · W[gate*H + j]^T + Wb + h · R[gate*H + j]^T + Rb, the latter
    /// half optional (GRU's candidate).
    #[allow(clippy::too_many_arguments)]
    fn pre(
        &self,
        k: &mut Kernel,
        s: &mut Vec<Stmt>,
        p: &P,
        step: u64,
        t: Expr,
        gate: u64,
        with_r: bool,
    ) -> (Expr, Expr) {
        let (d, b, j) = (k.index(0), k.index(1), k.index(2));
        let g = self.cell.gates();
        let h = self.h;
        let row = add(
            mul(d.clone(), idx((g * h) as i64)),
            add(idx((gate * h) as i64), j.clone()),
        );
        let bias = |off: u64| match p.b {
            Some(bp) => ld(
                bp,
                add(
                    mul(d.clone(), idx((2 * g * h) as i64)),
                    add(idx((off + gate * h) as i64), j.clone()),
                ),
            ),
            None => f(0.0),
        };
        let xrow = if self.layout1 {
            add(mul(b, idx(self.seq as i64)), t)
        } else {
            add(mul(t, idx(self.batch as i64)), b)
        };
        let isz = self.isz as i64;
        let (xp, wp) = (p.x, p.w);
        let wb = bias(0);
        let xw = Self::dot(k, s, self.isz, wb, |i| {
            mul(
                ld(xp, add(mul(xrow.clone(), idx(isz)), i.clone())),
                ld(wp, add(mul(row.clone(), idx(isz)), i)),
            )
        });
        let rb = bias(g * h);
        let hr = if with_r {
            let rp = p.r;
            let hi = self.h as i64;
            let me = self.hp_fn(k, p, step);
            Self::dot(k, s, self.h, rb, |i| {
                mul(me(i.clone()), ld(rp, add(mul(row.clone(), idx(hi)), i)))
            })
        } else {
            rb
        };
        (xw, hr)
    }

    fn hp_fn(&self, k: &Kernel, p: &P, step: u64) -> impl Fn(Expr) -> Expr + use<> {
        let dims = self.state_dims();
        let (d, b) = (k.index(0), k.index(1));
        let hs = p.hs;
        move |i| {
            load(
                hs,
                flat(&[idx(step as i64), d.clone(), b.clone(), i], &dims),
            )
        }
    }
}

fn recurrent(l: &mut Lower, cell: Cell) -> LResult<()> {
    let op = l.op();
    let x = l.input(0)?;
    let w = l.input(1)?;
    let r = l.input(2)?;
    let bias = l.opt_input(3);
    let lens = l.opt_input(4);
    let h0 = l.opt_input(5);
    let (c0, peep) = if cell == Cell::Lstm {
        (l.opt_input(6), l.opt_input(7))
    } else {
        (None, None)
    };
    let ctx = l.ctx();
    let layout1 = ctx.int("layout", 0).map_err(bad)? != 0;
    let direction = ctx.string("direction", "forward").map_err(bad)?;
    let dirs: u64 = match direction.as_str() {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        d => return unsupported(format!("{op} direction `{d}`")),
    };
    if !x.ty.is_float() || x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
        return unsupported(format!("{op} of {} {:?}", x.dtype, x.dims));
    }
    for t in [&w, &r]
        .into_iter()
        .chain(&bias)
        .chain(&h0)
        .chain(&c0)
        .chain(&peep)
    {
        if !t.ty.is_float() {
            return unsupported(format!("{op} with a {} operand", t.dtype));
        }
    }
    let (seq, batch, isz) = if layout1 {
        (x.dims[1], x.dims[0], x.dims[2])
    } else {
        (x.dims[0], x.dims[1], x.dims[2])
    };
    let h = r.dims[2];
    let g = cell.gates();
    let state = if layout1 {
        vec![batch, dirs, h]
    } else {
        vec![dirs, batch, h]
    };
    let shapes_ok = w.dims == [dirs, g * h, isz]
        && r.dims == [dirs, g * h, h]
        && bias.as_ref().is_none_or(|b| b.dims == [dirs, 2 * g * h])
        && lens
            .as_ref()
            .is_none_or(|t| t.dims == [batch] && t.ty.is_int())
        && h0.as_ref().is_none_or(|t| t.dims == state)
        && c0.as_ref().is_none_or(|t| t.dims == state)
        && peep.as_ref().is_none_or(|t| t.dims == [dirs, 3 * h]);
    if !shapes_ok || seq == 0 || batch == 0 || h == 0 {
        return unsupported(format!("{op} operand shapes"));
    }
    if ctx.int("hidden_size", h as i64).map_err(bad)? != h as i64 {
        return unsupported(format!("{op}: hidden_size does not match R"));
    }
    let clip = match ctx.attr("clip") {
        Some(_) => Some(ctx.float("clip", 0.0).map_err(bad)? as f64),
        None => None,
    };
    let layer = Layer {
        cell,
        dirs,
        seq,
        batch,
        isz,
        h,
        layout1,
        reverse: direction == "reverse",
        acts: activations(l, cell, dirs as usize)?,
        clip,
        lbr: ctx.int("linear_before_reset", 0).map_err(bad)? != 0,
        input_forget: ctx.int("input_forget", 0).map_err(bad)? != 0,
    };
    let y = l.output(0);
    let sd = layer.state_dims();
    let hs = l.temp(DType::F64, &sd)?;
    let cs = if cell == Cell::Lstm {
        Some(l.temp(DType::F64, &sd)?)
    } else {
        None
    };
    let rg = if cell == Cell::Gru && !layer.lbr {
        Some(l.temp(DType::F64, &[dirs, batch, h])?)
    } else {
        None
    };
    let dom = vec![dirs, batch, h];

    // Slot 0 of the state: initial_h / initial_c or zeros.
    {
        let mut k = Kernel::new(format!("{}_init", op.to_ascii_lowercase()), dom.clone());
        let mut args: Vec<T> = Vec::new();
        let (d, b, j) = (k.index(0), k.index(1), k.index(2));
        let src = if layout1 {
            flat(&[b, d, j], &state)
        } else {
            flat(&[d, b, j], &state)
        };
        let at = layer.state_at(&k, 0);
        for (init, st) in [(&h0, Some(&hs)), (&c0, cs.as_ref())] {
            let Some(st) = st else { continue };
            let v = match init {
                Some(t) => {
                    let pi = param(&mut k, "init", t, Access::Read);
                    args.push(t.clone());
                    ld(pi, src.clone())
                }
                None => f(0.0),
            };
            let so = param(&mut k, "state", st, Access::Write);
            args.push(st.clone());
            k.body.push(Stmt::Store {
                buf: so,
                index: at.clone(),
                value: v,
            });
        }
        let refs: Vec<&T> = args.iter().collect();
        l.kernel(k, &refs)?;
    }

    for step in 0..seq {
        let name = format!("{}_step{step}", op.to_ascii_lowercase());
        let mut phases = vec![];
        if rg.is_some() {
            phases.push(true);
        }
        phases.push(false);
        for reset_phase in phases {
            let mut k = Kernel::new(
                if reset_phase {
                    format!("{name}_reset")
                } else {
                    name.clone()
                },
                dom.clone(),
            );
            let mut args: Vec<T> = Vec::new();
            let mut add_param = |k: &mut Kernel, n: &str, t: &T, a: Access| {
                args.push(t.clone());
                param(k, n, t, a)
            };
            let px = add_param(&mut k, "x", &x, Access::Read);
            let pw = add_param(&mut k, "w", &w, Access::Read);
            let pr = add_param(&mut k, "r", &r, Access::Read);
            let pb = bias
                .as_ref()
                .map(|t| add_param(&mut k, "b", t, Access::Read));
            let pl = lens
                .as_ref()
                .map(|t| add_param(&mut k, "lens", t, Access::Read));
            let pp = peep
                .as_ref()
                .map(|t| add_param(&mut k, "p", t, Access::Read));
            let phs = add_param(&mut k, "hs", &hs, Access::Write);
            let pcs = cs
                .as_ref()
                .map(|t| add_param(&mut k, "cs", t, Access::Write));
            let prg = rg.as_ref().map(|t| {
                let a = if reset_phase {
                    Access::Write
                } else {
                    Access::Read
                };
                add_param(&mut k, "rg", t, a)
            });
            let py = if reset_phase {
                None
            } else {
                y.as_ref().map(|t| add_param(&mut k, "y", t, Access::Write))
            };
            let p = P {
                x: px,
                w: pw,
                r: pr,
                b: pb,
                lens: pl,
                p: pp,
                hs: phs,
                cs: pcs,
                rg: prg,
                y: py,
            };
            step_body(&layer, &mut k, &p, step, reset_phase);
            let refs: Vec<&T> = args.iter().collect();
            l.kernel(k, &refs)?;
        }
    }

    // Y_h / Y_c from the last slot.
    let finals: Vec<(T, T)> = [(l.output(1), Some(hs.clone())), (l.output(2), cs.clone())]
        .into_iter()
        .filter_map(|(o, s)| Some((o?, s?)))
        .collect();
    if !finals.is_empty() {
        let mut k = Kernel::new(format!("{}_final", op.to_ascii_lowercase()), dom);
        let mut args: Vec<T> = Vec::new();
        let (d, b, j) = (k.index(0), k.index(1), k.index(2));
        let dst = if layout1 {
            flat(&[b, d, j], &state)
        } else {
            flat(&[d, b, j], &state)
        };
        let at = layer.state_at(&k, seq);
        for (o, s) in &finals {
            let ps = param(&mut k, "state", s, Access::Read);
            let po = param(&mut k, "out", o, Access::Write);
            args.push(s.clone());
            args.push(o.clone());
            k.body.push(Stmt::Store {
                buf: po,
                index: dst.clone(),
                value: cast(o.ty.compute(), load(ps, at.clone())),
            });
        }
        let refs: Vec<&T> = args.iter().collect();
        l.kernel(k, &refs)?;
    }
    Ok(())
}

/// One step (or GRU's reset-gate phase of it) at point (d, b, j).
fn step_body(ly: &Layer, k: &mut Kernel, p: &P, step: u64, reset_phase: bool) {
    let mut s: Vec<Stmt> = Vec::new();
    let h = ly.h;
    let len = match p.lens {
        Some(pl) => {
            let v = k.var("len", Ty::I64, false);
            k.body
                .push(Stmt::Let(v, cast(Ty::I64, load(pl, k.index(1)))));
            var(v)
        }
        None => idx(ly.seq as i64),
    };
    let back_t = sub(sub(len.clone(), idx(1)), idx(step as i64));
    let t = if ly.reverse {
        back_t
    } else if ly.dirs == 2 {
        select(cmp(CmpOp::Eq, k.index(0), idx(1)), back_t, idx(step as i64))
    } else {
        idx(step as i64)
    };
    let tv = k.var("t", Ty::I64, false);
    s.push(Stmt::Let(tv, t));
    let t = var(tv);
    let j = k.index(2);
    let cur = ly.state_at(k, step);
    let next = ly.state_at(k, step + 1);
    let hn = match ly.cell {
        Cell::Rnn => {
            let (xw, hr) = ly.pre(k, &mut s, p, step, t.clone(), 0, true);
            ly.gate(k, &mut s, "h", 0, add(xw, hr))
        }
        Cell::Gru if reset_phase => {
            let (xw, hr) = ly.pre(k, &mut s, p, step, t.clone(), 1, true);
            let r = ly.gate(k, &mut s, "r", 0, add(xw, hr));
            if let Some(rg) = p.rg {
                s.push(Stmt::Store {
                    buf: rg,
                    index: flat(
                        &[k.index(0), k.index(1), j.clone()],
                        &[ly.dirs, ly.batch, h],
                    ),
                    value: r,
                });
            }
            k.body.extend(guard(p, len, step, s, Vec::new()));
            return;
        }
        Cell::Gru => {
            let (xz, hz) = ly.pre(k, &mut s, p, step, t.clone(), 0, true);
            let z = ly.gate(k, &mut s, "z", 0, add(xz, hz));
            let pre = if ly.lbr {
                let (xr, hr) = ly.pre(k, &mut s, p, step, t.clone(), 1, true);
                let r = ly.gate(k, &mut s, "r", 0, add(xr, hr));
                let (xh, hh) = ly.pre(k, &mut s, p, step, t.clone(), 2, true);
                add(xh, mul(r, hh))
            } else {
                let (xh, rb) = ly.pre(k, &mut s, p, step, t.clone(), 2, false);
                let rg = p.rg.unwrap_or(0);
                let dims = [ly.dirs, ly.batch, h];
                let hp = ly.hp_fn(k, p, step);
                let (d, b) = (k.index(0), k.index(1));
                let row = add(
                    mul(d.clone(), idx((3 * h) as i64)),
                    add(idx((2 * h) as i64), j.clone()),
                );
                let pr = p.r;
                let hi = h as i64;
                let acc = Layer::dot(k, &mut s, h, rb, |i| {
                    mul(
                        mul(
                            load(rg, flat(&[d.clone(), b.clone(), i.clone()], &dims)),
                            hp(i.clone()),
                        ),
                        ld(pr, add(mul(row.clone(), idx(hi)), i)),
                    )
                });
                add(xh, acc)
            };
            let ht = ly.gate(k, &mut s, "ht", 1, pre);
            let hp = ly.hp(k, p, step, j.clone());
            add(mul(sub(f(1.0), z.clone()), ht), mul(z, hp))
        }
        Cell::Lstm => {
            let cs = p.cs.unwrap_or(0);
            let cpv = k.var("cp", Ty::F64, false);
            s.push(Stmt::Let(cpv, load(cs, cur.clone())));
            let cp = var(cpv);
            let d = k.index(0);
            let peep = |n: u64| match p.p {
                Some(pp) => ld(
                    pp,
                    add(
                        mul(d.clone(), idx((3 * h) as i64)),
                        add(idx((n * h) as i64), j.clone()),
                    ),
                ),
                None => f(0.0),
            };
            let (xi, hi) = ly.pre(k, &mut s, p, step, t.clone(), 0, true);
            let gi = ly.gate(
                k,
                &mut s,
                "gi",
                0,
                add(add(xi, hi), mul(peep(0), cp.clone())),
            );
            let gf = if ly.input_forget {
                sub(f(1.0), gi.clone())
            } else {
                let (xf, hf) = ly.pre(k, &mut s, p, step, t.clone(), 2, true);
                ly.gate(
                    k,
                    &mut s,
                    "gf",
                    0,
                    add(add(xf, hf), mul(peep(2), cp.clone())),
                )
            };
            let (xc, hc) = ly.pre(k, &mut s, p, step, t.clone(), 3, true);
            let gc = ly.gate(k, &mut s, "gc", 1, add(xc, hc));
            let cv = k.var("c", Ty::F64, false);
            s.push(Stmt::Let(cv, add(mul(gf, cp), mul(gi, gc))));
            let (xo, ho) = ly.pre(k, &mut s, p, step, t.clone(), 1, true);
            let go = ly.gate(k, &mut s, "go", 0, add(add(xo, ho), mul(peep(1), var(cv))));
            s.push(Stmt::Store {
                buf: cs,
                index: next.clone(),
                value: var(cv),
            });
            let ac = ly.act(k, 2, var(cv));
            mul(go, ac)
        }
    };
    let hv = k.var("hn", Ty::F64, false);
    s.push(Stmt::Let(hv, hn));
    s.push(Stmt::Store {
        buf: p.hs,
        index: next.clone(),
        value: var(hv),
    });
    if let Some(py) = p.y {
        let yt = k.params[py].ty.compute();
        s.push(Stmt::Store {
            buf: py,
            index: ly.y_at(k, t),
            value: cast(yt, var(hv)),
        });
    }
    // Past a row's sequence length its state carries over and Y is 0
    // (at time `step`: the times at or past the length are exactly the
    // steps at or past it, in either direction).
    let mut idle = vec![Stmt::Store {
        buf: p.hs,
        index: next.clone(),
        value: load(p.hs, cur.clone()),
    }];
    if let Some(cs) = p.cs {
        idle.push(Stmt::Store {
            buf: cs,
            index: next,
            value: load(cs, cur),
        });
    }
    if let Some(py) = p.y {
        let yt = k.params[py].ty.compute();
        idle.push(Stmt::Store {
            buf: py,
            index: ly.y_at(k, idx(step as i64)),
            value: lit(0.0, yt),
        });
    }
    k.body.extend(guard(p, len, step, s, idle));
}

fn guard(p: &P, len: Expr, step: u64, then: Vec<Stmt>, els: Vec<Stmt>) -> Vec<Stmt> {
    match p.lens {
        Some(_) => vec![Stmt::If {
            cond: cmp(CmpOp::Lt, idx(step as i64), len),
            then,
            els,
        }],
        None => then,
    }
}
