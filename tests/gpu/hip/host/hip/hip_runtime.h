// Host stand-in for <hip/hip_runtime.h>: lets smelt's printed HIP modules
// compile as plain C++ for the CPU, so tests can run their kernels and
// check the numbers. Only what the printed modules use is defined.
//
// Flat kernels run one "thread" at a time. MFMA kernels need the 64 lanes
// of a wavefront together (the builtin exchanges operands between lanes),
// so the test driver runs each of their blocks as 256 host threads, and
// the MFMA builtins are emulated below from AMD's documented lane
// layouts (the same ones backends/src/gpu/hip/mfma.rs states). There is
// no AMD GPU here: this emulation is the numerics check of those kernels.
#pragma once
#include <stdint.h>
#include <condition_variable>
#include <mutex>

#define __global__
#define __device__
#define __launch_bounds__(n)
#define __restrict__ __restrict

// The simulated launch: set by the test driver in each (host) thread.
static thread_local int64_t smelt_host_block, smelt_host_block_y, smelt_host_block_z;
static thread_local int64_t smelt_host_thread;
static int64_t smelt_host_threads;
#define __builtin_amdgcn_workgroup_id_x() (smelt_host_block)
#define __builtin_amdgcn_workgroup_id_y() (smelt_host_block_y)
#define __builtin_amdgcn_workgroup_id_z() (smelt_host_block_z)
#define __builtin_amdgcn_workitem_id_x() (smelt_host_thread)
#define __builtin_amdgcn_grid_size_x() (smelt_host_threads)
#define __builtin_amdgcn_ldexp(x, k) __builtin_ldexp((x), (k))
#define __builtin_amdgcn_ldexpf(x, k) __builtin_ldexpf((x), (k))

// One wavefront's exchange slots and a reusable barrier over its 64 lanes.
struct SmeltHostWave {
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  double a[64], b[64];
  // 16x16x16 instructions: four operand values per lane.
  float a4[64][4], b4[64][4];
};
// A block of 256 threads is 4 wavefronts; blocks run one after another.
static SmeltHostWave smelt_host_waves[4];

static void smelt_host_wave_barrier(SmeltHostWave& w) {
  std::unique_lock<std::mutex> lk(w.m);
  const uint64_t g = w.generation;
  if (++w.arrived == 64) {
    w.arrived = 0;
    ++w.generation;
    w.cv.notify_all();
  } else {
    w.cv.wait(lk, [&] { return w.generation != g; });
  }
}

// D(16x16) = A(16x4) B(4x16) + C for one wavefront, cbsz = abid = blgp = 0.
// Lane l supplies A[l % 16][l / 16] and B[l / 16][l % 16]; register r of
// lane l is D[row][l % 16] with row = 4 (l / 16) + r for
// v_mfma_f32_16x16x4f32 and row = l / 16 + 4 r for v_mfma_f64_16x16x4f64
// (AMD lab notes, matrix-cores/src/mfma_fp{32,64}_16x16x4fp{32,64}.cpp).
template <class T, bool ROWS_4_APART, class V>
static V smelt_host_mfma_16x16x4(T a, T b, V c) {
  const int lane = (int)(smelt_host_thread % 64);
  SmeltHostWave& w = smelt_host_waves[(smelt_host_thread / 64) % 4];
  w.a[lane] = (double)a;
  w.b[lane] = (double)b;
  smelt_host_wave_barrier(w);
  V d = c;
  const int j = lane % 16;
  for (int r = 0; r < 4; ++r) {
    const int i = ROWS_4_APART ? lane / 16 + 4 * r : 4 * (lane / 16) + r;
    T sum = d[r];
    for (int k = 0; k < 4; ++k) sum += (T)w.a[i + 16 * k] * (T)w.b[j + 16 * k];
    d[r] = sum;
  }
  // Nobody overwrites the slots before every lane has read them.
  smelt_host_wave_barrier(w);
  return d;
}
#define __builtin_amdgcn_mfma_f32_16x16x4f32(a, b, c, cbsz, abid, blgp) \
  smelt_host_mfma_16x16x4<float, false>((a), (b), (c))
#define __builtin_amdgcn_mfma_f64_16x16x4f64(a, b, c, cbsz, abid, blgp) \
  smelt_host_mfma_16x16x4<double, true>((a), (b), (c))

// D(16x16) = A(16x16) B(16x16) + C for one wavefront, f32 accumulation,
// cbsz = abid = blgp = 0 (v_mfma_f32_16x16x16f16 and
// v_mfma_f32_16x16x16bf16_1k share the layout). Element e of lane l's
// operands is A[l % 16][4 (l / 16) + e] and B[4 (l / 16) + e][l % 16];
// register r of lane l is D[4 (l / 16) + r][l % 16] (AMD lab notes,
// matrix-cores/src/mfma_fp32_16x16x16fp16.cpp; AMD's "Matrix Core
// Programming on CDNA3 and CDNA4", 16x16x16 f16/bf16). Products of two
// 16-bit values are exact in f32; the sum runs in f32 in k order.
template <class V4, class D, class W>
static D smelt_host_mfma_16x16x16(V4 a, V4 b, D c, W widen) {
  const int lane = (int)(smelt_host_thread % 64);
  SmeltHostWave& w = smelt_host_waves[(smelt_host_thread / 64) % 4];
  for (int e = 0; e < 4; ++e) {
    w.a4[lane][e] = widen(a[e]);
    w.b4[lane][e] = widen(b[e]);
  }
  smelt_host_wave_barrier(w);
  D d = c;
  const int j = lane % 16;
  for (int r = 0; r < 4; ++r) {
    const int i = 4 * (lane / 16) + r;
    float sum = d[r];
    for (int k = 0; k < 16; ++k) sum += w.a4[i + 16 * (k / 4)][k % 4] * w.b4[j + 16 * (k / 4)][k % 4];
    d[r] = sum;
  }
  smelt_host_wave_barrier(w);
  return d;
}
static float smelt_host_widen_f16(_Float16 x) { return (float)x; }
static float smelt_host_widen_bf16(short x) {
  return __builtin_bit_cast(float, (uint32_t)(uint16_t)x << 16);
}
#define __builtin_amdgcn_mfma_f32_16x16x16f16(a, b, c, cbsz, abid, blgp) \
  smelt_host_mfma_16x16x16((a), (b), (c), smelt_host_widen_f16)
#define __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, cbsz, abid, blgp) \
  smelt_host_mfma_16x16x16((a), (b), (c), smelt_host_widen_bf16)
