use super::*;
use crate::data::{FileOrigin, Payload, TensorData};
use crate::{Attr, Attrs, Bytes, DType, Dim, Graph, Node, Op, Shape, TensorType, verify};
use std::sync::Arc;

fn t(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(Some(dims)))
}

fn s(n: u64) -> Dim {
    Dim::Static(n)
}

fn sym(n: &str) -> Dim {
    Dim::Sym(n.to_string())
}

fn raw(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> TensorData {
    TensorData::new(dtype, shape, Payload::Raw(Bytes::from_vec(bytes))).unwrap()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn node(op: Op, inputs: Vec<Option<crate::ValueId>>, outputs: Vec<Option<crate::ValueId>>) -> Node {
    Node {
        op,
        name: String::new(),
        inputs,
        outputs,
        attrs: Attrs::new(),
    }
}

/// Text -> graph -> text must be the identity on printed text.
fn assert_round_trip(g: &Graph) -> Graph {
    let text = print(g);
    let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(print(&back), text);
    back
}

fn parse_err(src: &str) -> ParseError {
    match parse(src) {
        Ok(_) => panic!("parsed but should not:\n{src}"),
        Err(e) => e,
    }
}

/// A small graph that verifies, printed in the documented syntax.
fn small() -> Graph {
    let mut g = Graph::new("main");
    let x = g.add_value("x", t(DType::F32, vec![sym("N"), s(2)]));
    let w = g.add_const("w", raw(DType::F32, vec![2], f32s(&[1.0, -2.5])));
    let y = g.add_value("y", t(DType::F32, vec![sym("N"), s(2)]));
    let z = g.add_value("out:1", t(DType::F32, vec![sym("N"), s(2)]));
    g.inputs.push(x);
    g.add_node(Node {
        name: "add0".into(),
        ..node(Op::Add, vec![Some(x), Some(w)], vec![Some(y)])
    });
    g.add_node(node(Op::Relu, vec![Some(y)], vec![Some(z)]));
    g.outputs = vec![y, z];
    g
}

const SMALL: &str = r#"graph "main"(%x: f32[N,2]) {
  %w: f32[2] = const hex"0000803f000020c0"
  %y: f32[N,2] = Add(%x, %w) name="add0"
  %"out:1": f32[N,2] = Relu(%y)
  return %y, %"out:1"
}
"#;

#[test]
fn small_graph_prints_as_documented_and_verifies_after_parse() {
    let g = small();
    verify(&g).unwrap();
    assert_eq!(print(&g), SMALL);
    let back = parse(SMALL).unwrap();
    verify(&back).unwrap();
    assert_eq!(back, g);
}

/// Every dtype as a constant, every attribute kind, odd names and dims.
fn everything() -> Graph {
    let mut g = Graph::new("weird \"graph\"\n");
    let a = g.add_value(
        "",
        t(DType::F16, vec![Dim::Unknown, sym("batch size"), sym("?")]),
    );
    let b = g.add_value("é/ü x", TensorType::new(DType::Bool, Shape::unknown()));
    let c = g.add_value("/layer1/conv/Conv_output_0", t(DType::I64, vec![]));
    let d = g.add_value(
        "123",
        t(DType::U8, vec![sym("_"), sym("nan"), sym("9x"), sym("")]),
    );
    g.inputs = vec![a, b, c, d];
    let mut consts = Vec::new();
    for (i, &dt) in DType::ALL.iter().enumerate() {
        let data = if dt == DType::String {
            let strs = vec!["a".to_string(), "b\n\"q\"\\".into(), "ü\u{0}\u{7f}".into()];
            TensorData::new(dt, vec![3], Payload::Strings(Arc::new(strs))).unwrap()
        } else {
            let n = dt.storage_bytes(3).unwrap();
            raw(
                dt,
                vec![3],
                (0..n).map(|k| (k * 37 + i * 11) as u8).collect(),
            )
        };
        consts.push(g.add_const(format!("c.{}", dt.name()), data));
    }
    let scalar = g.add_const("scalar", raw(DType::I32, vec![], vec![1, 2, 3, 4]));
    let empty = g.add_const("empty", raw(DType::F32, vec![0, 3], vec![]));
    let no_strings = g.add_const(
        "no strings",
        TensorData::new(DType::String, vec![0], Payload::Strings(Arc::new(vec![]))).unwrap(),
    );
    let o1 = g.add_value("o1", t(DType::F32, vec![s(1), sym("N")]));
    let o2 = g.add_value("o2", TensorType::new(DType::F32, Shape::unknown()));
    let mut attrs = Attrs::new();
    attrs.insert("i".into(), Attr::Int(i64::MIN));
    attrs.insert("i_max".into(), Attr::Int(i64::MAX));
    attrs.insert("f".into(), Attr::Float(1e-5));
    attrs.insert("f_int_valued".into(), Attr::Float(3.0));
    attrs.insert("f_neg_zero".into(), Attr::Float(-0.0));
    attrs.insert("f_inf".into(), Attr::Float(f32::INFINITY));
    attrs.insert("f_ninf".into(), Attr::Float(f32::NEG_INFINITY));
    attrs.insert("s".into(), Attr::String("tab\there \"q\" ü".into()));
    attrs.insert("s_empty".into(), Attr::String(String::new()));
    attrs.insert("ints".into(), Attr::Ints(vec![1, -2, 3]));
    attrs.insert("ints_empty".into(), Attr::Ints(vec![]));
    attrs.insert("floats".into(), Attr::Floats(vec![1.0, 0.1, 1e30, -1e-40]));
    attrs.insert("floats_empty".into(), Attr::Floats(vec![]));
    attrs.insert("strings".into(), Attr::Strings(vec!["x".into(), "".into()]));
    attrs.insert("strings_empty".into(), Attr::Strings(vec![]));
    attrs.insert("odd name:1".into(), Attr::Int(0));
    attrs.insert(
        "value".into(),
        Attr::Tensor(raw(DType::F32, vec![1, 2], f32s(&[0.5, 2.0]))),
    );
    attrs.insert(
        "value_strings".into(),
        Attr::Tensor(
            TensorData::new(
                DType::String,
                vec![1],
                Payload::Strings(Arc::new(vec!["s".into()])),
            )
            .unwrap(),
        ),
    );
    g.add_node(Node {
        op: Op::Conv,
        name: "conv \"1\"".into(),
        inputs: vec![Some(a), None, Some(consts[0]), None],
        outputs: vec![Some(o1), None, Some(o2)],
        attrs,
    });
    g.add_node(node(Op::Identity, vec![], vec![]));
    g.add_node(node(Op::Identity, vec![None], vec![None]));
    g.add_node(node(
        Op::Concat,
        vec![Some(scalar), Some(empty), Some(no_strings)],
        vec![],
    ));
    g.outputs = vec![o1, a, consts[1], o1];
    g
}

#[test]
fn everything_round_trips_to_the_same_graph() {
    let g = everything();
    let back = assert_round_trip(&g);
    assert_eq!(back, g);
}

#[test]
fn every_attribute_kind_is_unambiguous_in_text() {
    let text = print(&everything());
    for piece in [
        "f=1e-5",
        "f_int_valued=3.0",
        "f_neg_zero=-0.0",
        "f_inf=inf",
        "f_ninf=-inf",
        "i=-9223372036854775808",
        "ints=[1, -2, 3]",
        "ints_empty=ints[]",
        "floats=[1.0, 0.1, 1e30, -1e-40]",
        "floats_empty=floats[]",
        "strings_empty=strings[]",
        "\"odd name:1\"=0",
        "value=f32[1,2] hex\"0000003f00000040\"",
        "value_strings=string[1] [\"s\"]",
        "%\"\": f16[?,\"batch size\",\"?\"]",
        "%\"é/ü x\": bool[*]",
        "%/layer1/conv/Conv_output_0: i64[]",
        "u8[_,nan,\"9x\",\"\"]",
        "%c.string: string[3] = const [\"a\", \"b\\n\\\"q\\\"\\\\\", \"ü\\u{0}\\u{7f}\"]",
        "%\"no strings\": string[0] = const []",
        "%empty: f32[0,3] = const hex\"\"",
        "%c.i4: i4[3] = const hex",
        " = Conv(%\"\", _, %c.f64, _) {",
        "} name=\"conv \\\"1\\\"\"\n",
        "%o1: f32[1,N], _, %o2: f32[*] = Conv(",
        "\n  Identity()\n  _ = Identity(_)\n  Concat(%scalar, %empty, %\"no strings\")\n",
        "return %o1, %\"\", %c.f32, %o1\n}\n",
    ] {
        assert!(text.contains(piece), "missing {piece:?} in\n{text}");
    }
}

#[test]
fn floats_keep_their_bits() {
    let vals = [
        0.0f32,
        -0.0,
        1.0,
        0.1,
        1.0 / 3.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1), // smallest subnormal
        f32::MAX,
        f32::MIN,
        f32::EPSILON,
        16777217.0,
        1e-45,
        123456.79,
    ];
    let mut g = Graph::new("f");
    let mut attrs = Attrs::new();
    attrs.insert("v".into(), Attr::Floats(vals.to_vec()));
    attrs.insert("n".into(), Attr::Float(f32::NAN));
    g.add_node(Node {
        attrs,
        ..node(Op::Identity, vec![], vec![])
    });
    let back = assert_round_trip(&g);
    let a = &back.nodes[0].attrs;
    let Some(Attr::Floats(v)) = a.get("v") else {
        panic!("floats lost")
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(v), bits(&vals));
    assert!(matches!(a.get("n"), Some(Attr::Float(f)) if f.is_nan()));
    // NaN payloads are normalized: a negative NaN prints as plain `nan`.
    let mut g2 = g.clone();
    g2.nodes[0]
        .attrs
        .insert("n".into(), Attr::Float(f32::from_bits(0xffc0_0001)));
    assert_eq!(print(&g2), print(&g));
}

