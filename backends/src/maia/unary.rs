//! Elementwise unary ops as sequences of vector-unit commands on f32 SRAM
//! buffers (the unit's own ops plus compositions: gelu, softplus, elu, ...).

use smelt_ir::{Attr, Node, Op};
use smelt_runtime::maia::{Dt, Op as Cmd, VOp, VSrc};

/// Shape of one vector operation on SRAM.
#[derive(Clone, Copy)]
pub struct Block {
    pub rows: u32,
    pub cols: u32,
}

impl Block {
    pub fn v(&self, op: VOp, dst: u32, a: u32, b: VSrc) -> Cmd {
        Cmd::Vector {
            op,
            dt: Dt::F32,
            rows: self.rows,
            cols: self.cols,
            dst,
            a,
            b,
        }
    }
}

fn fattr(n: Option<&Node>, name: &str, d: f32) -> f32 {
    match n.and_then(|n| n.attr(name)) {
        Some(Attr::Float(x)) => *x,
        Some(Attr::Int(x)) => *x as f32,
        _ => d,
    }
}

/// Whether `unary` can lower this op (with these attributes).
pub fn supported(op: Op, n: Option<&Node>) -> bool {
    let b = Block { rows: 1, cols: 1 };
    unary(op, n, b, 0, 0, 0).is_some()
}

