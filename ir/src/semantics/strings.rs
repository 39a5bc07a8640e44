//! String ops: StringConcat, StringSplit, StringNormalizer, and
//! TfIdfVectorizer (n-gram counting over strings or integers).

use super::util::{broadcast_concrete, broadcast_map, broadcast_shapes};
use super::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{Attr, DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::StringConcat => (infer_concat, k_concat),
        Op::StringSplit => (infer_split, k_split),
        Op::StringNormalizer => (infer_normalizer, k_normalizer),
        Op::TfIdfVectorizer => (infer_tfidf, k_tfidf),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn strs<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [String]> {
    match &t.data {
        Storage::S(v) => Ok(v),
        _ => op_bail!("{what} must be a string tensor, found {}", t.dtype),
    }
}

fn string_tensor(shape: Vec<usize>, v: Vec<String>) -> Tensor {
    Tensor {
        dtype: DType::String,
        shape,
        data: Storage::S(v),
    }
}

fn infer_concat(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let a = input(ins, 0)?.ty;
    let b = input(ins, 1)?.ty;
    Ok(vec![TensorType::new(
        DType::String,
        broadcast_shapes(&a.shape, &b.shape)?,
    )])
}

fn k_concat(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let a = operand(ins, 0)?;
    let b = operand(ins, 1)?;
    let (av, bv) = (strs(a, "X")?, strs(b, "Y")?);
    let shape = broadcast_concrete(&a.shape, &b.shape)?;
    let (ma, mb) = (
        broadcast_map(&shape, &a.shape),
        broadcast_map(&shape, &b.shape),
    );
    let out = ma
        .iter()
        .zip(&mb)
        .map(|(&i, &j)| format!("{}{}", av[i], bv[j]))
        .collect();
    Ok(vec![string_tensor(shape, out)])
}

fn infer_split(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let (subs, lens) = match x.shape.dims() {
        Some(d) => {
            let mut s = d.to_vec();
            s.push(Dim::Unknown);
            (Shape(Some(s)), Shape(Some(d.to_vec())))
        }
        None => (Shape::unknown(), Shape::unknown()),
    };
    Ok(vec![
        TensorType::new(DType::String, subs),
        TensorType::new(DType::I64, lens),
    ])
}

/// Python's `str.split()` without a separator: runs of whitespace separate,
/// leading and trailing whitespace yield nothing, and once `max` splits are
/// done the rest (minus its leading whitespace) is the last piece.
fn split_whitespace(s: &str, max: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if max.is_some_and(|m| out.len() == m) {
            out.push(rest.to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = rest[end..].trim_start();
    }
    out
}

fn k_split(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = strs(x, "X")?;
    let delim = ctx.string("delimiter", "")?;
    let max = match ctx.attr("maxsplit") {
        Some(_) => {
            let m = ctx.int("maxsplit", 0)?;
            if m < 0 { None } else { Some(m as usize) }
        }
        None => None,
    };
    let parts: Vec<Vec<String>> = xv
        .iter()
        .map(|s| {
            if delim.is_empty() {
                split_whitespace(s, max)
            } else {
                match max {
                    Some(m) => s
                        .splitn(m + 1, delim.as_str())
                        .map(str::to_string)
                        .collect(),
                    None => s.split(delim.as_str()).map(str::to_string).collect(),
                }
            }
        })
        .collect();
    let width = parts.iter().map(Vec::len).max().unwrap_or(0);
    let mut flat = Vec::with_capacity(parts.len() * width);
    let mut lens = Vec::with_capacity(parts.len());
    for p in parts {
        lens.push(p.len() as i64);
        let pad = width - p.len();
        flat.extend(p);
        flat.extend(std::iter::repeat_n(String::new(), pad));
    }
    let mut shape = x.shape.clone();
    shape.push(width);
    Ok(vec![
        string_tensor(shape, flat),
        Tensor::from_i64(DType::I64, x.shape.clone(), lens),
    ])
}

fn infer_normalizer(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let dims = match x.shape.dims() {
        Some(d) if d.len() == 1 => vec![Dim::Unknown],
        Some(d) if d.len() == 2 => vec![Dim::Static(1), Dim::Unknown],
        Some(d) => op_bail!(
            "StringNormalizer needs [C] or [1, C] input, found rank {}",
            d.len()
        ),
        None => return Ok(vec![TensorType::new(DType::String, Shape::unknown())]),
    };
    Ok(vec![TensorType::new(DType::String, Shape(Some(dims)))])
}

/// Drops stop words (whole elements), then changes case. An input left
/// empty becomes a single empty string, as the spec requires.
fn k_normalizer(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = strs(x, "X")?;
    let two_d = match x.shape.as_slice() {
        [_] => false,
        [1, _] => true,
        s => op_bail!("StringNormalizer needs [C] or [1, C] input, found {s:?}"),
    };
    let case = ctx.string("case_change_action", "NONE")?;
    let sensitive = ctx.int("is_case_sensitive", 0)? != 0;
    let stops: Vec<String> = match ctx.attr("stopwords") {
        Some(Attr::Strings(v)) => v.clone(),
        Some(Attr::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let is_stop = |w: &str| {
        if sensitive {
            stops.iter().any(|s| s == w)
        } else {
            let w = w.to_lowercase();
            stops.iter().any(|s| s.to_lowercase() == w)
        }
    };
    let mut out = Vec::new();
    for w in xv {
        if is_stop(w) {
            continue;
        }
        out.push(match case.as_str() {
            "NONE" => w.clone(),
            "LOWER" => w.to_lowercase(),
            "UPPER" => w.to_uppercase(),
            c => op_bail!("unknown case_change_action `{c}`"),
        });
    }
    if out.is_empty() {
        out.push(String::new());
    }
    let shape = if two_d {
        vec![1, out.len()]
    } else {
        vec![out.len()]
    };
    Ok(vec![string_tensor(shape, out)])
}

fn infer_tfidf(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let width = ctx
        .ints("ngram_indexes")?
        .and_then(|v| v.iter().max().copied())
        .map_or(Dim::Unknown, |m| Dim::Static((m + 1).max(0) as u64));
    let dims = match x.shape.dims() {
        Some(d) if d.len() <= 1 => vec![width],
        Some(d) if d.len() == 2 => vec![d[0].clone(), width],
        Some(d) => op_bail!(
            "TfIdfVectorizer needs a 1-D or 2-D input, found rank {}",
            d.len()
        ),
        None => return Ok(vec![TensorType::new(DType::F32, Shape::unknown())]),
    };
    Ok(vec![TensorType::new(DType::F32, Shape(Some(dims)))])
}

/// A token: strings and integers are pooled the same way.
#[derive(Clone, PartialEq, Eq)]
enum Tok {
    S(String),
    I(i64),
}

fn k_tfidf(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let toks: Vec<Tok> = match &x.data {
        Storage::S(v) => v.iter().cloned().map(Tok::S).collect(),
        _ => match x.to_i64_vec() {
            Some(v) => v.into_iter().map(Tok::I).collect(),
            None => op_bail!("TfIdfVectorizer input must be strings or integers"),
        },
    };
    let pool: Vec<Tok> = match (ctx.ints("pool_int64s")?, ctx.attr("pool_strings")) {
        (Some(v), _) => v.into_iter().map(Tok::I).collect(),
        (None, Some(Attr::Strings(v))) => v.iter().cloned().map(Tok::S).collect(),
        _ => op_bail!("TfIdfVectorizer needs pool_int64s or pool_strings"),
    };
    let counts = ctx.ints("ngram_counts")?.unwrap_or_default();
    let indexes = ctx.ints("ngram_indexes")?.unwrap_or_default();
    let min_n = ctx.int("min_gram_length", 1)?;
    let max_n = ctx.int("max_gram_length", 1)?;
    let max_skip = ctx.int("max_skip_count", 0)?;
    if min_n < 1 || max_n < min_n || max_skip < 0 {
        op_bail!("bad gram lengths [{min_n}, {max_n}] or skip count {max_skip}");
    }
    let (min_n, max_n, max_skip) = (min_n as usize, max_n as usize, max_skip as usize);
    let mode = ctx.string("mode", "TF")?;
    let weights = ctx.floats("weights")?;
    // The pool as (n, tokens) -> output column.
    let mut grams: Vec<(Vec<Tok>, usize)> = Vec::new();
    let mut k = 0usize;
    for (level, &start) in counts.iter().enumerate() {
        let n = level + 1;
        let end = counts.get(level + 1).map_or(pool.len() as i64, |&e| e);
        if start < 0 || end < start || end as usize > pool.len() {
            op_bail!(
                "ngram_counts {counts:?} do not fit a pool of {}",
                pool.len()
            );
        }
        let section = &pool[start as usize..end as usize];
        if !section.len().is_multiple_of(n) {
            op_bail!("pool section for {n}-grams has {} tokens", section.len());
        }
        for g in section.chunks(n) {
            let Some(&col) = indexes.get(k) else {
                op_bail!("ngram_indexes has fewer entries than the pool has n-grams");
            };
            if col < 0 {
                op_bail!("negative ngram index {col}");
            }
            grams.push((g.to_vec(), col as usize));
            k += 1;
        }
    }
    let width = indexes.iter().max().map_or(0, |&m| (m + 1) as usize);
    let (rows, len) = match x.shape.as_slice() {
        [] => (1, 1),
        [c] => (1, *c),
        [n, c] => (*n, *c),
        s => op_bail!("TfIdfVectorizer needs a 1-D or 2-D input, found {s:?}"),
    };
    let mut out = vec![0.0f64; rows * width];
    for r in 0..rows {
        let row = &toks[r * len..(r + 1) * len];
        let o = &mut out[r * width..(r + 1) * width];
        for (g, col) in &grams {
            let n = g.len();
            if n < min_n || n > max_n {
                continue;
            }
            // Unigrams do not depend on the skip, so they count once.
            let skips = if n == 1 { 0 } else { max_skip };
            let mut c = 0usize;
            for s in 0..=skips {
                let step = s + 1;
                let span = (n - 1) * step;
                for i in 0..len.saturating_sub(span) {
                    if (0..n).all(|j| row[i + j * step] == g[j]) {
                        c += 1;
                    }
                }
            }
            o[*col] += c as f64;
        }
    }
    let w = |col: usize| {
        weights
            .as_ref()
            .and_then(|v| v.get(col))
            .map_or(1.0, |&x| x as f64)
    };
    for r in 0..rows {
        for col in 0..width {
            let v = &mut out[r * width + col];
            *v = match mode.as_str() {
                "TF" => *v,
                "IDF" => (v.min(1.0)) * w(col),
                "TFIDF" => *v * w(col),
                m => op_bail!("unknown mode `{m}`"),
            };
        }
    }
    let shape = if x.rank() == 2 {
        vec![rows, width]
    } else {
        vec![width]
    };
    Ok(vec![Tensor::from_f64(DType::F32, shape, out)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::nn::testutil::run;

    fn st(shape: &[usize], v: &[&str]) -> Tensor {
        string_tensor(shape.to_vec(), v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn split_like_python() {
        // ' a  b c '.split() == ['a', 'b', 'c']; 'o n n x'.split(None, 2) == ['o', 'n', 'n x']
        assert_eq!(split_whitespace(" a  b c ", None), vec!["a", "b", "c"]);
        assert_eq!(split_whitespace("o n n x", Some(2)), vec!["o", "n", "n x"]);
        let x = st(&[2], &["a-b--c", "d"]);
        let y = run(
            Op::StringSplit,
            &[("delimiter", Attr::String("-".into()))],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![2, 4]);
        assert_eq!(y[1].to_i64_vec().unwrap(), vec![4, 1]);
        let Storage::S(v) = &y[0].data else { panic!() };
        assert_eq!(v, &["a", "b", "", "c", "d", "", "", ""]);
    }

    #[test]
    fn concat_normalize() {
        let x = st(&[2], &["cat", "dog"]);
        let s = st(&[], &["s"]);
        let y = run(Op::StringConcat, &[], &[Some(&x), Some(&s)]).unwrap();
        assert_eq!(y[0].data, Storage::S(vec!["cats".into(), "dogs".into()]));
        let x = st(&[1, 3], &["Monday", "tuesday", "monday"]);
        let y = run(
            Op::StringNormalizer,
            &[
                ("case_change_action", Attr::String("UPPER".into())),
                ("stopwords", Attr::Strings(vec!["monday".into()])),
            ],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 1]);
        assert_eq!(y[0].data, Storage::S(vec!["TUESDAY".into()]));
    }

    #[test]
    fn tfidf_counts_skip_grams() {
        // Bigram (7, 8) in [7, 8, 0, 7, 0, 8] with skips up to 2 (distances
        // 1..=3): positions 0-1 and 3-5 match, 0-5 is too far: 2. Unigram 7: 2.
        let x = Tensor::from_i64(DType::I64, vec![6], vec![7, 8, 0, 7, 0, 8]);
        let y = run(
            Op::TfIdfVectorizer,
            &[
                ("min_gram_length", Attr::Int(1)),
                ("max_gram_length", Attr::Int(2)),
                ("max_skip_count", Attr::Int(2)),
                ("mode", Attr::String("TF".into())),
                ("ngram_counts", Attr::Ints(vec![0, 1])),
                ("ngram_indexes", Attr::Ints(vec![1, 0])),
                ("pool_int64s", Attr::Ints(vec![7, 7, 8])),
            ],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(y[0].to_f64_vec().unwrap(), vec![2.0, 2.0]);
    }
}
