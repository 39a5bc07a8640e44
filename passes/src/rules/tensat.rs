//! Graph substitutions in the style of TASO / Tensat: merging parallel
//! MatMuls and Convs that read the same tensor (weights concatenated, the
//! result split), enlarging conv kernels so that siblings with different
//! kernels can merge, pushing Concat through element-wise ops and
//! BatchNormalization towards the ops that produce its inputs, Split/Concat
//! cancellation, MatMul distributivity and the transpose of a MatMul.
//!
//! Producers are plain `Conv`/`MatMul` and, since the pass runs after
//! `fuse` in the default pipeline (so the cost model sees fused epilogues
//! when it weighs a merge), `FusedConv`/`FusedMatMul` without a residual:
//! their bias and activation are per output channel, so they split too.
//!
//! The parallel-merge rules have a variable number of operands, which
//! egg patterns cannot express, so they match every class holding one op
//! (`OpSearch`) and read the nodes themselves. New weights are computed as
//! constants here (weights are larger than the analysis folds); operands
//! that are not constants are joined with a `Concat` node instead.
//!
//! Merges that end in a `Split` make the merged op shared by several
//! classes. egg's greedy extractor prices every class as a tree, so each
//! sibling pays for the whole merged op and the split; it only picks the
//! merge where the siblings end in one `Concat` (`concat-convs`,
//! `concat-matmuls`), and a DAG-aware (ILP) extractor is needed for the rest.