#[test]
fn inline_limit_elides_big_inline_constants_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.bin"), f32s(&[7.0; 8])).unwrap();
    let src = r#"graph "g"() {
  %big: f32[4] = const hex"0000803f0000803f0000803f0000803f"
  %small: f32[1] = const hex"0000803f"
  %f: f32[4] = const file("w.bin", offset=8, len=16)
  %s: string[2] = const ["abc", "defg"]
  return %big, %small, %f, %s
}
"#;
    let g = parse_with(src, Some(dir.path())).unwrap();
    assert_eq!(print(&g), src);
    let short = print_with(
        &g,
        &PrintOptions {
            inline_limit: Some(6),
        },
    );
    assert!(
        short.contains("%big: f32[4] = const elided(16)\n"),
        "{short}"
    );
    assert!(short.contains("%small: f32[1] = const hex\"0000803f\"\n"));
    assert!(short.contains("const file(\"w.bin\", offset=8, len=16)\n"));
    assert!(short.contains("%s: string[2] = const elided(7)\n"));
    let e = parse_with(&short, Some(dir.path())).unwrap_err();
    assert_eq!((e.line, e.col), (2, 24));
    assert!(e.message.contains("constant %big was elided"), "{e}");
}

#[test]
fn file_constants_map_the_file_and_keep_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut bytes = vec![0xAAu8; 4];
    bytes.extend(f32s(&[1.0, 2.0]));
    std::fs::write(dir.path().join("sub/w.bin"), &bytes).unwrap();
    let src = r#"graph "g"(%x: f32[2]) {
  %w: f32[2] = const file("sub/w.bin", offset=4, len=8)
  %y: f32[2] = Add(%x, %w)
  return %y
}
"#;
    let g = parse_with(src, Some(dir.path())).unwrap();
    verify(&g).unwrap();
    let w = g.find_value("w").unwrap();
    let data = &g.consts[&w];
    assert_eq!(data.raw().unwrap(), &f32s(&[1.0, 2.0])[..]);
    let Payload::Raw(b) = &data.payload else {
        panic!("not raw")
    };
    assert_eq!(
        b.origin(),
        Some(&FileOrigin {
            path: "sub/w.bin".into(),
            offset: 4
        })
    );
    assert_eq!(print(&g), src);

    let with = |path: &str, off: u64, len: u64| {
        src.replace(
            "\"sub/w.bin\", offset=4, len=8",
            &format!("\"{path}\", offset={off}, len={len}"),
        )
    };
    let err = |s: String| parse_with(&s, Some(dir.path())).unwrap_err().to_string();
    assert!(
        parse(src)
            .unwrap_err()
            .message
            .contains("no base directory")
    );
    assert!(err(with("sub/w.bin", 8, 8)).contains("lie outside"));
    assert!(err(with("sub/w.bin", u64::MAX, 8)).contains("lie outside"));
    assert!(err(with("sub/w.bin", 0, 4)).contains("needs 8 bytes"));
    assert!(err(with("../w.bin", 0, 8)).contains("must be relative"));
    assert!(err(with("sub/../sub/w.bin", 4, 8)).contains("must be relative"));
    let abs = dir.path().join("sub/w.bin");
    assert!(err(with(abs.to_str().unwrap(), 4, 8)).contains("must be relative"));
    assert!(err(with("missing.bin", 0, 8)).contains("cannot open"));
    let strings = src.replace("%w: f32[2] = const", "%w: string[2] = const");
    assert!(err(strings).contains("a string tensor takes a list, not a file"));
    #[cfg(unix)]
    {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("w.bin"), &bytes).unwrap();
        std::os::unix::fs::symlink(outside.path().join("w.bin"), dir.path().join("link.bin"))
            .unwrap();
        assert!(err(with("link.bin", 4, 8)).contains("resolves outside the base directory"));
    }
}

