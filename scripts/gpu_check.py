#!/usr/bin/env python3
"""The GPU check of issue 6: smelt's sm_90a code against the card's own
numbers and against PyTorch, measured in one run on one machine.

Two halves, because the compiler cannot travel to the GPU machine (it links
LLVM, hundreds of MB) while the runtime binary and compiled artifacts can:

  prepare WORK    on the build machine (called by scripts/gpu-bundle.sh):
                  writes the benchmark models as ONNX into WORK/<name>/
                  (with input/expected .npy for the transformer models).
  run BUNDLE      on the GPU machine (called by scripts/gpu-check.sh): runs
                  smelt-rt from BUNDLE against torch and writes
                  gpu-check-results.json / .md. `--dry-run` checks the bundle
                  and prints what it would run, without a GPU or torch.

The benchmark definitions (shapes, ops, bytes moved) live only here, so both
halves agree on them.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# The fused elementwise chain: y = tanh(sigmoid(x * 1.5 + 0.25) * x) over
# 2^26 f32. It reads x once and writes y once, so its floor is memory
# bandwidth: bytes = 2 * n * 4.
EW_N = 1 << 26
EW_SCALE, EW_SHIFT = 1.5, 0.25
# GEMMs: two graph inputs, no weights, so the bundle carries no data for them.
GEMMS = [(dt, n) for dt in ("bf16", "f16") for n in (4096, 8192)]
MODELS = ["bert_base", "gpt2_small"]
# Targets of issue 6 (smelt relative to the reference; higher is better).
AIM_CONFORMANCE = 0.95
AIM_BANDWIDTH = 0.8
AIM_GEMM_BF16_8192 = 0.7


def gemm_name(dt, n):
    return f"matmul_{dt}_{n}"


def bench_names():
    return ["ew_chain"] + [gemm_name(dt, n) for dt, n in GEMMS] + MODELS


# ---------------------------------------------------------------- prepare

def prepare(work):
    """Writes WORK/<name>/model.onnx for every benchmark. Imports onnx only
    here: the GPU side needs none of it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def write(name, nodes, inputs, outputs, inits=()):
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="smelt-gpu-check")
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, os.path.join(d, "model.onnx"))
        print(f"prepare: wrote {d}/model.onnx")

    f32 = TensorProto.FLOAT
    scal = lambda n, v: numpy_helper.from_array(np.array(v, np.float32), n)  # noqa: E731
    write("ew_chain",
          [helper.make_node("Mul", ["x", "scale"], ["t1"]),
           helper.make_node("Add", ["t1", "shift"], ["t2"]),
           helper.make_node("Sigmoid", ["t2"], ["t3"]),
           helper.make_node("Mul", ["t3", "x"], ["t4"]),
           helper.make_node("Tanh", ["t4"], ["y"])],
          [helper.make_tensor_value_info("x", f32, [EW_N])],
          [helper.make_tensor_value_info("y", f32, [EW_N])],
          [scal("scale", EW_SCALE), scal("shift", EW_SHIFT)])
    onnx_dt = {"bf16": TensorProto.BFLOAT16, "f16": TensorProto.FLOAT16}
    for dt, n in GEMMS:
        t = onnx_dt[dt]
        write(gemm_name(dt, n), [helper.make_node("MatMul", ["a", "b"], ["y"])],
              [helper.make_tensor_value_info("a", t, [n, n]), helper.make_tensor_value_info("b", t, [n, n])],
              [helper.make_tensor_value_info("y", t, [n, n])])

    # The transformer models come from examples/models with compressible
    # weights (timing does not depend on values; the bundle must stay small).
    os.environ["SMELT_PATTERN_WEIGHTS"] = "1"
    sys.path.insert(0, os.path.join(REPO, "examples", "models"))
    import _common
    import bert_base
    import gpt2_small
    for name, build in (("bert_base", bert_base.build), ("gpt2_small", gpt2_small.build)):
        d = os.path.join(work, name)
        model, feeds = build()
        _common.save(d, model, feeds)
        # smelt-rt reads .npy; onnxruntime's outputs come along so that the
        # GPU side can check smelt's answer, not only its speed.
        loaded = onnx.load(os.path.join(d, "model.onnx"), load_external_data=False)
        for i, inp in enumerate(loaded.graph.input):
            np.save(os.path.join(d, f"input_{i}.npy"), feeds[inp.name])
        for i in range(len(loaded.graph.output)):
            t = onnx.load_tensor(os.path.join(d, f"expected_{i}.pb"))
            np.save(os.path.join(d, f"expected_{i}.npy"), numpy_helper.to_array(t))


