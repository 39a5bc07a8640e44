//! Einsum: a sum of products over labelled axes, written as
//! `"ab,bc->ac"`. A label repeated inside one term takes a diagonal, labels
//! absent from the output are summed, `...` stands for broadcast leading
//! (or inner) dims, and without `->` the output is the ellipsis followed by
//! the labels used exactly once, in alphabetical order (numpy's rule).

use super::{from_f64_any, num_data};
use crate::interp::Tensor;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput};
use crate::{DClass, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    match op {
        Op::Einsum => Some(OpImpl {
            infer: infer_einsum,
            kernel: k_einsum,
        }),
        _ => None,
    }
}

/// One term of the equation: the letters in order, with the position of
/// `...` among them if present.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    letters: Vec<char>,
    ellipsis: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct Equation {
    inputs: Vec<Term>,
    /// `None` when the equation has no `->` (implicit output).
    output: Option<Term>,
}

fn parse_term(s: &str) -> OpResult<Term> {
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("...") {
            if ellipsis.is_some() {
                op_bail!("einsum term `{s}` has more than one ellipsis");
            }
            ellipsis = Some(letters.len());
            rest = &rest[3..];
        } else if c.is_ascii_alphabetic() {
            letters.push(c);
            rest = &rest[1..];
        } else {
            op_bail!("einsum term `{s}` has an unexpected character `{c}`");
        }
    }
    Ok(Term { letters, ellipsis })
}

fn parse(eq: &str) -> OpResult<Equation> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let inputs = lhs
        .split(',')
        .map(parse_term)
        .collect::<OpResult<Vec<_>>>()?;
    let output = rhs.map(parse_term).transpose()?;
    if let Some(o) = &output {
        for (i, c) in o.letters.iter().enumerate() {
            if o.letters[..i].contains(c) {
                op_bail!("einsum output repeats label `{c}`");
            }
            if !inputs.iter().any(|t| t.letters.contains(c)) {
                op_bail!("einsum output label `{c}` is not in any input");
            }
        }
    }
    Ok(Equation { inputs, output })
}

/// An axis label after expanding ellipses: a letter, or the k-th of the
/// broadcast ellipsis dims (counted from the left of the widest one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Label {
    Ell(usize),
    Letter(char),
}

/// Each input's per-axis labels, the output's labels, and the ellipsis
/// rank, given the input ranks.
fn resolve(eq: &Equation, ranks: &[usize]) -> OpResult<(Vec<Vec<Label>>, Vec<Label>)> {
    if eq.inputs.len() != ranks.len() {
        op_bail!(
            "einsum equation has {} inputs but the node has {}",
            eq.inputs.len(),
            ranks.len()
        );
    }
    let mut ell_rank = 0;
    let mut ell_ranks = Vec::new();
    for (t, &r) in eq.inputs.iter().zip(ranks) {
        let e = match t.ellipsis {
            Some(_) if r >= t.letters.len() => r - t.letters.len(),
            None if r == t.letters.len() => 0,
            _ => op_bail!(
                "einsum term with {} labels does not fit an input of rank {r}",
                t.letters.len()
            ),
        };
        ell_rank = ell_rank.max(e);
        ell_ranks.push(e);
    }
    let expand = |t: &Term, e: usize| -> Vec<Label> {
        let mut v: Vec<Label> = Vec::new();
        for (i, &c) in t.letters.iter().enumerate() {
            if t.ellipsis == Some(i) {
                v.extend((ell_rank - e..ell_rank).map(Label::Ell));
            }
            v.push(Label::Letter(c));
        }
        if t.ellipsis == Some(t.letters.len()) {
            v.extend((ell_rank - e..ell_rank).map(Label::Ell));
        }
        v
    };
    let ins: Vec<Vec<Label>> = eq
        .inputs
        .iter()
        .zip(&ell_ranks)
        .map(|(t, &e)| expand(t, e))
        .collect();
    let out = match &eq.output {
        // An explicit output without `...` sums the broadcast dims away.
        Some(o) => expand(o, ell_rank),
        None => {
            let mut once: Vec<char> = Vec::new();
            for t in &eq.inputs {
                for &c in &t.letters {
                    let n: usize = eq
                        .inputs
                        .iter()
                        .map(|t| t.letters.iter().filter(|&&x| x == c).count())
                        .sum();
                    if n == 1 && !once.contains(&c) {
                        once.push(c);
                    }
                }
            }
            once.sort_unstable();
            let mut v: Vec<Label> = (0..ell_rank).map(Label::Ell).collect();
            v.extend(once.into_iter().map(Label::Letter));
            v
        }
    };
    Ok((ins, out))
}

