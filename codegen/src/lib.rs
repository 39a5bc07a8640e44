pub fn host() -> String {
    inkwell::targets::TargetMachine::get_host_cpu_name().to_string()
}