use super::{Rule, same_static_type, ty_of};
use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::{AttrKey, TNode};
use egg::{Applier, Id, PatternAst, SearchMatches, Searcher, Subst, Symbol, Var, rewrite as rw};
use smelt_ir::{Attr, Attrs, Bytes, Dim, Op, Payload, TensorData};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Matches every class that holds a node of one of the ops, of any arity.
pub struct OpSearch(pub &'static [Op]);

impl Searcher<TNode, TensorAnalysis> for OpSearch {
    fn search_eclass_with_limit(
        &self,
        eg: &TEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TNode>> {
        let hit = limit > 0
            && eg[eclass]
                .nodes
                .iter()
                .any(|n| matches!(n, TNode::Op { op, .. } if self.0.contains(op)));
        hit.then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// Static dims of a class's single type.
fn dims(eg: &TEGraph, id: Id) -> Option<Vec<usize>> {
    let t = eg[id].data.ty()?;
    t.shape
        .dims()?
        .iter()
        .map(|d| match d {
            Dim::Static(n) => usize::try_from(*n).ok(),
            _ => None,
        })
        .collect()
}

fn const_of(eg: &TEGraph, id: Id) -> Option<&TensorData> {
    eg[id].nodes.iter().find_map(|n| match n {
        TNode::Const(ix) => eg.analysis.consts.get(*ix as usize),
        _ => None,
    })
}

/// Constants this rule set already computed, by how they were made (source
/// constant indices and storage, operation), so a rule applied again in a
/// later iteration reuses the constant instead of growing the e-graph.
#[derive(Default)]
pub struct ConstCache(Mutex<HashMap<CacheKey, u32>>);

/// Source constants (index, storage address) and how they were combined.
type CacheKey = (Vec<(u32, usize)>, String);

impl ConstCache {
    /// The class of the constant made by `make` from the constants in
    /// `srcs`, computed once.
    fn get(
        &self,
        eg: &mut TEGraph,
        srcs: &[Id],
        how: String,
        make: impl FnOnce(&[&TensorData]) -> Option<TensorData>,
    ) -> Option<Id> {
        let mut key = Vec::with_capacity(srcs.len());
        let mut datas = Vec::with_capacity(srcs.len());
        for &s in srcs {
            let (ix, d) = eg[s].nodes.iter().find_map(|n| match n {
                TNode::Const(ix) => Some((*ix, eg.analysis.consts.get(*ix as usize)?)),
                _ => None,
            })?;
            let ptr = match &d.payload {
                Payload::Raw(b) => b.as_ref().as_ptr() as usize,
                Payload::Strings(v) => Arc::as_ptr(v) as usize,
            };
            key.push((ix, ptr));
            datas.push(d);
        }
        let key = (key, how);
        let cached = self.0.lock().ok()?.get(&key).copied();
        if let Some(ix) = cached
            && eg.analysis.consts.get(ix as usize).is_some()
        {
            return Some(eg.add(TNode::Const(ix)));
        }
        let d = make(&datas)?;
        let ix = eg.analysis.add_const(d);
        self.0.lock().ok()?.insert(key, ix);
        Some(eg.add(TNode::Const(ix)))
    }
}

fn add_attrs(eg: &mut TEGraph, a: Attrs) -> Id {
    eg.add(TNode::Attrs(AttrKey::new(a)))
}

fn int_attr(name: &str, v: i64) -> Attrs {
    let mut a = Attrs::new();
    a.insert(name.into(), Attr::Int(v));
    a
}

/// Concatenates constants along `axis` by copying their little-endian
/// bytes (no decoding, so any whole-byte dtype works).
pub fn concat_data(parts: &[&TensorData], axis: usize) -> Option<TensorData> {
    let first = parts.first()?;
    let bits = first.dtype.bits();
    if bits == 0 || !bits.is_multiple_of(8) || axis >= first.shape.len() {
        return None;
    }
    let esize = (bits / 8) as usize;
    let mut raws = Vec::with_capacity(parts.len());
    let mut total = 0;
    for p in parts {
        let same_rest = p.dtype == first.dtype
            && p.shape.len() == first.shape.len()
            && p.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !same_rest {
            return None;
        }
        let Payload::Raw(b) = &p.payload else {
            return None;
        };
        raws.push(b.as_ref());
        total += p.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product::<usize>() * esize;
    let mut out = Vec::with_capacity(raws.iter().map(|r| r.len()).sum());
    for o in 0..outer {
        for (p, r) in parts.iter().zip(&raws) {
            let chunk = p.shape[axis] * inner;
            out.extend_from_slice(r.get(o * chunk..(o + 1) * chunk)?);
        }
    }
    let mut shape = first.shape.clone();
    shape[axis] = total;
    TensorData::new(first.dtype, shape, Payload::Raw(Bytes::from_vec(out))).ok()
}

/// Zero-pads a conv weight `[M, C, k...]` to kernel `target`, centred.
/// All-zero bytes are +0 in every float format.
pub fn enlarge_kernel(w: &TensorData, target: &[usize]) -> Option<TensorData> {
    let bits = w.dtype.bits();
    if bits == 0 || !bits.is_multiple_of(8) || w.shape.len() != target.len() + 2 {
        return None;
    }
    let esize = (bits / 8) as usize;
    let k = &w.shape[2..];
    if k.iter().zip(target).any(|(a, b)| a > b || (b - a) % 2 != 0) {
        return None;
    }
    let Payload::Raw(raw) = &w.payload else {
        return None;
    };
    let raw = raw.as_ref();
    let mc = w.shape[0] * w.shape[1];
    let old_n: usize = k.iter().product();
    let new_n: usize = target.iter().product();
    let mut out = vec![0u8; mc * new_n * esize];
    let off: Vec<usize> = k.iter().zip(target).map(|(a, b)| (b - a) / 2).collect();
    let mut idx = vec![0usize; k.len()];
    for j in 0..old_n {
        // Position of kernel element j in the old and the new kernel.
        let mut r = j;
        for d in (0..k.len()).rev() {
            idx[d] = r % k[d];
            r /= k[d];
        }
        let mut nj = 0;
        for d in 0..k.len() {
            nj = nj * target[d] + idx[d] + off[d];
        }
        for p in 0..mc {
            let src = (p * old_n + j) * esize;
            let dst = (p * new_n + nj) * esize;
            out.get_mut(dst..dst + esize)?
                .copy_from_slice(raw.get(src..src + esize)?);
        }
    }
    let mut shape = w.shape.clone();
    shape[2..].copy_from_slice(target);
    TensorData::new(w.dtype, shape, Payload::Raw(Bytes::from_vec(out))).ok()
}

/// `ids` joined along `axis`: a new constant when all are constants,
/// otherwise a `Concat` node.
fn concat_ids(eg: &mut TEGraph, cache: &ConstCache, ids: &[Id], axis: usize) -> Option<Id> {
    if ids.iter().all(|i| const_of(eg, *i).is_some()) {
        return cache.get(eg, ids, format!("concat{axis}"), |c| concat_data(c, axis));
    }
    let a = add_attrs(eg, int_attr("axis", axis as i64));
    let id = eg.add(TNode::op(Op::Concat, a, ids));
    eg[id].data.ty().is_some().then_some(id)
}

/// Joins `new` with `class` if their types agree (a rule never joins
/// classes of different types).
fn join(eg: &mut TEGraph, class: Id, new: Id, rule: Symbol) -> bool {
    let ok = match (eg[new].data.ty(), eg[class].data.ty()) {
        (Some(n), Some(o)) => n.dtype == o.dtype && smelt_ir::infer::merge(o, n).is_ok(),
        _ => false,
    };
    ok && eg.union_trusted(class, new, rule)
}

fn attr_key(eg: &TEGraph, id: Id) -> Option<&AttrKey> {
    eg[id].data.attrs.as_ref()
}

fn ints(a: &Attrs, k: &str) -> Option<Vec<i64>> {
    match a.get(k) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        None => None,
        Some(_) => Some(vec![-1]),
    }
}

/// Conv attributes the merge and enlargement rules can handle: one group,
/// explicit padding.
fn plain_conv_attrs(a: &Attrs) -> bool {
    let group_one = matches!(a.get("group"), None | Some(Attr::Int(1)));
    let explicit = match a.get("auto_pad") {
        None => true,
        Some(Attr::String(s)) => s == "NOTSET",
        Some(_) => false,
    };
    group_one && explicit
}

/// A producer node of a merge: op, attribute class, shared input, weight,
/// optional bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Producer {
    class: Id,
    attrs: Id,
    x: Id,
    w: Id,
    b: Option<Id>,
    op: Op,
}

/// Plain-op producers held by `class`: `Conv(x, w[, b])` or `MatMul(x, w)`
/// with a 2-D `w`.
fn producers(eg: &TEGraph, class: Id, op: Op) -> Vec<Producer> {
    let class = eg.find(class);
    let fused = if op == Op::Conv {
        Op::FusedConv
    } else {
        Op::FusedMatMul
    };
    let absent = |i: &Id| super::is_absent(eg, *i);
    let mut v = Vec::new();
    for n in &eg[class].nodes {
        let TNode::Op {
            op: o,
            nout: 1,
            args,
        } = n
        else {
            continue;
        };
        // Fused producers without a residual: their epilogue (bias, an
        // element-wise activation) is per output channel, so it splits.
        let (attrs, x, w, b) = match args.as_slice() {
            [a, x, w] if *o == op => (*a, *x, *w, None),
            [a, x, w, b] if *o == op && op == Op::Conv => (*a, *x, *w, Some(*b)),
            [a, x, w, b, r] if *o == fused && absent(r) => (*a, *x, *w, Some(*b)),
            _ => continue,
        };
        let b = b.filter(|b| !absent(b)).map(|b| eg.find(b));
        let Some(wd) = dims(eg, w) else { continue };
        let ok = match op {
            Op::Conv => {
                wd.len() >= 3 && attr_key(eg, attrs).is_some_and(|k| plain_conv_attrs(k.attrs()))
            }
            _ => {
                wd.len() == 2
                    && dims(eg, x).is_some_and(|d| !d.is_empty())
                    && b.is_none_or(|b| dims(eg, b).as_deref() == Some(&wd[1..]))
            }
        };
        if ok {
            v.push(Producer {
                class,
                attrs: eg.find(attrs),
                x: eg.find(x),
                w: eg.find(w),
                b,
                op: *o,
            });
        }
    }
    v
}

/// The inputs of `op` on `x`, `w` and an optional bias.
fn producer_args(eg: &mut TEGraph, op: Op, x: Id, w: Id, b: Option<Id>) -> Vec<Id> {
    let mut ins = vec![x, w];
    if matches!(op, Op::FusedConv | Op::FusedMatMul) {
        let absent = eg.add(TNode::Absent);
        ins.push(b.unwrap_or(absent));
        ins.push(absent);
    } else {
        ins.extend(b);
    }
    ins
}

/// Weight dims that must agree for two producers to merge (all but the
/// output-channel dim), plus dtype and whether there is a bias.
fn merge_key(eg: &TEGraph, op: Op, p: &Producer) -> Option<(Id, Id, Vec<usize>, String, bool)> {
    let wd = dims(eg, p.w)?;
    let dt = format!("{}:{}", p.op, eg[p.w].data.ty()?.dtype);
    let rest = if op == Op::Conv {
        wd[1..].to_vec()
    } else {
        wd[..1].to_vec()
    };
    Some((p.x, p.attrs, rest, dt, p.b.is_some()))
}

/// Whether `class` already feeds a Split (it is itself a merge result; not
/// merging it again keeps the e-graph from growing without bound).
fn feeds_split(eg: &TEGraph, class: Id) -> bool {
    eg[class].parents().any(|p| {
        eg[eg.find(p)].nodes.iter().any(|n| {
            matches!(n, TNode::Op { op: Op::Split, args, .. }
                if args.get(1).is_some_and(|a| eg.find(*a) == class))
        })
    })
}

/// Whether `class` is (also) a Concat: the result of an earlier merge.
fn is_concat(eg: &TEGraph, class: Id) -> bool {
    eg[class]
        .nodes
        .iter()
        .any(|n| matches!(n, TNode::Op { op: Op::Concat, .. }))
}

/// Groups of sibling producers (same input, attributes and weight shape
/// apart from the output dim), one producer per class, classes sorted.
fn sibling_groups(eg: &TEGraph, x: Id, op: Op) -> Vec<Vec<Producer>> {
    let mut all: Vec<Producer> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in eg[x].parents() {
        let p = eg.find(p);
        if !seen.insert(p) || feeds_split(eg, p) || is_concat(eg, p) {
            continue;
        }
        all.extend(producers(eg, p, op).into_iter().filter(|q| q.x == x));
    }
    let mut keyed: std::collections::BTreeMap<_, Vec<Producer>> = Default::default();
    for p in all {
        if let Some(k) = merge_key(eg, op, &p) {
            let g = keyed.entry(k).or_default();
            if !g.iter().any(|q| q.class == p.class) {
                g.push(p);
            }
        }
    }
    keyed
        .into_values()
        .filter(|g| g.len() >= 2)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect()
}

/// `merge-parallel-convs` / `merge-parallel-matmuls`: siblings reading the
/// same input become one op on concatenated weights whose result is split
/// along the output-channel (Conv) or last (MatMul) axis.
pub struct MergeParallel {
    pub op: Op,
    pub cache: ConstCache,
}

impl Applier<TNode, TensorAnalysis> for MergeParallel {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        _: &Subst,
        _: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let eclass = eg.find(eclass);
        let xs: Vec<Id> = producers(eg, eclass, self.op).iter().map(|p| p.x).collect();
        let mut changed = vec![];
        for x in xs {
            for g in sibling_groups(eg, x, self.op) {
                // Each group is merged once: when its first class is matched.
                if g[0].class != eclass {
                    continue;
                }
                changed.extend(merge_group(eg, &self.cache, self.op, &g, rule));
            }
        }
        changed
    }
}

fn merge_group(
    eg: &mut TEGraph,
    cache: &ConstCache,
    op: Op,
    g: &[Producer],
    rule: Symbol,
) -> Vec<Id> {
    let Some(wd) = dims(eg, g[0].w) else {
        return vec![];
    };
    let w_axis = if op == Op::Conv { 0 } else { wd.len() - 1 };
    let ws: Vec<Id> = g.iter().map(|p| p.w).collect();
    let Some(w) = concat_ids(eg, cache, &ws, w_axis) else {
        return vec![];
    };
    let mut b = None;
    if g[0].b.is_some() {
        let bs: Vec<Id> = g.iter().filter_map(|p| p.b).collect();
        let Some(id) = concat_ids(eg, cache, &bs, 0) else {
            return vec![];
        };
        b = Some(id);
    }
    let ins = producer_args(eg, g[0].op, g[0].x, w, b);
    let merged = eg.add(TNode::op(g[0].op, g[0].attrs, &ins));
    let Some(out_rank) = eg[merged].data.ty().and_then(|t| t.shape.rank()) else {
        return vec![];
    };
    let axis = if op == Op::Conv { 1 } else { out_rank - 1 };
    let mut sizes = Vec::with_capacity(g.len());
    for p in g {
        match dims(eg, p.class).and_then(|d| d.get(axis).copied()) {
            Some(n) => sizes.push(n as i64),
            None => return vec![],
        }
    }
    let how = format!("split{sizes:?}");
    let Some(split) = cache.get(eg, &[], how, |_| {
        let bytes = sizes.iter().flat_map(|s| s.to_le_bytes()).collect();
        TensorData::new(
            smelt_ir::DType::I64,
            vec![sizes.len()],
            Payload::Raw(Bytes::from_vec(bytes)),
        )
        .ok()
    }) else {
        return vec![];
    };
    let a = add_attrs(eg, int_attr("axis", axis as i64));
    let Ok(nout) = u8::try_from(g.len()) else {
        return vec![];
    };
    let s = eg.add(TNode::Op {
        op: Op::Split,
        nout,
        args: vec![a, merged, split],
    });
    let mut changed = vec![];
    for (i, p) in g.iter().enumerate() {
        let proj = eg.add(TNode::Proj {
            index: i as u32,
            arg: [s],
        });
        if join(eg, p.class, proj, rule) {
            changed.push(p.class);
        }
    }
    changed
}

/// `conv-enlarge-kernel`: a Conv whose sibling (same input, stride and
/// dilation 1) has a larger kernel gets an equivalent node with the
/// weight zero-padded to the larger kernel and the pads grown to match,
/// so the two can merge.
#[derive(Default)]
pub struct EnlargeKernel {
    pub cache: ConstCache,
}

fn conv_geometry(a: &Attrs, rank: usize) -> Option<(Vec<i64>, Vec<i64>)> {
    let strides = ints(a, "strides").unwrap_or_else(|| vec![1; rank]);
    let dil = ints(a, "dilations").unwrap_or_else(|| vec![1; rank]);
    let pads = ints(a, "pads").unwrap_or_else(|| vec![0; 2 * rank]);
    (dil.iter().all(|d| *d == 1) && pads.len() == 2 * rank && strides.len() == rank)
        .then_some((strides, pads))
}

impl Applier<TNode, TensorAnalysis> for EnlargeKernel {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        _: &Subst,
        _: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let eclass = eg.find(eclass);
        if feeds_split(eg, eclass) {
            return vec![];
        }
        let mut changed = vec![];
        for p in producers(eg, eclass, Op::Conv) {
            let Some(new) = enlarged(eg, &self.cache, &p) else {
                continue;
            };
            if join(eg, eclass, new, rule) {
                changed.push(eclass);
            }
        }
        changed
    }
}

fn enlarged(eg: &mut TEGraph, cache: &ConstCache, p: &Producer) -> Option<Id> {
    let wd = dims(eg, p.w)?;
    let k = wd[2..].to_vec();
    let rank = k.len();
    let attrs = attr_key(eg, p.attrs)?.attrs().clone();
    let (strides, _) = conv_geometry(&attrs, rank)?;
    // The largest kernel among siblings with the same stride and input channels.
    let mut target = k.clone();
    for q in eg[p.x].parents().collect::<Vec<_>>() {
        for s in producers(eg, q, Op::Conv) {
            if s.x != p.x {
                continue;
            }
            let Some(sd) = dims(eg, s.w) else { continue };
            let Some(sa) = attr_key(eg, s.attrs).map(|k| k.attrs().clone()) else {
                continue;
            };
            let same = sd.len() == wd.len()
                && sd[1] == wd[1]
                && conv_geometry(&sa, rank).is_some_and(|(st, _)| st == strides);
            if same {
                for (t, n) in target.iter_mut().zip(&sd[2..]) {
                    if *n > *t {
                        *t = *n;
                    }
                }
            }
        }
    }
    if target == k || target.iter().zip(&k).any(|(t, a)| (t - a) % 2 != 0) {
        return None;
    }
    let how = format!("enlarge{target:?}");
    let w = cache.get(eg, &[p.w], how, |d| enlarge_kernel(d.first()?, &target))?;
    let (_, pads) = conv_geometry(&attrs, rank)?;
    let mut new_pads = pads.clone();
    for d in 0..rank {
        let grow = ((target[d] - k[d]) / 2) as i64;
        new_pads[d] += grow;
        new_pads[d + rank] += grow;
    }
    let mut a = attrs;
    a.insert("pads".into(), Attr::Ints(new_pads));
    a.insert(
        "kernel_shape".into(),
        Attr::Ints(target.iter().map(|t| *t as i64).collect()),
    );
    let a = add_attrs(eg, a);
    let ins = producer_args(eg, p.op, p.x, w, p.b);
    Some(eg.add(TNode::op(p.op, a, &ins)))
}

/// Rules on a `Concat` node: `concat-convs` / `concat-matmuls` (siblings
/// whose results are concatenated along their output axis become one op),
/// `concat-unary` and `concat-batchnorm` (Concat moved below element-wise
/// ops and per-channel BatchNormalization, so the producers meet), and
/// `concat-split` (Concat of all a Split's outputs in order is its input).
pub struct ConcatRule {
    pub kind: ConcatKind,
    pub cache: ConstCache,
}

#[derive(Clone, Copy, Debug)]
pub enum ConcatKind {
    Producers(Op),
    Unary,
    BatchNorm,
    Split,
}

/// Unary element-wise ops a Concat commutes with.
const UNARY: &[Op] = &[Op::Relu, Op::Sigmoid, Op::Tanh, Op::Neg, Op::Abs, Op::Exp];

/// Concat nodes in `class`: normalized axis and inputs.
fn concats(eg: &TEGraph, class: Id) -> Vec<(usize, Vec<Id>)> {
    let rank = eg[class].data.ty().and_then(|t| t.shape.rank());
    let mut v = Vec::new();
    for n in &eg[class].nodes {
        let TNode::Op {
            op: Op::Concat,
            nout: 1,
            args,
        } = n
        else {
            continue;
        };
        let Some(rank) = rank else { continue };
        let axis = match attr_key(eg, args[0]).and_then(|k| k.attrs().get("axis")) {
            Some(Attr::Int(a)) => *a,
            _ => continue,
        };
        let axis = if axis < 0 { axis + rank as i64 } else { axis };
        if axis < 0 || axis as usize >= rank || args.len() < 3 {
            continue;
        }
        v.push((
            axis as usize,
            args[1..].iter().map(|a| eg.find(*a)).collect(),
        ));
    }
    v
}

/// The single-output `op` nodes of `class`, as (attrs, inputs).
fn nodes_of(eg: &TEGraph, class: Id, op: Op) -> Vec<(Id, Vec<Id>)> {
    eg[class]
        .nodes
        .iter()
        .filter_map(|n| match n {
            TNode::Op {
                op: o,
                nout: 1,
                args,
            } if *o == op => Some((
                eg.find(args[0]),
                args[1..].iter().map(|a| eg.find(*a)).collect(),
            )),
            _ => None,
        })
        .collect()
}

impl Applier<TNode, TensorAnalysis> for ConcatRule {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        _: &Subst,
        _: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let eclass = eg.find(eclass);
        let mut changed = vec![];
        for (axis, ins) in concats(eg, eclass) {
            let new = match self.kind {
                ConcatKind::Producers(op) => concat_producers(eg, &self.cache, op, axis, &ins),
                ConcatKind::Unary => concat_unary(eg, axis, &ins),
                ConcatKind::BatchNorm => concat_batchnorm(eg, &self.cache, axis, &ins),
                ConcatKind::Split => concat_split(eg, axis, &ins),
            };
            for n in new {
                if join(eg, eclass, n, rule) {
                    changed.push(eclass);
                }
            }
        }
        changed
    }
}