#[test]
fn errors_name_the_place_and_the_problem() {
    let cases: &[(&str, (usize, usize), &str)] = &[
        ("", (1, 1), "expected `graph`, found the end of the text"),
        (
            "graph \"g\"() {\n  return %a\n}",
            (2, 10),
            "%a is never defined",
        ),
        (
            "graph \"g\"() {\n  %b: f32[] = Relu(%a)\n  %a: f32[] = Relu(%b)\n  return %a\n}",
            (2, 20),
            "%a is used before it is defined",
        ),
        (
            "graph \"g\"() {\n  %a: f32[] = Relu(%a)\n  return %a\n}",
            (2, 20),
            "%a is used before it is defined",
        ),
        (
            "graph \"g\"(%a: f32[]) {\n  %a: f32[] = Relu(%a)\n  return %a\n}",
            (2, 3),
            "%a is defined more than once",
        ),
        (
            "graph \"g\"(%a: f32[]) {\n  %b: f32[] = Frobnicate(%a)\n  return %b\n}",
            (2, 15),
            "unknown op `Frobnicate`",
        ),
        (
            "graph \"g\"(%a: f31[]) {\n  return %a\n}",
            (1, 15),
            "unknown dtype `f31`",
        ),
        (
            "graph \"g\"() {\n  %w: f32[2,2] = const hex\"0000803f\"\n  return %w\n}",
            (2, 27),
            "constant %w: f32[2, 2] needs 16 bytes but the hex has 8 digits",
        ),
        (
            "graph \"g\"() {\n  %w: i8[1] = const hex\"0g\"\n  return %w\n}",
            (2, 24),
            "constant %w: the hex has a character that is not a hex digit",
        ),
        (
            "graph \"g\"() {\n  %w: f32[N] = const hex\"\"\n  return %w\n}",
            (2, 3),
            "constant %w: a constant's type must have static dims",
        ),
        (
            "graph \"g\"() {\n  %w: string[1] = const hex\"00\"\n  return %w\n}",
            (2, 25),
            "constant %w: a string tensor takes a list, not hex",
        ),
        (
            "graph \"g\"() {\n  %w: string[2] = const [\"a\"]\n  return %w\n}",
            (2, 25),
            "constant %w: 1 strings given for shape [2]",
        ),
        (
            "graph \"g\"() {\n  %w: i8[1] = const [\"a\"]\n  return %w\n}",
            (2, 21),
            "constant %w: a list of strings is only for string tensors, i8 takes hex",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=[]}\n  return\n}",
            (2, 17),
            "empty list must say its kind",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=[1, 2.0]}\n  return\n}",
            (2, 17),
            "list mixes ints and floats",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=ints[1.5]}\n  return\n}",
            (2, 17),
            "every element of ints[...]",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=1, a=2}\n  return\n}",
            (2, 20),
            "attribute `a` is given twice",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=true}\n  return\n}",
            (2, 17),
            "attribute `a`: expected a value (number, string, list or typed tensor), found `true`",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=f32[2] hex\"00\"}\n  return\n}",
            (2, 27),
            "attribute `a`: f32[2] needs 8 bytes but the hex has 2 digits",
        ),
        (
            "graph \"g\"() {\n  Identity() {a=99999999999999999999}\n  return\n}",
            (2, 17),
            "does not fit in 64 bits",
        ),
        (
            "graph \"g\"() {\n  return\n} extra",
            (3, 3),
            "expected the end of the text after the graph, found `extra`",
        ),
        (
            "graph \"g\"() {\n  %a: f32[-1] = Identity()\n  return\n}",
            (2, 11),
            "bad dimension `-1`",
        ),
        (
            "graph \"g\"() {\n  _ = const hex\"\"\n  return\n}",
            (2, 7),
            "`const` defines exactly one named value",
        ),
        (
            "graph \"g\"() {\n  return\n",
            (3, 1),
            "expected `}`, found the end of the text",
        ),
        ("graph \"g\" $", (1, 11), "unexpected character '$'"),
        ("graph \"g\n", (1, 7), "unterminated string"),
        ("graph \"\\q\"", (1, 8), "bad escape"),
        ("graph \"g\"(% ", (1, 11), "expected a value name after `%`"),
        (
            "graph \"g\"() {\n  Identity() {a=1e}\n  return\n}",
            (2, 17),
            "bad number `1e`",
        ),
    ];
    for (src, (line, col), msg) in cases {
        let e = parse_err(src);
        assert!(
            e.message.contains(msg),
            "for {src:?}: got {e}, wanted {msg:?}"
        );
        assert_eq!((e.line, e.col), (*line, *col), "for {src:?}: got {e}");
        assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
    }
}

