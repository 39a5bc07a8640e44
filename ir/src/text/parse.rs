//! The parser: tokens to a `Graph`, in one pass. Values get ids in the order
//! they are defined (inputs, then statements top to bottom).

use super::ParseError;
use super::lexer::{Tok, Token, tokenize, value_ref};
use crate::data::{FileOrigin, MappedFile, Payload, TensorData, map_file};
use crate::{Attr, Attrs, Bytes, DType, Dim, Graph, Node, Op, Shape, TensorType, ValueId};
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

type PResult<T> = Result<T, ParseError>;

/// Parses a graph whose constants are all inline; `file(...)` constants
/// need [`parse_with`] and a base directory.
pub fn parse(src: &str) -> PResult<Graph> {
    parse_with(src, None)
}

/// Parses a graph, resolving `file("path", ...)` constants relative to
/// `base_dir` (paths must be relative and stay inside it).
pub fn parse_with(src: &str, base_dir: Option<&Path>) -> PResult<Graph> {
    let toks = tokenize(src)?;
    // Names defined anywhere (`%x:` only appears at a definition), so that a
    // use before definition can be told apart from a missing definition.
    let defined_later = toks
        .windows(2)
        .filter_map(|w| match (&w[0].tok, &w[1].tok) {
            (Tok::Value(n), Tok::Punct(':')) => Some(n.clone()),
            _ => None,
        })
        .collect();
    let mut p = Parser {
        toks,
        pos: 0,
        base: base_dir,
        g: Graph::default(),
        ids: HashMap::new(),
        defined_later,
        files: HashMap::new(),
    };
    p.graph()?;
    Ok(p.g)
}

/// Where a token was, for errors reported after it was consumed.
#[derive(Clone, Copy)]
struct Pos {
    line: usize,
    col: usize,
}

impl Pos {
    fn err(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            col: self.col,
            message: message.into(),
        }
    }
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    base: Option<&'a Path>,
    g: Graph,
    ids: HashMap<String, ValueId>,
    defined_later: HashSet<String>,
    files: HashMap<PathBuf, Arc<MappedFile>>,
}

/// A result slot of a statement, defined only once its operands are read.
type Result1 = Option<(String, TensorType, Pos)>;

enum Elem {
    Int(i64),
    Float(f32),
    Str(String),
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        let i = (self.pos + k).min(self.toks.len().saturating_sub(1));
        self.toks.get(i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn here(&self) -> Pos {
        let i = self.pos.min(self.toks.len().saturating_sub(1));
        self.toks.get(i).map_or(Pos { line: 1, col: 1 }, |t| Pos {
            line: t.line,
            col: t.col,
        })
    }

    /// Takes the current token (moved out, not cloned: hex payloads can be
    /// hundreds of megabytes). The final `Eof` is never consumed.
    fn bump(&mut self) -> Tok {
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
            self.toks
                .get_mut(self.pos - 1)
                .map_or(Tok::Eof, |t| std::mem::replace(&mut t.tok, Tok::Eof))
        } else {
            Tok::Eof
        }
    }

    fn unexpected(&self, wanted: &str) -> ParseError {
        self.here().err(format!(
            "expected {wanted}, found {}",
            self.peek().describe()
        ))
    }

    fn is_punct(&self, c: char) -> bool {
        *self.peek() == Tok::Punct(c)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.is_punct(c);
        if yes {
            self.bump();
        }
        yes
    }