fn concat_producers(
    eg: &mut TEGraph,
    cache: &ConstCache,
    op: Op,
    axis: usize,
    ins: &[Id],
) -> Vec<Id> {
    let mut out = vec![];
    {
        let want_axis = match (op, eg[ins[0]].data.ty().and_then(|t| t.shape.rank())) {
            (Op::Conv, _) => 1,
            (_, Some(r)) if r >= 1 => r - 1,
            _ => return out,
        };
        if axis != want_axis {
            return out;
        }
        let firsts = producers(eg, ins[0], op);
        for f in firsts {
            let Some(key) = merge_key(eg, op, &f) else {
                continue;
            };
            let mut g = vec![f];
            for &i in &ins[1..] {
                match producers(eg, i, op)
                    .into_iter()
                    .find(|p| merge_key(eg, op, p).as_ref() == Some(&key))
                {
                    Some(p) => g.push(p),
                    None => break,
                }
            }
            if g.len() != ins.len() {
                continue;
            }
            let wd = dims(eg, f.w).unwrap_or_default();
            let w_axis = if op == Op::Conv { 0 } else { wd.len() - 1 };
            let ws: Vec<Id> = g.iter().map(|p| p.w).collect();
            let Some(w) = concat_ids(eg, cache, &ws, w_axis) else {
                continue;
            };
            let mut b = None;
            if f.b.is_some() {
                let bs: Vec<Id> = g.iter().filter_map(|p| p.b).collect();
                let Some(id) = concat_ids(eg, cache, &bs, 0) else {
                    continue;
                };
                b = Some(id);
            }
            let args = producer_args(eg, f.op, f.x, w, b);
            out.push(eg.add(TNode::op(f.op, f.attrs, &args)));
        }
    }
    out
}

