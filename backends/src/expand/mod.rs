//! Legalization by expansion: ops a target has no native lowering for are
//! rewritten, before lowering, into ops it has (QuantizeLinear into Div,
//! Round, Clip and Cast; an LSTM unrolled into MatMuls and gates; ...).
//! One file per op family registers its expansions in [`lookup`]; the
//! target decides which nodes to expand (`run`'s predicate), so that an op
//! with a native lowering keeps it.
//!
//! Expansions work on static shapes and known constants and decline (return
//! `Ok(None)`) otherwise: the node then stays, and the target reports it as
//! unsupported with its own reason.

mod activation;
mod affine;
mod attention;
mod builder;
mod causal_conv;
mod dft;
mod einsum;
mod grid;
mod indexing;
mod linear_attention;
mod norm;
mod quant;
mod resize;
mod rnn;
mod rotary;
mod scan;
mod scatter;
mod select;
mod steps;
#[cfg(test)]
mod testing;
mod train;
mod unpool;

pub use builder::Builder;

use smelt_ir::{Graph, Node, Op, ValueId};

/// An expansion: the values that replace `node`'s outputs, in order (`None`
/// for an output not produced), or `Ok(None)` to leave the node as it is.
pub type Expansion = fn(&mut Builder, &Node) -> Result<Option<Vec<Option<ValueId>>>, String>;

/// The expansion registered for `op`, if any.
pub fn lookup(op: Op) -> Option<Expansion> {
    // Families append their `lookup` here.
    let families: &[fn(Op) -> Option<Expansion>] = &[
        activation::lookup,
        select::lookup,
        train::lookup,
        quant::lookup,
        scatter::lookup,
        unpool::lookup,
        norm::lookup,
        einsum::lookup,
        affine::lookup,
        dft::lookup,
        rnn::lookup,
        rotary::lookup,
        causal_conv::lookup,
        linear_attention::lookup,
        attention::lookup,
        scan::lookup,
        resize::lookup,
        grid::lookup,
        indexing::lookup,
    ];
    families.iter().find_map(|f| f(op))
}

/// Expansions may emit ops that expand again (Einsum into MatMuls that a
/// target lowers natively, an RNN into gates using HardSigmoid, ...); this
/// bounds the rounds so that a cycle is an error, not a hang.
const MAX_ROUNDS: usize = 8;

/// `g` with every node for which `expand(node)` holds and an expansion
/// exists rewritten. The result computes the same outputs under the same
/// value names; nodes are kept in a valid (topological) order.
pub fn run(g: &Graph, expand: &dyn Fn(&Node) -> bool) -> Result<Graph, String> {
    let mut cur = g.clone();
    for _ in 0..MAX_ROUNDS {
        let (next, changed) = round(&cur, expand)?;
        if !changed {
            return Ok(next);
        }
        cur = next;
    }
    Err(format!(
        "expanding ops for the target did not finish in {MAX_ROUNDS} rounds"
    ))
}

fn round(g: &Graph, expand: &dyn Fn(&Node) -> bool) -> Result<(Graph, bool), String> {
    let mut out = g.clone();
    out.nodes.clear();
    let mut changed = false;
    let mut b = Builder::new(out);
    for (i, node) in g.nodes.iter().enumerate() {
        let f = match lookup(node.op) {
            Some(f) if expand(node) => f,
            _ => {
                b.keep(node.clone());
                continue;
            }
        };
        b.begin(i, node);
        let at = b.mark();
        match f(&mut b, node).map_err(|e| format!("expanding {}: {e}", node.describe()))? {
            None => {
                b.rollback(at);
                b.keep(node.clone());
            }
            Some(outs) => {
                b.bind(node, &outs)
                    .map_err(|e| format!("expanding {}: {e}", node.describe()))?;
                changed = true;
            }
        }
    }
    Ok((b.finish(), changed))
}
