//! Gated and self-gated activations as the sigmoid and products they are
//! defined by (ONNX's own function bodies).

use super::{Builder, Expansion};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::Swish => Some(swish),
        Op::SwiGLU => Some(swiglu),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn alpha(n: &Node) -> f64 {
    match n.attr("alpha") {
        Some(Attr::Float(a)) => *a as f64,
        _ => 1.0,
    }
}

/// x * sigmoid(alpha * x)
fn gate(b: &mut Builder, x: ValueId, alpha: f64) -> Result<ValueId, String> {
    let d = b.dtype(x);
    let scaled = if alpha == 1.0 {
        x
    } else {
        let a = b.scalar(d, alpha)?;
        b.op(Op::Mul, &[x, a], &[])?
    };
    let s = b.op(Op::Sigmoid, &[scaled], &[])?;
    b.op(Op::Mul, &[x, s], &[])
}

fn swish(b: &mut Builder, n: &Node) -> Out {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    Ok(Some(vec![Some(gate(b, x, alpha(n))?)]))
}

fn swiglu(b: &mut Builder, n: &Node) -> Out {
    let (Some(a), Some(x)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let g = gate(b, a, alpha(n))?;
    Ok(Some(vec![Some(b.op(Op::Mul, &[g, x], &[])?)]))
}