fn concat_unary(eg: &mut TEGraph, axis: usize, ins: &[Id]) -> Vec<Id> {
    let mut out = vec![];
    for &op in UNARY {
        let firsts = nodes_of(eg, ins[0], op);
        for (a, _) in firsts {
            let mut xs = vec![];
            for &i in ins {
                match nodes_of(eg, i, op).into_iter().find(|(b, _)| *b == a) {
                    Some((_, x)) if x.len() == 1 => xs.push(x[0]),
                    _ => break,
                }
            }
            if xs.len() != ins.len() {
                continue;
            }
            let ca = add_attrs(eg, int_attr("axis", axis as i64));
            let c = eg.add(TNode::op(Op::Concat, ca, &xs));
            out.push(eg.add(TNode::op(op, a, &[c])));
        }
    }
    out
}

fn concat_batchnorm(eg: &mut TEGraph, cache: &ConstCache, axis: usize, ins: &[Id]) -> Vec<Id> {
    if axis != 1 {
        return vec![];
    }
    let mut out = vec![];
    let firsts = nodes_of(eg, ins[0], Op::BatchNormalization);
    for (a, _) in firsts {
        let training = matches!(
            attr_key(eg, a).and_then(|k| k.attrs().get("training_mode")),
            Some(Attr::Int(1))
        );
        if training {
            continue;
        }
        let mut cols: Vec<Vec<Id>> = vec![vec![]; 5];
        for &i in ins {
            let Some((_, x)) = nodes_of(eg, i, Op::BatchNormalization)
                .into_iter()
                .find(|(b, x)| *b == a && x.len() == 5)
            else {
                break;
            };
            for (c, v) in cols.iter_mut().zip(x) {
                c.push(v);
            }
        }
        if cols[0].len() != ins.len() {
            continue;
        }
        let ca = add_attrs(eg, int_attr("axis", 1));
        let mut args = vec![eg.add(TNode::op(Op::Concat, ca, &cols[0]))];
        for c in &cols[1..] {
            match concat_ids(eg, cache, c, 0) {
                Some(id) => args.push(id),
                None => break,
            }
        }
        if args.len() == 5 {
            out.push(eg.add(TNode::op(Op::BatchNormalization, a, &args)));
        }
    }
    out
}