fn equation(ctx: &Ctx) -> OpResult<Equation> {
    match ctx.attr("equation") {
        Some(crate::Attr::String(s)) => parse(s),
        _ => op_bail!("Einsum needs a string attribute `equation`"),
    }
}

fn infer_einsum(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let eq = equation(ctx)?;
    let mut tys = Vec::new();
    for (i, t) in ins.iter().enumerate() {
        match t {
            Some(t) => tys.push(t.ty),
            None => op_bail!("Einsum input {i} is missing"),
        }
    }
    let Some(first) = tys.first() else {
        op_bail!("Einsum needs at least one input");
    };
    let dtype = first.dtype;
    for t in &tys {
        if t.dtype != dtype {
            op_bail!("Einsum inputs mix {} and {}", dtype, t.dtype);
        }
    }
    let dims: Option<Vec<&[Dim]>> = tys.iter().map(|t| t.shape.dims()).collect();
    let Some(dims) = dims else {
        return Ok(vec![TensorType::new(dtype, Shape::unknown())]);
    };
    let ranks: Vec<usize> = dims.iter().map(|d| d.len()).collect();
    let (in_labels, out_labels) = resolve(&eq, &ranks)?;
    let mut out = Vec::new();
    for l in &out_labels {
        // The size of a label: a static size wins over 1 (broadcast) and
        // over symbolic sizes.
        let mut best = Dim::Static(1);
        let mut seen = false;
        for (ls, ds) in in_labels.iter().zip(&dims) {
            for (x, d) in ls.iter().zip(ds.iter()) {
                if x != l {
                    continue;
                }
                match (&best, d) {
                    (_, Dim::Static(1)) => {}
                    (Dim::Static(1), _) => best = d.clone(),
                    (Dim::Static(a), Dim::Static(b)) if a != b => {
                        op_bail!("einsum label {l:?} has sizes {a} and {b}")
                    }
                    (Dim::Static(_), _) => {}
                    (_, Dim::Static(_)) => best = d.clone(),
                    _ => {}
                }
                seen = true;
            }
        }
        if !seen {
            op_bail!("einsum output label {l:?} is not in any input");
        }
        out.push(best);
    }
    Ok(vec![TensorType::new(dtype, Shape(Some(out)))])
}

fn k_einsum(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let eq = equation(ctx)?;
    let mut ts = Vec::new();
    for (i, t) in ins.iter().enumerate() {
        match t {
            Some(t) => ts.push(*t),
            None => op_bail!("Einsum input {i} is missing"),
        }
    }
    let Some(first) = ts.first() else {
        op_bail!("Einsum needs at least one input");
    };
    let dtype = first.dtype;
    if matches!(dtype.class(), DClass::String | DClass::Bool | DClass::Block) {
        op_bail!("Einsum needs numeric inputs, found {dtype}");
    }
    let ranks: Vec<usize> = ts.iter().map(|t| t.rank()).collect();
    let (in_labels, out_labels) = resolve(&eq, &ranks)?;

    // Every distinct label gets one loop; its size must agree across all
    // its uses, except that size 1 broadcasts.
    let mut all: Vec<Label> = out_labels.clone();
    for ls in &in_labels {
        for l in ls {
            if !all.contains(l) {
                all.push(*l);
            }
        }
    }
    let mut size = vec![1usize; all.len()];
    for (ls, t) in in_labels.iter().zip(&ts) {
        for (l, &d) in ls.iter().zip(&t.shape) {
            let k = all.iter().position(|x| x == l).unwrap_or(0);
            if size[k] == 1 {
                size[k] = d;
            } else if d != 1 && d != size[k] {
                op_bail!("einsum label {l:?} has sizes {} and {d}", size[k]);
            }
        }
    }
    // Per input, the element stride contributed by each loop; repeated
    // labels add their strides (a diagonal), size-1 broadcast dims add 0.
    let mut strides = Vec::new();
    let mut datas = Vec::new();
    for (ls, t) in in_labels.iter().zip(&ts) {
        let st = crate::interp::tensor::strides(&t.shape);
        let mut s = vec![0usize; all.len()];
        for (i, l) in ls.iter().enumerate() {
            let k = all.iter().position(|x| x == l).unwrap_or(0);
            if t.shape[i] != 1 {
                s[k] += st[i];
            }
        }
        strides.push(s);
        datas.push(num_data(t, "Einsum input")?);
    }
    let n_out = out_labels.len();
    let out_shape: Vec<usize> = size[..n_out].to_vec();
    let red_shape: Vec<usize> = size[n_out..].to_vec();
    let out_n = checked(&out_shape)?;
    let red_n = checked(&red_shape)?;
    if out_n.checked_mul(red_n).is_none_or(|w| w > 1 << 34) {
        op_bail!("Einsum is too large to evaluate");
    }
    let mut out = Vec::with_capacity(out_n);
    let mut oi = vec![0usize; n_out];
    for _ in 0..out_n {
        let base: Vec<usize> = strides
            .iter()
            .map(|s| oi.iter().zip(s).map(|(i, s)| i * s).sum())
            .collect();
        let mut acc = 0.0;
        let mut ri = vec![0usize; red_shape.len()];
        for _ in 0..red_n {
            let mut p = 1.0;
            for (j, d) in datas.iter().enumerate() {
                let off: usize = base[j]
                    + ri.iter()
                        .zip(&strides[j][n_out..])
                        .map(|(i, s)| i * s)
                        .sum::<usize>();
                p *= d.get(off).copied().unwrap_or(0.0);
            }
            acc += p;
            bump(&mut ri, &red_shape);
        }
        out.push(acc);
        bump(&mut oi, &out_shape);
    }
    Ok(vec![from_f64_any(dtype, out_shape, out)])
}

