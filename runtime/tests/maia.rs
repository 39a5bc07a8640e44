//! The Maia-style command stream end to end: the example programs under
//! examples/maia/ against numpy, the text and binary round trips, the
//! decoder's rejections and the simulator's error reports.

use smelt_runtime::maia::sim::{Options, Sim};
use smelt_runtime::maia::*;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/maia")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(example(name)).unwrap()
}

fn expected(key: &str) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(&read("expected.json")).unwrap();
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Same formula as examples/maia/expected.py.
fn pattern(n: usize, m: usize, off: f32, div: f32) -> Vec<f32> {
    (0..n).map(|i| (((i * 7) % m) as f32 - off) / div).collect()
}

#[test]
fn matmul_example_matches_numpy() {
    let a = asm::assemble(&read("matmul.s")).unwrap();
    let mut sim = Sim::new(&a, Options::default());
    sim.write_region(0, "a", &pattern(32 * 64, 13, 6.0, 8.0))
        .unwrap();
    let b: Vec<f32> = (0..32 * 64)
        .map(|i| (((i * 5) % 11) as f32 - 5.0) / 4.0)
        .collect();
    sim.write_region(0, "b", &b).unwrap();
    let r = sim.run().unwrap();
    let c = sim.read_region(0, "c").unwrap();
    // Inputs are small dyadic rationals, so f32 sums are exact.
    for (got, want) in c.iter().zip(expected("matmul_c")) {
        assert_eq!(*got as f64, want);
    }
    assert_eq!(r.flops, 2.0 * 32.0 * 32.0 * 64.0);
    assert!(
        r.cycles > 0.0 && r.roofline_fraction > 0.0 && r.roofline_fraction <= 1.0,
        "{r:?}"
    );
    // Loads: A and B, 4096 bytes each, from HBM; C back: 4096 bytes.
    assert_eq!(r.bytes.hbm_read, 8192);
    assert_eq!(r.bytes.hbm_write, 4096);
}

#[test]
fn softmax_example_matches_numpy() {
    let a = asm::assemble(&read("softmax.s")).unwrap();
    let mut sim = Sim::new(&a, Options::default());
    sim.write_region(0, "x", &pattern(8 * 64, 13, 6.0, 4.0))
        .unwrap();
    sim.run().unwrap();
    let y = sim.read_region(0, "y").unwrap();
    for (got, want) in y.iter().zip(expected("softmax_y")) {
        assert!(
            (*got as f64 - want).abs() <= 1e-6 * want.abs() + 1e-9,
            "{got} vs {want}"
        );
    }
}

#[test]
fn committed_smx_files_match_their_text() {
    for name in ["matmul", "softmax"] {
        let bytes = asm::assemble(&read(&format!("{name}.s")))
            .unwrap()
            .to_bytes();
        let path = example(&format!("{name}.smx"));
        if std::env::var_os("SMELT_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}.smx is stale: SMELT_BLESS=1 cargo test -p smelt-runtime"
        );
    }
}