/// Concat(proj0(S), ..., projN(S)) with S = Split(x) along the same axis
/// is x.
fn concat_split(eg: &mut TEGraph, axis: usize, ins: &[Id]) -> Vec<Id> {
    let mut out = vec![];
    let Some(TNode::Proj { arg, .. }) = eg[ins[0]]
        .nodes
        .iter()
        .find(|n| matches!(n, TNode::Proj { index: 0, .. }))
        .cloned()
    else {
        return out;
    };
    let s = eg.find(arg[0]);
    for n in eg[s].nodes.clone() {
        let TNode::Op {
            op: Op::Split,
            nout,
            args,
        } = n
        else {
            continue;
        };
        let rank = eg[args[1]].data.ty().and_then(|t| t.shape.rank());
        let split_axis = match attr_key(eg, args[0]).and_then(|k| k.attrs().get("axis")) {
            Some(Attr::Int(a)) => *a,
            None => 0,
            _ => continue,
        };
        let Some(rank) = rank else { continue };
        let split_axis = if split_axis < 0 {
            split_axis + rank as i64
        } else {
            split_axis
        };
        if split_axis != axis as i64 || nout as usize != ins.len() {
            continue;
        }
        let all = ins.iter().enumerate().all(|(i, c)| {
            eg.lookup(TNode::Proj {
                index: i as u32,
                arg: [s],
            })
            .is_some_and(|p| eg.find(p) == *c)
        });
        if all {
            out.push(eg.find(args[1]));
        }
    }
    out
}

