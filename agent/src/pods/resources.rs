//! Linux cgroup settings kubelet derives from CPU and memory amounts
//! (`calculateLinuxResources`), shared by sandboxes and containers.

use std::collections::HashMap;

use k8s_cri::v1::LinuxContainerResources;

/// CFS period kubelet uses, in microseconds (100 ms).
pub const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const MIN_QUOTA: i64 = 1000;

/// Returns cpu.shares for a CPU request in milli-CPU (`MilliCPUToShares`).
pub fn cpu_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return MIN_SHARES;
    }
    (milli_cpu.saturating_mul(SHARES_PER_CPU) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// Returns the CFS quota for a CPU limit in milli-CPU (0 = unlimited).
pub fn cpu_quota(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(CPU_PERIOD) / 1000).max(MIN_QUOTA)
}

/// Returns the cgroup settings for the given amounts. A missing CPU request falls back to the
/// CPU limit, as kubelet does for containers the API server never defaulted.
pub fn linux_resources(
    cpu_request_milli: Option<i64>,
    cpu_limit_milli: i64,
    memory_limit_bytes: i64,
    cgroup_v2: bool,
) -> LinuxContainerResources {
    let mut unified = HashMap::new();
    let mut swap_limit = 0;
    if cgroup_v2 {
        // singleProcessOOMKill defaults to false on cgroup v2: the whole cgroup is OOM-killed.
        unified.insert("memory.oom.group".to_owned(), "1".to_owned());
        // The default NoSwap behaviour.
        unified.insert("memory.swap.max".to_owned(), "0".to_owned());
    } else {
        swap_limit = memory_limit_bytes;
    }
    LinuxContainerResources {
        cpu_shares: cpu_shares(cpu_request_milli.unwrap_or(cpu_limit_milli)),
        cpu_quota: cpu_quota(cpu_limit_milli),
        cpu_period: CPU_PERIOD,
        memory_limit_in_bytes: memory_limit_bytes,
        memory_swap_limit_in_bytes: swap_limit,
        unified,
        ..LinuxContainerResources::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_amounts_convert_like_kubelet() {
        // (milli-CPU, shares, quota)
        let cases = [
            (0, 2, 0),
            (1, 2, 1000),
            (100, 102, 10_000),
            (250, 256, 25_000),
            (1000, 1024, 100_000),
            (1500, 1536, 150_000),
            (300_000, 262_144, 30_000_000),
        ];
        for (milli, shares, quota) in cases {
            assert_eq!((cpu_shares(milli), cpu_quota(milli)), (shares, quota), "{milli}m");
        }
    }

    #[test]
    fn missing_request_falls_back_to_the_limit() {
        let resources = linux_resources(None, 500, 0, true);
        assert_eq!((resources.cpu_shares, resources.cpu_quota), (512, 50_000));
        let resources = linux_resources(Some(0), 500, 0, true);
        assert_eq!(resources.cpu_shares, 2);
    }

    #[test]
    fn swap_is_disabled_per_cgroup_version() {
        let v2 = linux_resources(None, 0, 1 << 20, true);
        assert_eq!(v2.unified.get("memory.swap.max").map(String::as_str), Some("0"));
        assert_eq!(v2.unified.get("memory.oom.group").map(String::as_str), Some("1"));
        let v1 = linux_resources(None, 0, 1 << 20, false);
        assert_eq!((v1.memory_swap_limit_in_bytes, v1.unified.len()), (1 << 20, 0));
    }
}
