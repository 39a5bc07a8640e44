// Host stand-in for <hip/hip_runtime.h>: lets smelt's printed HIP modules
// compile as plain C++ for the CPU, so tests can run their kernels
// serially (one "thread" at a time) and check the numbers. Only what the
// printed modules use is defined.
#pragma once
#include <stdint.h>

#define __global__
#define __device__
#define __launch_bounds__(n)
#define __restrict__ __restrict

// The simulated launch: set by the test driver before each call.
static int64_t smelt_host_block, smelt_host_thread, smelt_host_threads;
#define __builtin_amdgcn_workgroup_id_x() (smelt_host_block)
#define __builtin_amdgcn_workitem_id_x() (smelt_host_thread)
#define __builtin_amdgcn_grid_size_x() (smelt_host_threads)
#define __builtin_amdgcn_ldexp(x, k) __builtin_ldexp((x), (k))
#define __builtin_amdgcn_ldexpf(x, k) __builtin_ldexpf((x), (k))