/// Commands computing dst = op(src) elementwise; `tmp` is scratch of the
/// same size. dst may equal src. None if the op has no lowering.
pub fn unary(op: Op, n: Option<&Node>, b: Block, dst: u32, src: u32, tmp: u32) -> Option<Vec<Cmd>> {
    use VOp::*;
    use VSrc::{Full, Imm, None as No};
    let one = |o: VOp| Some(vec![b.v(o, dst, src, No)]);
    match op {
        Op::Identity => one(Copy),
        Op::Relu => one(Relu),
        Op::Neg => one(Neg),
        Op::Exp => one(Exp),
        Op::Log => one(Log),
        Op::Sqrt => one(Sqrt),
        Op::Reciprocal => one(Recip),
        Op::Tanh => one(Tanh),
        Op::Sigmoid => one(Sigmoid),
        Op::Abs => one(Abs),
        Op::Floor => one(Floor),
        Op::Ceil => one(Ceil),
        Op::Round => one(VOp::Round),
        Op::Sin => one(Sin),
        Op::Cos => one(Cos),
        Op::Erf => one(Erf),
        Op::Asin => one(Asin),
        Op::Acos => one(Acos),
        Op::Atan => one(Atan),
        Op::Asinh => one(Asinh),
        Op::Acosh => one(Acosh),
        Op::Atanh => one(Atanh),
        Op::Sign => Some(vec![
            b.v(Lt, tmp, src, Imm(0.0)),
            b.v(Gt, dst, src, Imm(0.0)),
            b.v(Sub, dst, dst, Full(tmp)),
        ]),
        Op::ThresholdedRelu => {
            let a = fattr(n, "alpha", 1.0);
            Some(vec![
                b.v(Gt, tmp, src, Imm(a)),
                b.v(Mul, dst, src, Full(tmp)),
            ])
        }
        Op::Shrink => {
            // x + bias where x < -lambd, x - bias where x > lambd, else 0.
            let (l, bias) = (fattr(n, "lambd", 0.5), fattr(n, "bias", 0.0));
            Some(vec![
                b.v(Lt, tmp, src, Imm(-l)),
                b.v(Gt, dst, src, Imm(l)),
                b.v(Sub, dst, dst, Full(tmp)),
                // dst is now sign-of-region s in {-1, 0, 1}: x·|s| - bias·s.
                b.v(Abs, tmp, dst, No),
                b.v(Mul, tmp, tmp, Full(src)),
                b.v(Mul, dst, dst, Imm(bias)),
                b.v(Sub, dst, tmp, Full(dst)),
            ])
        }
        Op::Tan => Some(vec![
            b.v(Cos, tmp, src, No),
            b.v(Sin, dst, src, No),
            b.v(Div, dst, dst, Full(tmp)),
        ]),
        Op::Sinh | Op::Cosh => {
            // (e^x ∓ e^-x) / 2
            let comb = if op == Op::Sinh { Sub } else { Add };
            Some(vec![
                b.v(Neg, tmp, src, No),
                b.v(Exp, tmp, tmp, No),
                b.v(Exp, dst, src, No),
                b.v(comb, dst, dst, Full(tmp)),
                b.v(Mul, dst, dst, Imm(0.5)),
            ])
        }
        Op::Gelu => {
            let approx = matches!(n.and_then(|n| n.attr("approximate")), Some(Attr::String(s)) if s == "tanh");
            if approx {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                let c = (2.0 / std::f64::consts::PI).sqrt() as f32;
                Some(vec![
                    b.v(Mul, tmp, src, Full(src)),
                    b.v(Mul, tmp, tmp, Imm(0.044715)),
                    b.v(Add, tmp, tmp, Imm(1.0)),
                    b.v(Mul, tmp, tmp, Full(src)),
                    b.v(Mul, tmp, tmp, Imm(c)),
                    b.v(Tanh, tmp, tmp, No),
                    b.v(Add, tmp, tmp, Imm(1.0)),
                    b.v(Mul, dst, src, Full(tmp)),
                    b.v(Mul, dst, dst, Imm(0.5)),
                ])
            } else {
                // 0.5 x (1 + erf(x / sqrt 2))
                Some(vec![
                    b.v(Mul, tmp, src, Imm(std::f32::consts::FRAC_1_SQRT_2)),
                    b.v(Erf, tmp, tmp, No),
                    b.v(Add, tmp, tmp, Imm(1.0)),
                    b.v(Mul, dst, src, Full(tmp)),
                    b.v(Mul, dst, dst, Imm(0.5)),
                ])
            }
        }
        Op::Softplus => Some(vec![
            b.v(Exp, dst, src, No),
            b.v(Add, dst, dst, Imm(1.0)),
            b.v(Log, dst, dst, No),
        ]),
        Op::Softsign => Some(vec![
            b.v(Abs, tmp, src, No),
            b.v(Add, tmp, tmp, Imm(1.0)),
            b.v(Div, dst, src, Full(tmp)),
        ]),
        Op::Mish => Some(vec![
            b.v(Exp, tmp, src, No),
            b.v(Add, tmp, tmp, Imm(1.0)),
            b.v(Log, tmp, tmp, No),
            b.v(Tanh, tmp, tmp, No),
            b.v(Mul, dst, src, Full(tmp)),
        ]),
        Op::HardSigmoid | Op::HardSwish => {
            let (alpha, beta) = if op == Op::HardSwish {
                (1.0 / 6.0, 0.5)
            } else {
                (fattr(n, "alpha", 0.2), fattr(n, "beta", 0.5))
            };
            let mut v = vec![
                b.v(Mul, tmp, src, Imm(alpha)),
                b.v(Add, tmp, tmp, Imm(beta)),
                b.v(Min, tmp, tmp, Imm(1.0)),
                b.v(Max, tmp, tmp, Imm(0.0)),
            ];
            v.push(if op == Op::HardSwish {
                b.v(Mul, dst, src, Full(tmp))
            } else {
                b.v(Copy, dst, tmp, No)
            });
            Some(v)
        }
        Op::LeakyRelu => {
            let a = fattr(n, "alpha", 0.01);
            Some(vec![
                b.v(Min, tmp, src, Imm(0.0)),
                b.v(Mul, tmp, tmp, Imm(a)),
                b.v(Relu, dst, src, No),
                b.v(Add, dst, dst, Full(tmp)),
            ])
        }
        Op::Elu | Op::Selu | Op::Celu => {
            let (alpha, gamma, inner) = match op {
                Op::Elu => (fattr(n, "alpha", 1.0), 1.0, 1.0),
                Op::Selu => (
                    fattr(n, "alpha", 1.673_263_2),
                    fattr(n, "gamma", 1.050_701),
                    1.0,
                ),
                _ => {
                    let a = fattr(n, "alpha", 1.0);
                    (a, 1.0, 1.0 / a)
                }
            };
            // gamma * (max(x, 0) + alpha * (exp(min(x, 0) * inner) - 1))
            Some(vec![
                b.v(Min, tmp, src, Imm(0.0)),
                b.v(Mul, tmp, tmp, Imm(inner)),
                b.v(Exp, tmp, tmp, No),
                b.v(Sub, tmp, tmp, Imm(1.0)),
                b.v(Mul, tmp, tmp, Imm(alpha)),
                b.v(Relu, dst, src, No),
                b.v(Add, dst, dst, Full(tmp)),
                b.v(Mul, dst, dst, Imm(gamma)),
            ])
        }
        _ => None,
    }
}

/// The vector op of a binary graph op (same semantics elementwise on f32).
pub fn binary(op: Op) -> Option<VOp> {
    Some(match op {
        Op::Add | Op::Sum => VOp::Add,
        Op::Sub => VOp::Sub,
        Op::Mul => VOp::Mul,
        Op::Div => VOp::Div,
        Op::Max => VOp::Max,
        Op::Min => VOp::Min,
        Op::Pow => VOp::Pow,
        Op::Mean => VOp::Add,
        _ => return None,
    })
}