# ---------------------------------------------------------------- helpers

class StepFailed(Exception):
    pass


def manifest(art):
    with open(os.path.join(art, "manifest.json")) as f:
        return json.load(f)


def io_types(m, which):
    """[(name, dtype, shape)] of the artifact's inputs or outputs."""
    out = []
    for io in m[which]:
        b = m["buffers"][io["buffer"]]
        out.append((io["name"], b["dtype"], [int(d) for d in b["shape"]]))
    return out


def launches(m):
    return sum(1 for s in m["steps"] if "Launch" in s)


def write_npy(path, raw, descr, shape):
    """An .npy of raw little-endian bytes with the given descr. bf16 uses
    '<V2', which is what numpy writes for ml_dtypes.bfloat16 arrays."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode())
        f.write(raw)


def smelt_rt(args, bin_path, timeout, dry):
    cmd = [bin_path] + args
    if dry:
        print("  would run: " + " ".join(cmd))
        return ""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"smelt-rt ran past {timeout} s: {' '.join(cmd)}")
    except OSError as e:
        raise StepFailed(f"cannot start smelt-rt: {e}")
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()[-1500:]
        if "<V2" in tail:
            tail += (" (smelt-rt reads no bf16 .npy yet; numpy writes ml_dtypes.bfloat16 arrays as '<V2',"
                     " which runtime/src/npy.rs could map to bf16)")
        raise StepFailed(f"smelt-rt exited {p.returncode}: {tail}")
    return p.stdout


def rt_median_ms(out):
    m = re.search(r"([0-9.]+) ms per run", out)
    if not m:
        raise StepFailed(f"no timing line in smelt-rt output: {out[-500:]}")
    return float(m.group(1))


# ---------------------------------------------------------------- the check

class Check:
    def __init__(self, bundle, dry, iters, workdir):
        self.bundle = bundle
        self.dry = dry
        self.iters = iters
        self.work = workdir
        self.rt = os.path.join(bundle, "smelt-rt")
        self.rows = []  # one per measured comparison
        self.steps = {}  # step name -> "ok" or the reason it failed
        self.torch = None

    # Each step runs on its own: one that fails is recorded and the next
    # still runs, so one broken kernel does not hide every other number.
    def step(self, name, fn):
        print(f"== {name}", flush=True)
        t0 = time.time()
        try:
            fn()
            self.steps[name] = "ok"
        except StepFailed as e:
            self.steps[name] = str(e)
            print(f"FAILED {name}: {e}", flush=True)
        except Exception as e:  # a bug or an environment problem: keep going
            self.steps[name] = f"{type(e).__name__}: {e}"
            print(f"FAILED {name}:\n{traceback.format_exc()}", flush=True)
        print(f"   ({time.time() - t0:.1f} s)", flush=True)

    def row(self, **kw):
        self.rows.append(kw)
        print("   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in kw.items() if v is not None), flush=True)

    def art(self, name):
        d = os.path.join(self.bundle, "bench", name)
        if not os.path.isfile(os.path.join(d, "manifest.json")):
            why = os.path.join(self.bundle, "bench", name + ".FAILED")
            reason = open(why).read().strip()[-800:] if os.path.exists(why) else "not in the bundle"
            raise StepFailed(f"no artifact for {name}: {reason}")
        return d

    # --- torch timing

    def cuda_ms(self, fn, warmup=5, iters=None):
        """Median of per-iteration CUDA-event times, after a warm-up."""
        torch = self.torch
        iters = iters or self.iters
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        return times[len(times) // 2]

    # --- steps

    def conformance(self):
        cases = os.path.join(self.bundle, "conformance")
        if not os.path.isdir(cases):
            raise StepFailed("no conformance bundle (see gpu-bundle.log)")
        with open(os.path.join(self.bundle, "interp.json")) as f:
            interp = json.load(f)
        interp_pass = {c["name"] for c in interp["cases"] if str(c["status"]).lower() == "pass"}
        bundled = sorted(os.listdir(cases))
        print(f"   {len(bundled)} cases bundled; interpreter passes {len(interp_pass)}")
        out = os.path.join(self.work, "conformance.json")
        self.conformance_log = smelt_rt(["--check", cases, "--json", out], self.rt, 900, self.dry)
        if self.dry:
            return
        with open(out) as f:
            res = json.load(f)
        shutil.copy(out, os.path.join(REPO, "gpu-check-conformance.json"))
        # A case passes when every one of its data sets passes (as smelt-rt counts).
        by_case = {}
        for s in res["sets"]:
            case = s["case"].split("/")[0]
            by_case[case] = by_case.get(case, True) and bool(s["pass"])
        gpu_pass = {c for c, ok in by_case.items() if ok}
        ratio = len(gpu_pass) / max(1, len(interp_pass))
        self.row(bench="conformance", metric="GPU passes / interpreter passes",
                 smelt=float(len(gpu_pass)), reference=float(len(interp_pass)), ratio=ratio,
                 aim=AIM_CONFORMANCE, note=f"{len(gpu_pass & interp_pass)} pass on both; "
                 f"{len(by_case) - len(gpu_pass)} of {len(by_case)} bundled fail on the GPU")

    def import_torch(self):
        if self.dry:
            return
        import torch
        if not torch.cuda.is_available():
            raise StepFailed("torch sees no CUDA device")
        self.torch = torch
        self.device = torch.cuda.get_device_name(0)
        print(f"   torch {torch.__version__}, CUDA {torch.version.cuda}, {self.device}")

    def bandwidth(self):
        art = self.art("ew_chain")
        m = manifest(art)
        n_launch = launches(m)
        print(f"   ew_chain: {n_launch} kernel launch(es) (1 expected: the chain fuses)")
        x_path = os.path.join(self.work, "ew_x.npy")
        out_dir = os.path.join(self.work, "ew_out")
        args = [art, "--input", x_path, "--iters", str(self.iters), "--output-dir", out_dir]
        if self.dry:
            smelt_rt(args, self.rt, 0, True)
            return
        torch = self.torch
        # The card's copy bandwidth: the most an op that reads and writes
        # once can reach. Several sizes, because small ones stay in L2.
        copy = {}
        for log2 in (26, 27, 28):
            x = torch.randn(1 << log2, device="cuda")
            y = torch.empty_like(x)
            ms = self.cuda_ms(lambda: y.copy_(x))
            copy[log2] = 2 * x.numel() * 4 / (ms * 1e-3) / 1e9
            print(f"   torch copy 2^{log2} f32: {ms:.4f} ms, {copy[log2]:.0f} GB/s")
            del x, y
        x = torch.randn(EW_N, device="cuda")
        np.save(x_path, x.cpu().numpy())
        ms = rt_median_ms(smelt_rt(args, self.rt, 600, False))
        got = torch.from_numpy(np.load(os.path.join(out_dir, "output_0.npy"))).cuda()
        want = torch.tanh(torch.sigmoid(x * EW_SCALE + EW_SHIFT) * x)
        err = (got - want).abs().max().item()
        bw = 2 * EW_N * 4 / (ms * 1e-3) / 1e9
        best = max(copy.values())
        # torch.compile of the same chain: what a fusing peer reaches.
        peer = None
        try:
            f = torch.compile(lambda t: torch.tanh(torch.sigmoid(t * EW_SCALE + EW_SHIFT) * t))
            peer = self.cuda_ms(lambda: f(x))
        except Exception as e:
            print(f"   torch.compile of the chain failed: {e}")
        self.row(bench="ew_chain 2^26 f32", metric="achieved GB/s / torch copy GB/s",
                 smelt=bw, reference=best, ratio=bw / best, aim=AIM_BANDWIDTH,
                 smelt_ms=ms, torch_compile_ms=peer, max_abs_err=err, launches=n_launch)
        if err > 1e-4:
            raise StepFailed(f"ew_chain output differs from torch by {err:.3g}")

    def gemm(self, dt, n):
        name = gemm_name(dt, n)
        art = self.art(name)
        a_path, b_path = (os.path.join(self.work, f"{name}_{s}.npy") for s in "ab")
        out_dir = os.path.join(self.work, name + "_out")
        if self.dry:
            smelt_rt([art, "--input", a_path, "--input", b_path, "--iters", str(self.iters)], self.rt, 0, True)
            return
        torch = self.torch
        tdt = {"bf16": torch.bfloat16, "f16": torch.float16}[dt]
        a = torch.randn(n, n, device="cuda").to(tdt)
        b = torch.randn(n, n, device="cuda").to(tdt)
        for t, p in ((a, a_path), (b, b_path)):
            raw = t.cpu().view(torch.int16).numpy().tobytes()
            write_npy(p, raw, "<V2" if dt == "bf16" else "<f2", [n, n])
        ref_ms = self.cuda_ms(lambda: torch.matmul(a, b))
        flops = 2 * n ** 3
        print(f"   torch.matmul {name}: {ref_ms:.4f} ms, {flops / ref_ms / 1e9:.0f} TFLOP/s")
        aim = AIM_GEMM_BF16_8192 if (dt, n) == ("bf16", 8192) else None
        row = dict(bench=f"GEMM {dt} {n}^3", metric="cuBLAS time / smelt time", reference=ref_ms, aim=aim)
        # Fewer runs than elsewhere: a GEMM without tensor cores takes
        # seconds at 8192^3.
        iters = str(min(self.iters, 20))
        try:
            ms = rt_median_ms(smelt_rt([art, "--input", a_path, "--input", b_path, "--iters", iters,
                                        "--output-dir", out_dir], self.rt, 600, False))
        except StepFailed:
            # cuBLAS's number is still worth keeping in the table.
            self.row(**row, smelt=None, ratio=None)
            raise
        # The answer too: a fast wrong GEMM is not a result.
        f = os.path.join(out_dir, "output_0.npy")
        if os.path.exists(f):
            got = torch.from_numpy(np.load(f)).cuda().float()
        else:
            raw = np.fromfile(os.path.join(out_dir, "output_0.bin"), dtype=np.int16).reshape(n, n)
            got = torch.from_numpy(raw).cuda().view(tdt).float()
        want = torch.matmul(a.float(), b.float())
        rel = ((got - want).norm() / want.norm()).item()
        self.row(**row, smelt=ms, ratio=ref_ms / ms, smelt_tflops=flops / ms / 1e9, rel_err=rel)
        if rel > 2e-2:
            raise StepFailed(f"{name}: output differs from torch.matmul (relative error {rel:.3g})")

    def model(self, name):
        art = self.art(name)
        data = os.path.join(self.bundle, "data", name)
        m = manifest(art)
        ins = [os.path.join(data, f"input_{i}.npy") for i in range(len(m["inputs"]))]
        for p in ins + [os.path.join(data, "expected_0.npy")]:
            if not os.path.isfile(p):
                raise StepFailed(f"{p} is missing from the bundle")
        out_dir = os.path.join(self.work, name + "_out")
        args = [art] + [x for p in ins for x in ("--input", p)] + ["--iters", str(self.iters)]
        if self.dry:
            smelt_rt(args, self.rt, 0, True)
            return
        torch = self.torch
        ms = rt_median_ms(smelt_rt(args + ["--output-dir", out_dir], self.rt, 600, False))
        try:
            graph_ms = rt_median_ms(smelt_rt(args + ["--cuda-graph", "--output-dir", out_dir + "_g"],
                                             self.rt, 600, False))
        except StepFailed as e:
            print(f"   --cuda-graph: {e}")
            graph_ms = None
        got = np.load(os.path.join(out_dir, "output_0.npy"))
        want = np.load(os.path.join(data, "expected_0.npy"))
        err = float(np.abs(got.astype(np.float64) - want).max())
        scale = float(np.abs(want).max())
        feeds = [torch.from_numpy(np.load(p)).cuda() for p in ins]
        mod = build_torch_model(torch, name).cuda().eval()
        with torch.inference_mode():
            eager = self.cuda_ms(lambda: mod(*feeds))
            try:
                comp = torch.compile(mod)
                compiled = self.cuda_ms(lambda: comp(*feeds), warmup=10)
            except Exception as e:
                print(f"   torch.compile failed: {str(e)[:400]}")
                compiled = None
        for ref, ref_ms in (("eager", eager), ("torch.compile", compiled)):
            if ref_ms is not None:
                self.row(bench=f"{name} fwd", metric=f"torch {ref} time / smelt time", smelt=ms,
                         reference=ref_ms, ratio=ref_ms / ms, aim=None, smelt_cuda_graph_ms=graph_ms,
                         max_abs_err_vs_ort=err)
        if err > 1e-2 * max(1.0, scale):
            raise StepFailed(f"{name}: output differs from onnxruntime's by {err:.3g} (max |y| {scale:.3g})")


# ---------------------------------------------------------------- torch models

def build_torch_model(torch, name):
    """Plain torch.nn modules with the shapes of the ONNX models (random
    weights: only the time is compared), written the way HF writes them:
    separate Q/K/V for BERT, one fused QKV for GPT-2, SDPA attention."""
    nn, F = torch.nn, torch.nn.functional
    H, NH, FF, L = 768, 12, 3072, 12

    def heads(t):  # [B,S,H] -> [B,NH,S,D]
        return t.view(t.shape[0], t.shape[1], NH, H // NH).transpose(1, 2)

    def merge(t):
        return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], H)

    class BertLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(H, H) for _ in range(4))
            self.ln1, self.ln2 = nn.LayerNorm(H, eps=1e-12), nn.LayerNorm(H, eps=1e-12)
            self.fc1, self.fc2 = nn.Linear(H, FF), nn.Linear(FF, H)

        def forward(self, x, mask):
            a = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask)
            x = self.ln1(x + self.o(merge(a)))
            return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(BertLayer() for _ in range(L))

        def forward(self, x, mask):
            for layer in self.layers:
                x = layer(x, mask)
            return x

    class Gpt2Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(H), nn.LayerNorm(H)
            self.qkv, self.proj = nn.Linear(H, 3 * H), nn.Linear(H, H)
            self.fc, self.fc_proj = nn.Linear(H, FF), nn.Linear(FF, H)

        def forward(self, x):
            q, k, v = self.qkv(self.ln1(x)).split(H, dim=-1)
            a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
            x = x + self.proj(merge(a))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class Gpt2(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Gpt2Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(H)

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return self.ln_f(x)

    return {"bert_base": Bert, "gpt2_small": Gpt2}[name]()


# ---------------------------------------------------------------- report

def driver_version():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:
        return f"unknown ({e})"


def report(c, out_json, out_md):
    torch = c.torch
    head = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "card": torch.cuda.get_device_name(0) if torch else None,
        "driver": driver_version(),
        "torch": torch.__version__ if torch else None,
        "cuda": torch.version.cuda if torch else None,
        "bundle": os.path.abspath(c.bundle),
    }
    info = os.path.join(c.bundle, "bundle-info.json")
    if os.path.exists(info):
        with open(info) as f:
            head["bundle_info"] = json.load(f)
    with open(out_json, "w") as f:
        json.dump({**head, "steps": c.steps, "results": c.rows}, f, indent=2)
        f.write("\n")
    lines = [f"# smelt GPU check ({head['date']})", "",
             f"Card: {head['card']}; driver {head['driver']}; torch {head['torch']} (CUDA {head['cuda']}).", "",
             "Ratios are smelt relative to the reference (higher is better; 1.0 = as fast).", "",
             "| benchmark | metric | smelt | reference | ratio | aim |", "|---|---|---|---|---|---|"]
    def num(v, f=".4g"):
        return "—" if v is None else format(v, f)

    for r in c.rows:
        aim, ratio = r.get("aim"), r.get("ratio")
        mark = "" if aim is None or ratio is None else (" (met)" if ratio >= aim else " (**below**)")
        lines.append(f"| {r['bench']} | {r['metric']} | {num(r['smelt'])} | {num(r['reference'])} | "
                     f"{num(ratio, '.3f')}{mark} | {'' if aim is None else aim} |")
    lines += ["", "| step | result |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/').replace(chr(10), ' ')[:300]} |" for k, v in c.steps.items()]
    with open(out_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def run(args):
    bundle = os.path.abspath(args.bundle)
    if not os.path.isdir(bundle):
        sys.exit(f"gpu_check: {bundle}: no such bundle (make it with scripts/gpu-bundle.sh)")
    work = tempfile.mkdtemp(prefix="smelt-gpu-check-")
    c = Check(bundle, args.dry_run, args.iters, work)
    if not os.access(c.rt, os.X_OK):
        c.steps["smelt-rt"] = f"{c.rt} is missing or not executable"
    c.step("torch", c.import_torch)
    wanted = set(args.only or ["conformance", "bandwidth", "gemm", "models"])
    if "conformance" in wanted:
        c.step("conformance", c.conformance)
    if c.torch is None and not c.dry:
        # Every other step compares with torch: say so instead of leaving
        # them out of the report.
        for name in ["bandwidth"] * ("bandwidth" in wanted) + \
                [gemm_name(dt, n) for dt, n in GEMMS] * ("gemm" in wanted) + MODELS * ("models" in wanted):
            c.steps[name] = "skipped: torch with CUDA is not available (see step torch)"
    else:
        if "bandwidth" in wanted:
            c.step("bandwidth", c.bandwidth)
        if "gemm" in wanted:
            for dt, n in GEMMS:
                c.step(gemm_name(dt, n), lambda dt=dt, n=n: c.gemm(dt, n))
        if "models" in wanted:
            for name in MODELS:
                c.step(name, lambda name=name: c.model(name))
    shutil.rmtree(work, ignore_errors=True)
    failed = {k: v for k, v in c.steps.items() if v != "ok"}
    if c.dry:
        print(f"dry run: {len(c.steps) - len(failed)}/{len(c.steps)} steps found what they need")
        for k, v in failed.items():
            print(f"  {k}: {v}")
        return 1 if failed else 0
    report(c, os.path.join(REPO, "gpu-check-results.json"), os.path.join(REPO, "gpu-check-results.md"))
    if failed:
        print(f"gpu_check: {len(failed)} step(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="write the benchmark ONNX models into WORK (build machine)")
    pp.add_argument("work")
    pr = sub.add_parser("run", help="run the check on this machine's GPU")
    pr.add_argument("bundle", nargs="?", default=os.path.join(REPO, ".cache", "gpu-bundle"))
    pr.add_argument("--dry-run", action="store_true", help="check the bundle and print the commands; no GPU needed")
    pr.add_argument("--iters", type=int, default=50, help="timed iterations per measurement (median)")
    pr.add_argument("--only", nargs="+", choices=["conformance", "bandwidth", "gemm", "models"])
    sub.add_parser("names", help="print the benchmark names (one per line)")
    a = p.parse_args()
    if a.cmd == "prepare":
        prepare(a.work)
    elif a.cmd == "names":
        print("\n".join(bench_names()))
    else:
        sys.exit(run(a))


if __name__ == "__main__":
    main()