#[test]
fn text_and_binary_round_trip() {
    for name in ["matmul.s", "softmax.s"] {
        let a = asm::assemble(&read(name)).unwrap();
        let text = asm::disasm(&a);
        let b = asm::assemble(&text).unwrap();
        assert_eq!(a, b);
        assert_eq!(asm::disasm(&b), text);
        assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    }
    // Every opcode and operand kind survives both forms.
    let hw = HwConfig::tiny();
    let json = serde_json::to_string(&hw).unwrap();
    let text = format!(
        ".smx version=1 devices=2\n.hw {json}\n.region name=w kind=weight offset=0x0 bytes=8 dtype=f32 shape=2\n.data w 0000803f00000040\n\
         .region name=g kind=activation offset=0x8 bytes=16 dtype=f32 shape=4\n\
         c1.dma0 dma src=hbm[0x0] dst=l2.1[0x10] sdt=f32 ddt=bf16 rows=1 cols=2 sstride=2 dstride=2\n\
         t3.dma1 dma src=l2.1[0x10] dst=sram.3[0x0] sdt=bf16 ddt=f32 rows=1 cols=2 sstride=2 dstride=2\n\
         t3.tensor matmul dt=mxfp8e4m3 m=1 n=1 k=32 a=0x0 b=0x40 c=0x80 acc=1\n\
         t3.vector mul dt=f32 rows=1 cols=2 dst=0x0 a=0x0 b=imm:0.1\n\
         t3.vector add dt=f32 rows=1 cols=2 dst=0x0 a=0x0 b=col:0x8\n\
         t3.vector max dt=bf16 rows=1 cols=2 dst=0x0 a=0x0 b=full:0x8\n\
         t3.vector rsqrt dt=f32 rows=1 cols=2 dst=0x0 a=0x0\n\
         t3.vector reduce.sum dt=f32 rows=1 cols=2 dst=0x0 src=0x0\n\
         t3.vector cvt sdt=f32 ddt=mxfp4 n=32 dst=0x100 src=0x0\n\
         t3.ctrl signal sem=3.15 n=2\nt3.ctrl wait sem=3.15 n=2\nt0.ctrl barrier id=7 count=1\n\
         t0.ctrl allreduce dt=f32 n=2 addr=0x0\nt0.ctrl allgather dt=f32 n=2 src=0x0 dst=0x8\n"
    );
    let a = asm::assemble(&text).unwrap();
    assert_eq!(a.commands.len(), 14);
    assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    // Two devices: the all-reduce sums w = [1, 2] over both, the all-gather
    // concatenates them: [2, 4, 2, 4].
    let mut sim = Sim::new(&a, Options::default());
    sim.run().unwrap();
    assert_eq!(sim.read_region(1, "w").unwrap(), vec![2.0, 4.0]);
    assert_eq!(sim.read_region(0, "g").unwrap(), vec![2.0, 4.0, 2.0, 4.0]);
}

fn tiny_program(body: &str) -> String {
    let json = serde_json::to_string(&HwConfig::tiny()).unwrap();
    format!(
        ".smx version=1 devices=1\n.hw {json}\n.region name=x kind=input offset=0x0 bytes=4096 dtype=f32 shape=1024\n{body}"
    )
}

#[test]
fn decoder_rejects_damaged_files() {
    let a = asm::assemble(&read("matmul.s")).unwrap();
    let good = a.to_bytes();
    // Truncated file.
    let e = Artifact::from_bytes(&good[..good.len() - 5]).unwrap_err();
    assert!(matches!(e, Error::TruncatedFile(_)), "{e}");
    // Bad checksum: one flipped bit in the last section.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let e = Artifact::from_bytes(&bad).unwrap_err().to_string();
    assert!(e.starts_with("checksum mismatch"), "{e}");
    // Bad magic.
    assert_eq!(
        Artifact::from_bytes(b"ELF\0xxxxxxxxxxxxxx").unwrap_err(),
        Error::BadMagic
    );
    // Truncated stream: the last command cut by 3 bytes.
    let code = encode::encode(&a.commands);
    let e = encode::decode(&code[..code.len() - 3]).unwrap_err();
    assert_eq!(
        e,
        Error::Truncated {
            index: 12,
            offset: code.len() - 45,
            need: 3
        }
    );
    // Unknown opcode in command #1 (each dma is 45 bytes: 5 header + 2x11 loc + 2 dtypes + 16).
    let mut c = code.clone();
    c[45] = 0x7f;
    let e = encode::decode(&c).unwrap_err();
    assert_eq!(e.to_string(), "command #1: unknown opcode 0x7f");
}