    fn expect_punct(&mut self, c: char) -> PResult<()> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{c}`")))
        }
    }

    fn is_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(w) if w == word)
    }

    fn expect_ident(&mut self, word: &str) -> PResult<()> {
        if self.is_ident(word) {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{word}`")))
        }
    }

    fn expect_str(&mut self) -> PResult<String> {
        match self.peek() {
            Tok::Str(_) => match self.bump() {
                Tok::Str(s) => Ok(s),
                _ => Err(self.unexpected("a string")),
            },
            _ => Err(self.unexpected("a string")),
        }
    }

    fn expect_value(&mut self) -> PResult<(String, Pos)> {
        let at = self.here();
        match self.peek() {
            Tok::Value(_) => match self.bump() {
                Tok::Value(s) => Ok((s, at)),
                _ => Err(self.unexpected("a value name")),
            },
            _ => Err(self.unexpected("a value name")),
        }
    }

    fn expect_uint(&mut self, what: &str) -> PResult<u64> {
        let at = self.here();
        match self.bump() {
            Tok::Int(s) => s
                .parse::<u64>()
                .map_err(|_| at.err(format!("{what} `{s}` is not a non-negative 64-bit integer"))),
            t => Err(at.err(format!("expected {what}, found {}", t.describe()))),
        }
    }

    /// `(item {"," item})` up to `close`, which is consumed.
    fn comma_list(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> PResult<()>,
    ) -> PResult<()> {
        if self.eat_punct(close) {
            return Ok(());
        }
        loop {
            item(self)?;
            if self.eat_punct(close) {
                return Ok(());
            }
            if !self.eat_punct(',') {
                return Err(self.unexpected(&format!("`,` or `{close}`")));
            }
        }
    }

    fn graph(&mut self) -> PResult<()> {
        self.expect_ident("graph")?;
        self.g.name = self.expect_str()?;
        self.expect_punct('(')?;
        self.comma_list(')', |p| {
            let (name, at) = p.expect_value()?;
            p.expect_punct(':')?;
            let ty = p.ty()?;
            let id = p.define(name, ty, at)?;
            p.g.inputs.push(id);
            Ok(())
        })?;
        if self.is_ident("bounds") {
            self.bump();
            self.expect_punct('(')?;
            self.comma_list(')', |p| {
                let at = p.here();
                let name = match p.bump() {
                    Tok::Ident(s) | Tok::Str(s) => s,
                    t => {
                        return Err(
                            at.err(format!("expected a dimension name, found {}", t.describe()))
                        );
                    }
                };
                p.expect_punct('=')?;
                let b = p.expect_uint("a dimension bound")?;
                if p.g.dim_bounds.insert(name.clone(), b).is_some() {
                    return Err(at.err(format!("dimension `{name}` is bounded twice")));
                }
                Ok(())
            })?;
        }
        self.expect_punct('{')?;
        while !self.is_ident("return") {
            if *self.peek() == Tok::Eof {
                return Err(self.unexpected("a statement or `return`"));
            }
            self.stmt()?;
        }
        self.bump();
        if matches!(self.peek(), Tok::Value(_)) {
            loop {
                let (name, at) = self.expect_value()?;
                let id = self.use_value(&name, at)?;
                self.g.outputs.push(id);
                if !self.eat_punct(',') {
                    break;
                }
            }
        }
        self.expect_punct('}')?;
        if *self.peek() != Tok::Eof {
            return Err(self.unexpected("the end of the text after the graph"));
        }
        Ok(())
    }

    fn define(&mut self, name: String, ty: TensorType, at: Pos) -> PResult<ValueId> {
        if self.ids.contains_key(&name) {
            return Err(at.err(format!("{} is defined more than once", value_ref(&name))));
        }
        let id = self.g.add_value(name.clone(), ty);
        self.ids.insert(name, id);
        Ok(id)
    }

    fn use_value(&self, name: &str, at: Pos) -> PResult<ValueId> {
        match self.ids.get(name) {
            Some(&id) => Ok(id),
            None if self.defined_later.contains(name) => {
                Err(at.err(format!("{} is used before it is defined", value_ref(name))))
            }
            None => Err(at.err(format!("{} is never defined", value_ref(name)))),
        }
    }

    fn stmt(&mut self) -> PResult<()> {
        let mut results: Vec<Result1> = Vec::new();
        if matches!(self.peek(), Tok::Value(_)) || self.is_ident("_") {
            loop {
                if self.is_ident("_") {
                    self.bump();
                    results.push(None);
                } else {
                    let (name, at) = self.expect_value()?;
                    self.expect_punct(':')?;
                    results.push(Some((name, self.ty()?, at)));
                }
                if !self.eat_punct(',') {
                    break;
                }
            }
            self.expect_punct('=')?;
        }
        if self.is_ident("const") {
            let at = self.here();
            self.bump();
            return match results.pop() {
                Some(Some((name, ty, vat))) if results.is_empty() => {
                    let what = format!("constant {}", value_ref(&name));
                    let shape = static_shape(&ty, vat, &what)?;
                    let data = self.payload(ty.dtype, shape, &what)?;
                    let id = self.define(name, ty, vat)?;
                    self.g.consts.insert(id, data);
                    Ok(())
                }
                _ => Err(at.err("`const` defines exactly one named value")),
            };
        }
        let at = self.here();
        let op = match self.bump() {
            Tok::Ident(name) => name
                .parse::<Op>()
                .map_err(|_| at.err(format!("unknown op `{name}`")))?,
            t => return Err(at.err(format!("expected an op name, found {}", t.describe()))),
        };
        self.expect_punct('(')?;
        let mut inputs = Vec::new();
        self.comma_list(')', |p| {
            if p.is_ident("_") {
                p.bump();
                inputs.push(None);
            } else {
                let (name, at) = p.expect_value()?;
                inputs.push(Some(p.use_value(&name, at)?));
            }
            Ok(())
        })?;
        let mut attrs = Attrs::new();
        if self.eat_punct('{') {
            self.comma_list('}', |p| {
                let at = p.here();
                let key = match p.bump() {
                    Tok::Ident(s) | Tok::Str(s) => s,
                    t => {
                        return Err(at.err(format!(
                            "expected an attribute name, found {}",
                            t.describe()
                        )));
                    }
                };
                p.expect_punct('=')?;
                let v = p.attr_value(&key)?;
                if attrs.insert(key.clone(), v).is_some() {
                    return Err(at.err(format!("attribute `{key}` is given twice")));
                }
                Ok(())
            })?;
        }
        let mut name = String::new();
        if self.is_ident("name") && *self.peek_at(1) == Tok::Punct('=') {
            self.bump();
            self.bump();
            name = self.expect_str()?;
        }
        let mut outputs = Vec::with_capacity(results.len());
        for r in results {
            outputs.push(match r {
                Some((n, ty, at)) => Some(self.define(n, ty, at)?),
                None => None,
            });
        }
        self.g.add_node(Node {
            op,
            name,
            inputs,
            outputs,
            attrs,
        });
        Ok(())
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let at = self.here();
        let dtype = match self.bump() {
            Tok::Ident(d) => d
                .parse::<DType>()
                .map_err(|_| at.err(format!("unknown dtype `{d}`")))?,
            t => return Err(at.err(format!("expected a dtype, found {}", t.describe()))),
        };
        self.expect_punct('[')?;
        if self.eat_punct('*') {
            self.expect_punct(']')?;
            return Ok(TensorType::new(dtype, Shape::unknown()));
        }
        let mut dims = Vec::new();
        self.comma_list(']', |p| {
            let at = p.here();
            dims.push(match p.bump() {
                Tok::Int(s) => Dim::Static(
                    s.parse::<u64>()
                        .map_err(|_| at.err(format!("bad dimension `{s}`")))?,
                ),
                Tok::Punct('?') => Dim::Unknown,
                Tok::Ident(s) | Tok::Str(s) => Dim::Sym(s),
                t => return Err(at.err(format!("expected a dimension, found {}", t.describe()))),
            });
            Ok(())
        })?;
        Ok(TensorType::new(dtype, Shape(Some(dims))))
    }

    fn attr_value(&mut self, key: &str) -> PResult<Attr> {
        let at = self.here();
        match self.peek().clone() {
            Tok::Ident(w) if matches!(w.as_str(), "ints" | "floats" | "strings") => {
                self.bump();
                self.expect_punct('[')?;
                let elems = self.elems()?;
                typed_list(&w, elems, at, key)
            }
            Tok::Ident(_) if float_word(self.peek()).is_some() => {
                let f = float_word(self.peek()).unwrap_or(f32::NAN);
                self.bump();
                Ok(Attr::Float(f))
            }
            Tok::Ident(w) if w.parse::<DType>().is_err() => Err(at.err(format!(
                "attribute `{key}`: expected a value (number, string, list or typed tensor), found `{w}`"
            ))),
            Tok::Ident(_) => {
                let ty = self.ty()?;
                let what = format!("attribute `{key}`");
                let shape = static_shape(&ty, at, &what)?;
                Ok(Attr::Tensor(self.payload(ty.dtype, shape, &what)?))
            }
            Tok::Punct('[') => {
                self.bump();
                let elems = self.elems()?;
                let kind = match elems.first() {
                    None => {
                        return Err(at.err(format!(
                            "attribute `{key}`: an empty list must say its kind: ints[], floats[] or strings[]"
                        )));
                    }
                    Some(Elem::Int(_)) => "ints",
                    Some(Elem::Float(_)) => "floats",
                    Some(Elem::Str(_)) => "strings",
                };
                if kind != "floats" && elems.iter().any(|e| matches!(e, Elem::Float(_))) {
                    return Err(at.err(format!("attribute `{key}`: list mixes ints and floats")));
                }
                typed_list(kind, elems, at, key)
            }
            _ => match self.elem()? {
                Elem::Int(i) => Ok(Attr::Int(i)),
                Elem::Float(f) => Ok(Attr::Float(f)),
                Elem::Str(s) => Ok(Attr::String(s)),
            },
        }
    }

    /// List elements after the `[`, through the `]`.
    fn elems(&mut self) -> PResult<Vec<Elem>> {
        let mut v = Vec::new();
        self.comma_list(']', |p| {
            v.push(p.elem()?);
            Ok(())
        })?;
        Ok(v)
    }

    fn elem(&mut self) -> PResult<Elem> {
        let at = self.here();
        if let Some(f) = float_word(self.peek()) {
            self.bump();
            return Ok(Elem::Float(f));
        }
        match self.bump() {
            Tok::Int(s) => s
                .parse::<i64>()
                .map(Elem::Int)
                .map_err(|_| at.err(format!("integer `{s}` does not fit in 64 bits"))),
            Tok::Float(s) => s
                .parse::<f32>()
                .map(Elem::Float)
                .map_err(|_| at.err(format!("bad float `{s}`"))),
            Tok::Str(s) => Ok(Elem::Str(s)),
            t => Err(at.err(format!(
                "expected an attribute value, found {}",
                t.describe()
            ))),
        }
    }

    fn payload(&mut self, dtype: DType, shape: Vec<usize>, what: &str) -> PResult<TensorData> {
        let at = self.here();
        let n: usize = shape.iter().product();
        let payload = match self.bump() {
            Tok::Ident(w) if w == "hex" => {
                let hex_at = self.here();
                let hex = self.expect_str()?;
                let Some(expected) = dtype.storage_bytes(n) else {
                    return Err(at.err(format!("{what}: a {dtype} tensor takes a list, not hex")));
                };
                if hex.len() != expected.saturating_mul(2) {
                    return Err(hex_at.err(format!(
                        "{what}: {dtype}{shape:?} needs {expected} bytes but the hex has {} digits",
                        hex.len()
                    )));
                }
                Payload::Raw(Bytes::from_vec(decode_hex(&hex).ok_or_else(|| {
                    hex_at.err(format!(
                        "{what}: the hex has a character that is not a hex digit"
                    ))
                })?))
            }
            Tok::Punct('[') => {
                if dtype != DType::String {
                    return Err(at.err(format!(
                        "{what}: a list of strings is only for string tensors, {dtype} takes hex"
                    )));
                }
                let mut v = Vec::new();
                self.comma_list(']', |p| {
                    v.push(p.expect_str()?);
                    Ok(())
                })?;
                Payload::Strings(Arc::new(v))
            }
            Tok::Ident(w) if w == "file" => {
                if dtype == DType::String {
                    return Err(at.err(format!("{what}: a string tensor takes a list, not a file")));
                }
                Payload::Raw(self.file(what, at)?)
            }
            Tok::Ident(w) if w == "elided" => {
                self.expect_punct('(')?;
                let len = self.expect_uint("a byte count")?;
                return Err(at.err(format!(
                    "{what} was elided when printed ({len} bytes) and cannot be read back; print it without an inline limit"
                )));
            }
            t => {
                return Err(at.err(format!(
                    "{what}: expected a payload (hex\"..\", [strings], file(..)), found {}",
                    t.describe()
                )));
            }
        };
        TensorData::new(dtype, shape, payload).map_err(|e| at.err(format!("{what}: {e}")))
    }

    /// `file("path", offset=N, len=N)` after the `file`: a window into a
    /// memory-mapped file under the base directory.
    fn file(&mut self, what: &str, at: Pos) -> PResult<Bytes> {
        self.expect_punct('(')?;
        let path = self.expect_str()?;
        self.expect_punct(',')?;
        self.expect_ident("offset")?;
        self.expect_punct('=')?;
        let offset = self.expect_uint("an offset")?;
        self.expect_punct(',')?;
        self.expect_ident("len")?;
        self.expect_punct('=')?;
        let len = self.expect_uint("a length")?;
        self.expect_punct(')')?;
        let Some(base) = self.base else {
            return Err(at.err(format!(
                "{what} is stored in file \"{path}\" but no base directory was given to resolve it"
            )));
        };
        let rel = PathBuf::from(&path);
        let inside = !path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(at.err(format!(
                "{what}: file path \"{path}\" must be relative and stay inside the base directory"
            )));
        }
        let owner = match self.files.get(&rel) {
            Some(m) => m.clone(),
            None => {
                let full = base.join(&rel);
                let cannot =
                    |e: std::io::Error| at.err(format!("{what}: cannot open \"{path}\": {e}"));
                // A symlink must not lead out of the folder either.
                let (cb, cf) = (
                    base.canonicalize().map_err(cannot)?,
                    full.canonicalize().map_err(cannot)?,
                );
                if !cf.starts_with(&cb) {
                    return Err(at.err(format!(
                        "{what}: file \"{path}\" resolves outside the base directory"
                    )));
                }
                let m = map_file(&cf).map_err(cannot)?;
                self.files.insert(rel.clone(), m.clone());
                m
            }
        };
        let size = owner.0.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                at.err(format!(
                    "{what}: bytes {offset}..{offset}+{len} lie outside \"{path}\" ({size} bytes)"
                ))
            })?;
        let range =
            usize::try_from(offset).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(0);
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = owner;
        Bytes::slice_of(owner, range, Some(FileOrigin { path: rel, offset }))
            .ok_or_else(|| at.err(format!("{what}: byte range does not fit in memory")))
    }
}