/// `split-concat`: the i-th output of a Split of a Concat, where the split
/// sizes are the concatenated tensors' sizes, is the i-th tensor.
pub struct SplitConcat;

impl Applier<TNode, TensorAnalysis> for SplitConcat {
    fn apply_one(
        &self,
        eg: &mut TEGraph,
        eclass: Id,
        _: &Subst,
        _: Option<&PatternAst<TNode>>,
        rule: Symbol,
    ) -> Vec<Id> {
        let s = eg.find(eclass);
        let mut changed = vec![];
        for n in eg[s].nodes.clone() {
            let TNode::Op {
                op: Op::Split,
                nout,
                args,
            } = n
            else {
                continue;
            };
            let (Some(sizes), Some(rank)) = (
                args.get(2)
                    .and_then(|c| eg[*c].data.value.as_deref())
                    .and_then(|t| t.to_i64_vec()),
                eg[args[1]].data.ty().and_then(|t| t.shape.rank()),
            ) else {
                continue;
            };
            let axis = match attr_key(eg, args[0]).and_then(|k| k.attrs().get("axis")) {
                Some(Attr::Int(a)) if *a < 0 => (*a + rank as i64) as usize,
                Some(Attr::Int(a)) => *a as usize,
                None => 0,
                _ => continue,
            };
            for (cax, parts) in concats(eg, eg.find(args[1])) {
                let part_sizes: Option<Vec<i64>> = parts
                    .iter()
                    .map(|p| dims(eg, *p).and_then(|d| d.get(axis).map(|x| *x as i64)))
                    .collect();
                if cax != axis
                    || parts.len() != nout as usize
                    || part_sizes.as_ref() != Some(&sizes)
                {
                    continue;
                }
                for (i, p) in parts.iter().enumerate() {
                    let proj = eg.add(TNode::Proj {
                        index: i as u32,
                        arg: [s],
                    });
                    if join(eg, proj, *p, rule) {
                        changed.push(proj);
                    }
                }
            }
        }
        changed
    }
}

