use super::super::Arch;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::Launch;

pub fn gemm(_arch: Arch, _name: &str, _g: &Gemm) -> Option<(String, Launch)> {
    None
}