/// `nan` and `inf` read as floats where a value is expected.
fn float_word(t: &Tok) -> Option<f32> {
    match t {
        Tok::Ident(w) if w == "nan" => Some(f32::NAN),
        Tok::Ident(w) if w == "inf" => Some(f32::INFINITY),
        _ => None,
    }
}

fn typed_list(kind: &str, elems: Vec<Elem>, at: Pos, key: &str) -> PResult<Attr> {
    let wrong = || {
        at.err(format!(
            "attribute `{key}`: every element of {kind}[...] must be of that kind"
        ))
    };
    Ok(match kind {
        "ints" => Attr::Ints(
            elems
                .into_iter()
                .map(|e| if let Elem::Int(i) = e { Some(i) } else { None })
                .collect::<Option<_>>()
                .ok_or_else(wrong)?,
        ),
        "floats" => Attr::Floats(
            elems
                .into_iter()
                .map(|e| match e {
                    Elem::Float(f) => Some(f),
                    Elem::Int(i) => Some(i as f32),
                    Elem::Str(_) => None,
                })
                .collect::<Option<_>>()
                .ok_or_else(wrong)?,
        ),
        _ => Attr::Strings(
            elems
                .into_iter()
                .map(|e| if let Elem::Str(s) = e { Some(s) } else { None })
                .collect::<Option<_>>()
                .ok_or_else(wrong)?,
        ),
    })
}

/// The concrete shape of a constant's type, which must be fully static.
fn static_shape(ty: &TensorType, at: Pos, what: &str) -> PResult<Vec<usize>> {
    let dims = ty
        .shape
        .as_static()
        .ok_or_else(|| at.err(format!("{what}: a constant's type must have static dims")))?;
    if crate::shape::checked_numel(&dims).is_none() {
        return Err(at.err(format!("{what}: shape {dims:?} has too many elements")));
    }
    Ok(dims)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect()
}
