//! The process's peak resident set (`VmHWM`), for tests that bound memory.
//! Such a test has a binary of its own: other tests in the same process would
//! raise the peak.

/// Resets the peak resident set to the current one; `false` where the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set in KiB; 0 where there is no `/proc` (not Linux).
pub fn peak_kib() -> u64 {
    if !cfg!(target_os = "linux") {
        return 0;
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in KiB")
}