#[test]
fn out_of_range_addresses_rejected_with_index() {
    // SRAM is 262144 bytes on tiny-npu.
    let e = asm::assemble(&tiny_program(
        "t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=4 sstride=4 dstride=4\n\
         t0.dma0 dma src=hbm[0x0] dst=sram.0[0x3fff8] sdt=f32 ddt=f32 rows=1 cols=4 sstride=4 dstride=4\n",
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "command #1: address out of range: [0x3fff8, 0x40008) is outside SRAM of tile 0 (262144 bytes)"
    );
    // HBM beyond the memory layout (4096 bytes declared).
    let e = asm::assemble(&tiny_program("t0.dma0 dma src=hbm[0xff0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=8 sstride=8 dstride=8\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("command #0: address out of range") && e.contains("HBM"),
        "{e}"
    );
    // A tile the chip does not have (tiny-npu has 4).
    let e = asm::assemble(&tiny_program("t9.tensor wait sem=0.0 n=1\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("queue t9.tensor does not exist"), "{e}");
    // The binary decoder applies the same check: build it unchecked, encode, decode.
    let ok = asm::assemble(&tiny_program("t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=4 sstride=4 dstride=4\n")).unwrap();
    let mut bad = ok.clone();
    if let Op::Dma { dst, .. } = &mut bad.commands[0].op {
        dst.offset = 0x40000;
    }
    let e = Artifact::from_bytes(&bad.to_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("command #0: address out of range"), "{e}");
    // And the simulator, for an artifact that skipped validation.
    let e = Sim::new(&bad, Options::default())
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("command #0: address out of range"), "{e}");
}

#[test]
fn simulator_reports_deadlock_and_unsupported_dtype() {
    let a = asm::assemble(&tiny_program(
        "t0.ctrl signal sem=0.0 n=1\nt0.tensor wait sem=0.0 n=1\nt0.vector wait sem=0.3 n=1\nt0.vector signal sem=0.4 n=1\n",
    ))
    .unwrap();
    let e = Sim::new(&a, Options::default())
        .run()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "deadlock: command #2 (wait sem=0.3 n=1 on t0.vector) waits forever; nothing left will signal it"
    );
    // tiny-npu's tensor unit has no f8e5m2 rate.
    let a = asm::assemble(&tiny_program(
        "t0.tensor matmul dt=f8e5m2 m=16 n=16 k=16 a=0x0 b=0x100 c=0x200 acc=0\n",
    ))
    .unwrap();
    let e = Sim::new(&a, Options::default())
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("command #0: unsupported dtype: the tensor unit does not accept f8e5m2"),
        "{e}"
    );
    let a = asm::assemble(&tiny_program(
        "t0.vector exp dt=f16 rows=1 cols=16 dst=0x0 a=0x0\n",
    ))
    .unwrap();
    let e = Sim::new(&a, Options::default())
        .run()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("command #0: unsupported dtype: the vector unit does not compute in f16"),
        "{e}"
    );
}

#[test]
fn timing_follows_the_hardware_description() {
    // tiny-npu: 1 GHz; bf16 4e11 FLOP/s = 400 FLOP/cycle; issue 2 cycles.
    // 32x32x32 matmul = 65536 FLOP -> 163.84 cycles.
    let a = asm::assemble(&tiny_program(
        "t0.tensor matmul dt=bf16 m=32 n=32 k=32 a=0x0 b=0x800 c=0x1000 acc=0\n",
    ))
    .unwrap();
    let r = Sim::new(&a, Options::default()).run().unwrap();
    assert!((r.cycles - (2.0 + 163.84)).abs() < 1e-9, "{}", r.cycles);
    // A 17x16x16 matmul pads m to 32: same cycles as 32x16x16 (16384 FLOP
    // / 400 = 40.96), not 8704 / 400 = 21.76.
    let a = asm::assemble(&tiny_program(
        "t0.tensor matmul dt=bf16 m=17 n=16 k=16 a=0x0 b=0x800 c=0x1000 acc=0\n",
    ))
    .unwrap();
    let r = Sim::new(
        &a,
        Options {
            timing_only: true,
            trace: false,
        },
    )
    .run()
    .unwrap();
    assert!((r.cycles - (2.0 + 40.96)).abs() < 1e-9, "{}", r.cycles);
    // DMA of 4096 bytes: the tile engine (32 B/cycle) is slower than HBM
    // (100 B/cycle): 128 cycles. Two channels at once share HBM: 8192 bytes
    // at 100 B/cycle = 81.92 cycles < 128, so both still take 128.
    let one = "t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=1024 sstride=1024 dstride=1024\n";
    let r = Sim::new(
        &asm::assemble(&tiny_program(one)).unwrap(),
        Options::default(),
    )
    .run()
    .unwrap();
    assert!((r.cycles - 130.0).abs() < 1e-9, "{}", r.cycles);
    // Four channels on two tiles: 16384 bytes of HBM at 100 B/cycle = 163.84
    // cycles > 128, so HBM bounds the last transfer.
    let four: String = ["t0.dma0", "t0.dma1", "t1.dma0", "t1.dma1"]
        .iter()
        .map(|q| format!("{q} dma src=hbm[0x0] dst=sram.{}[0x0] sdt=f32 ddt=f32 rows=1 cols=1024 sstride=1024 dstride=1024\n", &q[1..2]))
        .collect();
    let r = Sim::new(
        &asm::assemble(&tiny_program(&four)).unwrap(),
        Options::default(),
    )
    .run()
    .unwrap();
    assert!((r.cycles - (2.0 + 163.84)).abs() < 1e-9, "{}", r.cycles);
}