#[test]
fn hand_written_text_is_accepted_with_comments_and_spacing() {
    let src = "# a comment\ngraph \"g\" ( %x : f32 [ 2 ] ) {  # inputs\n %y:f32[2]=Neg(%x){alpha=ints[1,2],beta=floats[1]}\n return %y }";
    let g = parse(src).unwrap();
    verify(&g).unwrap();
    assert_eq!(
        print(&g),
        "graph \"g\"(%x: f32[2]) {\n  %y: f32[2] = Neg(%x) {alpha=[1, 2], beta=[1.0]}\n  return %y\n}\n"
    );
}

/// A tiny deterministic generator (64-bit LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn truncated_and_mutated_text_never_panics() {
    let text = print(&everything());
    let chars: Vec<char> = text.chars().collect();
    let trimmed = text.trim_end().chars().count();
    for cut in 0..chars.len() {
        let prefix: String = chars[..cut].iter().collect();
        let r = parse(&prefix);
        if cut < trimmed {
            assert!(r.is_err(), "prefix of {cut} chars parsed");
        }
    }
    let alphabet: Vec<char> = "%\"\\[](){},:=*?_#-.e0123456789abxfu graph const hex file \n\tü"
        .chars()
        .collect();
    let mut rng = Lcg(42);
    for _ in 0..3000 {
        let mut c = chars.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(c.len());
            match rng.below(3) {
                0 => {
                    c.remove(i);
                }
                1 => c.insert(i, alphabet[rng.below(alphabet.len())]),
                _ => c[i] = alphabet[rng.below(alphabet.len())],
            }
        }
        let s: String = c.into_iter().collect();
        if let Ok(g) = parse(&s) {
            // Whatever parses must print to text that parses to the same text.
            let p = print(&g);
            assert_eq!(print(&parse(&p).unwrap()), p);
        }
    }
    for _ in 0..2000 {
        let len = rng.below(60);
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = parse(&s);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = parse(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn dim_bounds_round_trip_and_bound_the_interpreter() {
    let mut g = small();
    g.dim_bounds.insert("N".into(), 4);
    g.dim_bounds.insert("odd name".into(), 7);
    let text = print(&g);
    assert!(
        text.starts_with(r#"graph "main"(%x: f32[N,2]) bounds(N=4, "odd name"=7) {"#),
        "{text}"
    );
    let back = assert_round_trip(&g);
    assert_eq!(back.dim_bounds, g.dim_bounds);
    let run = |n: usize| {
        let x = crate::interp::Tensor::from_f64(DType::F32, vec![n, 2], vec![1.0; n * 2]);
        crate::interp::run(&back, vec![x])
    };
    assert!(run(4).is_ok());
    let err = run(5).unwrap_err().to_string();
    assert!(err.contains("above its bound 4"), "{err}");
    let e = parse_err("graph \"g\"(%x: f32[N]) bounds(N=1, N=2) {\n  return %x\n}\n");
    assert!(e.to_string().contains("bounded twice"), "{e}");
}