fn checked(shape: &[usize]) -> OpResult<usize> {
    match crate::shape::checked_numel(shape) {
        Some(n) => Ok(n),
        None => op_bail!("shape {shape:?} has too many elements"),
    }
}

/// Row-major increment of a multi-index (wraps to zero at the end).
fn bump(idx: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return;
        }
        idx[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    fn eq(s: &str) -> [(&'static str, Attr); 1] {
        [("equation", Attr::String(s.into()))]
    }

    #[test]
    fn matmul_trace_diag_implicit() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        // np.einsum('ij,jk->ik', arange(6).reshape(2,3), arange(6).reshape(3,2))
        let y = run(Op::Einsum, &eq("ij, jk -> ik"), &[Some(&a), Some(&b)]).unwrap();
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_close(&y[0], &[10., 13., 28., 40.]);
        // Implicit output 'ij,jk' is 'ik' too.
        let y = run(Op::Einsum, &eq("ij,jk"), &[Some(&a), Some(&b)]).unwrap();
        assert_close(&y[0], &[10., 13., 28., 40.]);
        // np.einsum('ii', arange(9).reshape(3,3)) = 0+4+8
        let m = iota(&[3, 3]);
        let y = run(Op::Einsum, &eq("ii"), &[Some(&m)]).unwrap();
        assert!(y[0].shape.is_empty());
        assert_close(&y[0], &[12.]);
        // np.einsum('...ii->...i', arange(18).reshape(2,3,3))
        let m = iota(&[2, 3, 3]);
        let y = run(Op::Einsum, &eq("...ii->...i"), &[Some(&m)]).unwrap();
        assert_eq!(y[0].shape, vec![2, 3]);
        assert_close(&y[0], &[0., 4., 8., 9., 13., 17.]);
        // Implicit 'ji' is the transpose (output labels sorted: 'ij').
        let y = run(Op::Einsum, &eq("ji"), &[Some(&a)]).unwrap();
        assert_eq!(y[0].shape, vec![3, 2]);
        assert_close(&y[0], &[0., 3., 1., 4., 2., 5.]);
    }

    #[test]
    fn broadcast_ellipsis_and_errors() {
        // np.einsum('...j,j->...', arange(6).reshape(2,3), arange(3)) = [5, 14]
        let a = iota(&[2, 3]);
        let v = iota(&[3]);
        let y = run(Op::Einsum, &eq("...j,j->..."), &[Some(&a), Some(&v)]).unwrap();
        assert_close(&y[0], &[5., 14.]);
        assert!(run(Op::Einsum, &eq("ij,jk->ik"), &[Some(&a), Some(&a)]).is_err());
        assert!(run(Op::Einsum, &eq("ijk"), &[Some(&a)]).is_err());
        assert!(run(Op::Einsum, &eq("ij->q"), &[Some(&a)]).is_err());
    }
}