#[test]
fn chrome_trace_has_one_event_per_command() {
    let a = asm::assemble(&read("softmax.s")).unwrap();
    let mut sim = Sim::new(
        &a,
        Options {
            timing_only: true,
            trace: true,
        },
    );
    sim.run().unwrap();
    let t: serde_json::Value = serde_json::from_str(&sim.chrome_trace()).unwrap();
    let x: Vec<_> = t["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(x.len(), a.commands.len());
    assert!(
        x.iter()
            .all(|e| e["dur"].as_f64().unwrap() >= 0.0 && e["pid"].is_u64() && e["tid"].is_u64())
    );
}

#[test]
fn dma_gather_copies_indexed_rows_and_checks_indices() {
    let body = ".region name=i kind=input offset=0x1000 bytes=16 dtype=i32 shape=4\n\
                .region name=y kind=output offset=0x1040 bytes=64 dtype=f32 shape=16\n\
                t0.dma0 dma.gather src=hbm[0x0] dst=hbm[0x1040] idx=hbm[0x1000] dt=f32 idt=i32 rows=4 cols=4 sstride=4 dstride=4 istride=1 bound=8\n";
    let a = asm::assemble(&tiny_program(body)).unwrap();
    assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    let run = |idx: [i32; 4]| {
        let mut sim = Sim::new(&a, Options::default());
        let x: Vec<f32> = (0..1024).map(|v| v as f32).collect();
        sim.write_region(0, "x", &x).unwrap();
        let ib: Vec<u8> = idx.iter().flat_map(|v| v.to_le_bytes()).collect();
        sim.write_region_bytes(0, "i", &ib).unwrap();
        sim.run().map(|_| sim.read_region(0, "y").unwrap())
    };
    // Row k of x (4 wide) is [4k, 4k+3]; -1 counts from bound = 8.
    let want: Vec<f32> = [3, 7, 0, 7]
        .iter()
        .flat_map(|&k| (0..4).map(move |c| (4 * k + c) as f32))
        .collect();
    assert_eq!(run([3, -1, 0, 7]).unwrap(), want);
    let e = run([3, 8, 0, 0]).unwrap_err().to_string();
    assert!(e.contains("command #0") && e.contains("index 8"), "{e}");
    // Indices must be integers; every row `bound` allows must be in range.
    let e = asm::assemble(&tiny_program(&body.replace("idt=i32", "idt=f32")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("indices must be i32 or i64"), "{e}");
    let e = asm::assemble(&tiny_program(&body.replace("bound=8", "bound=2000")))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("command #0: address out of range"), "{e}");
}

#[test]
fn integer_vector_ops_are_exact_and_checked() {
    // 2^24 + 1 is not an f32: an f32 path would lose the +1.
    let body = ".region name=y kind=output offset=0x1000 bytes=16 dtype=i32 shape=4\n\
                t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=i32 ddt=i32 rows=1 cols=4 sstride=4 dstride=4\n\
                t0.dma0 signal sem=0.0 n=1\n\
                t0.vector wait sem=0.0 n=1\n\
                t0.vector add dt=i32 rows=1 cols=4 dst=0x0 a=0x0 b=full:0x0\n\
                t0.vector div dt=i32 rows=1 cols=4 dst=0x0 a=0x0 b=imm:-2.0\n\
                t0.vector signal sem=0.1 n=1\n\
                t0.dma0 wait sem=0.1 n=1\n\
                t0.dma0 dma src=sram.0[0x0] dst=hbm[0x1000] sdt=i32 ddt=i32 rows=1 cols=4 sstride=4 dstride=4\n";
    let a = asm::assemble(&tiny_program(body)).unwrap();
    let mut sim = Sim::new(&a, Options::default());
    let x: Vec<u8> = [(1 << 24) + 1, -3, 7, i32::MAX]
        .iter()
        .flat_map(|v: &i32| v.to_le_bytes())
        .chain(std::iter::repeat_n(0, 4096 - 16))
        .collect();
    sim.write_region_bytes(0, "x", &x).unwrap();
    sim.run().unwrap();
    // (2x) / -2 truncated, with 2·i32::MAX wrapping to -2 first.
    let want: Vec<u8> = [-((1 << 24) + 1), 3, -7, 1]
        .iter()
        .flat_map(|v: &i32| v.to_le_bytes())
        .collect();
    assert_eq!(sim.read_region_bytes(0, "y").unwrap(), want);
    let e = asm::assemble(&tiny_program(
        "t0.vector exp dt=i32 rows=1 cols=16 dst=0x0 a=0x0\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("vector exp is not defined on i32"), "{e}");
    let e = asm::assemble(&tiny_program(
        "t0.vector shl dt=f32 rows=1 cols=16 dst=0x0 a=0x0 b=imm:1.0\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("vector shl is defined on integers only"), "{e}");
    // The integer-only ops live at opcodes 0x70+ and round-trip.
    let a = asm::assemble(&tiny_program(
        "t0.vector xor dt=i64 rows=1 cols=4 dst=0x0 a=0x0 b=full:0x40\n",
    ))
    .unwrap();
    assert_eq!(a.commands[0].op.opcode(), 0x74);
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
}

#[test]
fn packed_dtypes_convert_and_keep_rows_on_bytes() {
    // f32 [1.5, -2.5, 7.0] to i4 truncates toward zero: [1, -2, 7] =
    // 0xe1, 0x07 (low nibble first).
    let body = ".region name=y kind=output offset=0x1000 bytes=2 dtype=i4 shape=3\n\
                t0.dma0 dma src=hbm[0x0] dst=hbm[0x1000] sdt=f32 ddt=i4 rows=1 cols=3 sstride=3 dstride=3\n";
    let a = asm::assemble(&tiny_program(body)).unwrap();
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    let mut sim = Sim::new(&a, Options::default());
    let mut x = vec![0f32; 1024];
    x[..3].copy_from_slice(&[1.5, -2.5, 7.0]);
    sim.write_region(0, "x", &x).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.read_region_bytes(0, "y").unwrap(), vec![0xe1, 0x07]);
    // Two rows of three i4 each: the second would start mid-byte.
    let e = asm::assemble(&tiny_program(
        &body.replace("rows=1 cols=3", "rows=2 cols=3"),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("must fill whole bytes"), "{e}");
}

#[test]
fn non_saturating_fp8_and_e8m0_conversions() {
    // ONNX Cast's tables (onnx/docs/Operators.md, Cast): with saturate=0 what
    // rounds past the largest finite value is inf in e5m2 (max 57344, code
    // 0x7b; the tie 61440 with 65536 rounds to the even code, inf) and NaN
    // in e4m3fn (max 448;
    // the tie 464 rounds down to 448's even code) and e4m3fnuz (0x80).
    let x = [
        1e6f32,
        f32::NEG_INFINITY,
        57344.0,
        61440.0,
        464.0,
        500.0,
        -1000.0,
    ];
    let conv = |ddt: &str, sat: &str| -> Vec<u8> {
        let body = format!(
            ".region name=y kind=output offset=0x1000 bytes=8 dtype={ddt} shape=8\n\
             t0.dma0 dma src=hbm[0x0] dst=hbm[0x1000] sdt=f32 ddt={ddt} rows=1 cols=7 sstride=7 dstride=7{sat}\n"
        );
        let a = asm::assemble(&tiny_program(&body)).unwrap();
        assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
        let mut sim = Sim::new(&a, Options::default());
        let mut v = vec![0f32; 1024];
        v[..7].copy_from_slice(&x);
        sim.write_region(0, "x", &v).unwrap();
        sim.run().unwrap();
        sim.read_region_bytes(0, "y").unwrap()[..7].to_vec()
    };
    assert_eq!(
        conv("f8e5m2", " sat=0"),
        [0x7c, 0xfc, 0x7b, 0x7c, 0x5f, 0x60, 0xe4]
    );
    // Saturating (the default), infinities included. (464 = 1.8125·2^8 is
    // nearest 448 = 0x5f, 500 and -1000 nearest ±2^9, ±2^10.)
    assert_eq!(
        conv("f8e5m2", ""),
        [0x7b, 0xfb, 0x7b, 0x7b, 0x5f, 0x60, 0xe4]
    );
    assert_eq!(
        conv("f8e4m3fn", " sat=0"),
        [0x7f, 0xff, 0x7f, 0x7f, 0x7e, 0x7f, 0xff]
    );
    assert_eq!(conv("f8e4m3fnuz", " sat=0")[..2], [0x80, 0x80]);
    // e8m0 rounds the exponent up: 1e6 = 2^19.93 -> 2^20 (code 147), -inf
    // NaN, 57344 = 1.75·2^15 -> 2^16 (143), 464 = 1.8125·2^8 -> 2^9 (136).
    let e = conv("f8e8m0", "");
    assert_eq!([e[0], e[1], e[2], e[4]], [147, 0xff, 143, 136]);
    // sat=0 only means something for fp8 and e8m0 destinations.
    let err = asm::assemble(&tiny_program(
        ".region name=y kind=output offset=0x1000 bytes=4 dtype=f32 shape=1\n\
         t0.dma0 dma src=hbm[0x0] dst=hbm[0x1000] sdt=f32 ddt=f16 rows=1 cols=1 sstride=1 dstride=1 sat=0\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("sat=0 applies to conversions to fp8"), "{err}");
}

#[test]
fn vector_round_is_half_to_even() {
    let body = ".region name=y kind=output offset=0x1000 bytes=32 dtype=f32 shape=8\n\
                t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=8 sstride=8 dstride=8\n\
                t0.dma0 signal sem=0.0 n=1\n\
                t0.vector wait sem=0.0 n=1\n\
                t0.vector round dt=f32 rows=1 cols=8 dst=0x0 a=0x0\n\
                t0.vector signal sem=0.1 n=1\n\
                t0.dma0 wait sem=0.1 n=1\n\
                t0.dma0 dma src=sram.0[0x0] dst=hbm[0x1000] sdt=f32 ddt=f32 rows=1 cols=8 sstride=8 dstride=8\n";
    let a = asm::assemble(&tiny_program(body)).unwrap();
    assert_eq!(a.commands[3].op.opcode(), 0x75);
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
    let mut sim = Sim::new(&a, Options::default());
    let mut x = vec![0f32; 1024];
    // 0.49999997 is the f32 just below 0.5: floor(x + 0.5) would give 1.
    x[..8].copy_from_slice(&[0.5, 1.5, 2.5, -0.5, -2.5, 2.4, 0.49999997, -3.7]);
    sim.write_region(0, "x", &x).unwrap();
    sim.run().unwrap();
    assert_eq!(
        sim.read_region(0, "y").unwrap(),
        vec![0.0, 2.0, 2.0, -0.0, -2.0, 2.0, 0.0, -4.0]
    );
    let e = asm::assemble(&tiny_program(
        "t0.vector round dt=i32 rows=1 cols=16 dst=0x0 a=0x0\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("vector round is not defined on i32"), "{e}");
}

#[test]
fn dma_scatter_writes_indexed_rows_in_order_and_checks_indices() {
    // Three rows of x (row r = [2r, 2r+1]) into y (4 rows of 2), by i.
    let body = ".region name=i kind=input offset=0x1000 bytes=12 dtype=i32 shape=3\n\
                .region name=y kind=output offset=0x1040 bytes=32 dtype=f32 shape=8\n\
                t0.dma0 dma.scatter src=hbm[0x0] dst=hbm[0x1040] idx=hbm[0x1000] dt=f32 idt=i32 red=add rows=3 cols=2 sstride=2 dstride=2 istride=1 bound=4\n";
    let run = |body: &str, idx: [i32; 3]| {
        let a = asm::assemble(&tiny_program(body)).unwrap();
        assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
        assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(a.commands[0].op.opcode(), 0x03);
        let mut sim = Sim::new(&a, Options::default());
        let x: Vec<f32> = (0..1024).map(|v| v as f32).collect();
        sim.write_region(0, "x", &x).unwrap();
        sim.write_region(0, "y", &[10.0; 8]).unwrap();
        let ib: Vec<u8> = idx.iter().flat_map(|v| v.to_le_bytes()).collect();
        sim.write_region_bytes(0, "i", &ib).unwrap();
        sim.run().map(|_| sim.read_region(0, "y").unwrap())
    };
    // -1 counts from bound = 4; rows 0 and 2 both land on y's row 1.
    // add: 10 + [0, 1] + [4, 5]; row 3 = 10 + [2, 3].
    let y = run(body, [1, -1, 1]).unwrap();
    assert_eq!(y, [10.0, 10.0, 14.0, 16.0, 10.0, 10.0, 12.0, 13.0]);
    // none: the last write to a row wins.
    let y = run(&body.replace("red=add", "red=none"), [1, -1, 1]).unwrap();
    assert_eq!(y, [10.0, 10.0, 4.0, 5.0, 10.0, 10.0, 2.0, 3.0]);
    let y = run(&body.replace("red=add", "red=mul"), [0, 0, 2]).unwrap();
    assert_eq!(y, [0.0, 30.0, 10.0, 10.0, 40.0, 50.0, 10.0, 10.0]);
    let y = run(&body.replace("red=add", "red=max"), [3, 3, 3]).unwrap();
    assert_eq!(y, [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]);
    let y = run(&body.replace("red=add", "red=min"), [3, 3, 3]).unwrap();
    assert_eq!(y, [10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 0.0, 1.0]);
    let e = run(body, [1, 4, 0]).unwrap_err().to_string();
    assert!(
        e.contains("command #0") && e.contains("dma.scatter index 4 at row 1"),
        "{e}"
    );
    let e = asm::assemble(&tiny_program(&body.replace("idt=i32", "idt=f32")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("indices must be i32 or i64"), "{e}");
    // Every row `bound` allows must lie in the destination region.
    let e = asm::assemble(&tiny_program(&body.replace("bound=4", "bound=5")))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("command #0: address out of range"), "{e}");
    let e = asm::assemble(&tiny_program(&body.replace("red=add", "red=sum")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown scatter reduction `sum`"), "{e}");
}

#[test]
fn fmod_and_inverse_trig_vector_ops() {
    let body = ".region name=y kind=output offset=0x1000 bytes=28 dtype=f32 shape=7\n\
                t0.dma0 dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=f32 rows=1 cols=8 sstride=8 dstride=8\n\
                t0.dma0 signal sem=0.0 n=1\n\
                t0.vector wait sem=0.0 n=1\n\
                t0.vector mod dt=f32 rows=1 cols=1 dst=0x40 a=0x0 b=imm:3.0\n\
                t0.vector asin dt=f32 rows=1 cols=1 dst=0x44 a=0x4\n\
                t0.vector acos dt=f32 rows=1 cols=1 dst=0x48 a=0x8\n\
                t0.vector atan dt=f32 rows=1 cols=1 dst=0x4c a=0x4\n\
                t0.vector asinh dt=f32 rows=1 cols=1 dst=0x50 a=0xc\n\
                t0.vector acosh dt=f32 rows=1 cols=1 dst=0x54 a=0x4\n\
                t0.vector atanh dt=f32 rows=1 cols=1 dst=0x58 a=0x8\n\
                t0.vector signal sem=0.1 n=1\n\
                t0.dma0 wait sem=0.1 n=1\n\
                t0.dma0 dma src=sram.0[0x40] dst=hbm[0x1000] sdt=f32 ddt=f32 rows=1 cols=7 sstride=7 dstride=7\n";
    let a = asm::assemble(&tiny_program(body)).unwrap();
    assert_eq!(asm::assemble(&asm::disasm(&a)).unwrap(), a);
    assert_eq!(Artifact::from_bytes(&a.to_bytes()).unwrap(), a);
    // mod is binary opcode 0x2d; the new unary ops start at 0x80.
    assert_eq!(a.commands[3].op.opcode(), 0x2d);
    assert_eq!(a.commands[4].op.opcode(), 0x80);
    assert_eq!(a.commands[9].op.opcode(), 0x85);
    let mut sim = Sim::new(&a, Options::default());
    let mut x = vec![0f32; 1024];
    x[..4].copy_from_slice(&[-7.0, 1.0, 0.5, 0.0]);
    sim.write_region(0, "x", &x).unwrap();
    sim.run().unwrap();
    let y = sim.read_region(0, "y").unwrap();
    // fmod(-7, 3) = -1 (the dividend's sign); asin 1 = π/2, acos ½ = π/3,
    // atan 1 = π/4, asinh 0 = 0, acosh 1 = 0, atanh ½ = ln(3)/2.
    use std::f32::consts::PI;
    let want = [-1.0, PI / 2.0, PI / 3.0, PI / 4.0, 0.0, 0.0, 0.549_306_15];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "{y:?}");
    }
    let e = asm::assemble(&tiny_program(
        "t0.vector mod dt=i32 rows=1 cols=16 dst=0x0 a=0x0 b=imm:1.0\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("vector mod is not defined on i32"), "{e}");
}