/// The two values have the same fully known type (so an Add of them does
/// not broadcast).
pub fn same_type(
    a: &'static str,
    b: &'static str,
) -> impl Fn(&mut TEGraph, Id, &Subst) -> bool + Send + Sync {
    move |eg, _, s| same_static_type(ty_of(eg, s, a), ty_of(eg, s, b))
}

/// Both operands are matrices and the Transpose swaps the two axes.
pub fn matrix_transpose(eg: &mut TEGraph, _: Id, s: &Subst) -> bool {
    let rank2 = |v: &str| ty_of(eg, s, v).and_then(|t| t.shape.rank()) == Some(2);
    let perm = super::attrs_of(eg, s, "?p").and_then(|a| ints(a, "perm"));
    rank2("?a") && rank2("?b") && matches!(perm.as_deref(), Some([1, 0]) | None)
}

fn op_rule(
    name: &str,
    op: &'static [Op],
    applier: impl Applier<TNode, TensorAnalysis> + Send + Sync + 'static,
) -> Rule {
    egg::Rewrite::new(name, OpSearch(op), applier).expect("op searchers bind no variables")
}

const CONVS: &[Op] = &[Op::Conv, Op::FusedConv];
const MATMULS: &[Op] = &[Op::MatMul, Op::FusedMatMul];

pub fn rules() -> Vec<Rule> {
    vec![
        op_rule(
            "merge-parallel-convs",
            CONVS,
            MergeParallel {
                op: Op::Conv,
                cache: ConstCache::default(),
            },
        ),
        op_rule(
            "merge-parallel-matmuls",
            MATMULS,
            MergeParallel {
                op: Op::MatMul,
                cache: ConstCache::default(),
            },
        ),
        op_rule("conv-enlarge-kernel", CONVS, EnlargeKernel::default()),
        op_rule(
            "concat-convs",
            &[Op::Concat],
            ConcatRule {
                kind: ConcatKind::Producers(Op::Conv),
                cache: ConstCache::default(),
            },
        ),
        op_rule(
            "concat-matmuls",
            &[Op::Concat],
            ConcatRule {
                kind: ConcatKind::Producers(Op::MatMul),
                cache: ConstCache::default(),
            },
        ),
        op_rule(
            "concat-unary",
            &[Op::Concat],
            ConcatRule {
                kind: ConcatKind::Unary,
                cache: ConstCache::default(),
            },
        ),
        op_rule(
            "concat-batchnorm",
            &[Op::Concat],
            ConcatRule {
                kind: ConcatKind::BatchNorm,
                cache: ConstCache::default(),
            },
        ),
        op_rule(
            "concat-split",
            &[Op::Concat],
            ConcatRule {
                kind: ConcatKind::Split,
                cache: ConstCache::default(),
            },
        ),
        op_rule("split-concat", &[Op::Split], SplitConcat),
        rw!("matmul-distribute-left"; "(Add ?p (MatMul ?m ?a ?b) (MatMul ?n ?a ?c))"
            => "(MatMul ?m ?a (Add ?p ?b ?c))" if same_type("?b", "?c")),
        rw!("matmul-distribute-right"; "(Add ?p (MatMul ?m ?a ?c) (MatMul ?n ?b ?c))"
            => "(MatMul ?m (Add ?p ?a ?b) ?c)" if same_type("?a", "?b")),
        rw!("transpose-matmul"; "(Transpose ?p (MatMul ?m ?a ?b))"
            => "(MatMul ?m (Transpose ?p ?b) (Transpose ?p ?a))" if matrix_transpose),
    ]
}
