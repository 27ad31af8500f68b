//! Task statistics from the container's cgroup files: containerd's
//! `io.containerd.cgroups.v1.Metrics` on a cgroup v1 host, `io.containerd.cgroups.v2.Metrics` on
//! a unified (v2) host.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use crate::events::pack;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether the host runs the unified (v2) hierarchy.
pub fn is_unified() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

fn read_u64(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `max` (no limit) reads as 0, as containerd reports it.
fn read_limit(path: &Path) -> u64 {
    read_u64(path)
}

fn read_kv(path: &Path) -> HashMap<String, u64> {
    let mut map = HashMap::new();
    if let Ok(text) = fs::read_to_string(path) {
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Ok(v) = v.parse() {
                    map.insert(k.to_string(), v);
                }
            }
        }
    }
    map
}

fn relative(cgroup_path: &str) -> &str {
    cgroup_path.trim_start_matches('/')
}

/// The metrics of the cgroup `cgroup_path` (the spec's `linux.cgroupsPath`).
pub fn metrics(cgroup_path: &str) -> Result<Any, String> {
    if cgroup_path.is_empty() || cgroup_path.contains("..") || cgroup_path.contains(':') {
        return Err(format!(
            "cgroup path {cgroup_path:?} is not supported for statistics"
        ));
    }
    if is_unified() {
        let dir = Path::new(CGROUP_ROOT).join(relative(cgroup_path));
        if !dir.exists() {
            return Err(format!("cgroup {} not found", dir.display()));
        }
        Ok(pack("io.containerd.cgroups.v2.Metrics", &metrics_v2(&dir)))
    } else {
        let rel = relative(cgroup_path);
        let dir = |c: &str| Path::new(CGROUP_ROOT).join(c).join(rel);
        if !dir("memory").exists() && !dir("pids").exists() {
            return Err(format!("cgroup {cgroup_path} not found"));
        }
        Ok(pack("io.containerd.cgroups.v1.Metrics", &metrics_v1(&dir)))
    }
}

fn blkio_entries(path: &Path) -> Vec<v1::BlkIOEntry> {
    let mut out = Vec::new();
    let Ok(text) = fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 3 {
            continue;
        }
        let mut dev = parts[0].split(':');
        let (Some(major), Some(minor)) = (dev.next(), dev.next()) else {
            continue;
        };
        let mut e = v1::BlkIOEntry::new();
        e.op = parts[1].to_string();
        e.major = major.parse().unwrap_or(0);
        e.minor = minor.parse().unwrap_or(0);
        e.value = parts[2].parse().unwrap_or(0);
        out.push(e);
    }
    out
}

fn metrics_v1(dir: &dyn Fn(&str) -> PathBuf) -> v1::Metrics {
    let mut m = v1::Metrics::new();

    let mut pids = v1::PidsStat::new();
    pids.current = read_u64(&dir("pids").join("pids.current"));
    pids.limit = read_limit(&dir("pids").join("pids.max"));
    m.pids = Some(pids).into();

    let mut usage = v1::CPUUsage::new();
    usage.total = read_u64(&dir("cpuacct").join("cpuacct.usage"));
    let stat = read_kv(&dir("cpuacct").join("cpuacct.stat"));
    // cpuacct.stat counts USER_HZ ticks (100 per second).
    usage.user = stat.get("user").copied().unwrap_or(0) * 10_000_000;
    usage.kernel = stat.get("system").copied().unwrap_or(0) * 10_000_000;
    usage.per_cpu = fs::read_to_string(dir("cpuacct").join("cpuacct.usage_percpu"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let cpu_stat = read_kv(&dir("cpu").join("cpu.stat"));
    let mut thr = v1::Throttle::new();
    thr.periods = cpu_stat.get("nr_periods").copied().unwrap_or(0);
    thr.throttled_periods = cpu_stat.get("nr_throttled").copied().unwrap_or(0);
    thr.throttled_time = cpu_stat.get("throttled_time").copied().unwrap_or(0);
    let mut cpu = v1::CPUStat::new();
    cpu.usage = Some(usage).into();
    cpu.throttling = Some(thr).into();
    m.cpu = Some(cpu).into();

    let md = dir("memory");
    let s = read_kv(&md.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut mem = v1::MemoryStat::new();
    mem.cache = g("cache");
    mem.rss = g("rss");
    mem.rss_huge = g("rss_huge");
    mem.mapped_file = g("mapped_file");
    mem.dirty = g("dirty");
    mem.writeback = g("writeback");
    mem.pg_pg_in = g("pgpgin");
    mem.pg_pg_out = g("pgpgout");
    mem.pg_fault = g("pgfault");
    mem.pg_maj_fault = g("pgmajfault");
    mem.inactive_anon = g("inactive_anon");
    mem.active_anon = g("active_anon");
    mem.inactive_file = g("inactive_file");
    mem.active_file = g("active_file");
    mem.unevictable = g("unevictable");
    mem.hierarchical_memory_limit = g("hierarchical_memory_limit");
    mem.hierarchical_swap_limit = g("hierarchical_memsw_limit");
    mem.total_cache = g("total_cache");
    mem.total_rss = g("total_rss");
    mem.total_rss_huge = g("total_rss_huge");
    mem.total_mapped_file = g("total_mapped_file");
    mem.total_dirty = g("total_dirty");
    mem.total_writeback = g("total_writeback");
    mem.total_pg_pg_in = g("total_pgpgin");
    mem.total_pg_pg_out = g("total_pgpgout");
    mem.total_pg_fault = g("total_pgfault");
    mem.total_pg_maj_fault = g("total_pgmajfault");
    mem.total_inactive_anon = g("total_inactive_anon");
    mem.total_active_anon = g("total_active_anon");
    mem.total_inactive_file = g("total_inactive_file");
    mem.total_active_file = g("total_active_file");
    mem.total_unevictable = g("total_unevictable");
    let entry = |prefix: &str| {
        let mut e = v1::MemoryEntry::new();
        e.usage = read_u64(&md.join(format!("{prefix}.usage_in_bytes")));
        e.limit = read_u64(&md.join(format!("{prefix}.limit_in_bytes")));
        e.max = read_u64(&md.join(format!("{prefix}.max_usage_in_bytes")));
        e.failcnt = read_u64(&md.join(format!("{prefix}.failcnt")));
        e
    };
    mem.usage = Some(entry("memory")).into();
    mem.swap = Some(entry("memory.memsw")).into();
    mem.kernel = Some(entry("memory.kmem")).into();
    mem.kernel_tcp = Some(entry("memory.kmem.tcp")).into();
    m.memory = Some(mem).into();

    let oom = read_kv(&md.join("memory.oom_control"));
    let mut oc = v1::MemoryOomControl::new();
    oc.oom_kill_disable = oom.get("oom_kill_disable").copied().unwrap_or(0);
    oc.under_oom = oom.get("under_oom").copied().unwrap_or(0);
    oc.oom_kill = oom.get("oom_kill").copied().unwrap_or(0);
    m.memory_oom_control = Some(oc).into();

    let bd = dir("blkio");
    let mut blk = v1::BlkIOStat::new();
    blk.io_service_bytes_recursive =
        blkio_entries(&bd.join("blkio.throttle.io_service_bytes_recursive"));
    blk.io_serviced_recursive = blkio_entries(&bd.join("blkio.throttle.io_serviced_recursive"));
    m.blkio = Some(blk).into();
    m
}

fn metrics_v2(dir: &Path) -> v2::Metrics {
    let mut m = v2::Metrics::new();

    let mut pids = v2::PidsStat::new();
    pids.current = read_u64(&dir.join("pids.current"));
    pids.limit = read_limit(&dir.join("pids.max"));
    m.pids = Some(pids).into();

    let c = read_kv(&dir.join("cpu.stat"));
    let g = |k: &str| c.get(k).copied().unwrap_or(0);
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = g("usage_usec");
    cpu.user_usec = g("user_usec");
    cpu.system_usec = g("system_usec");
    cpu.nr_periods = g("nr_periods");
    cpu.nr_throttled = g("nr_throttled");
    cpu.throttled_usec = g("throttled_usec");
    m.cpu = Some(cpu).into();

    let s = read_kv(&dir.join("memory.stat"));
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut mem = v2::MemoryStat::new();
    mem.anon = g("anon");
    mem.file = g("file");
    mem.kernel_stack = g("kernel_stack");
    mem.slab = g("slab");
    mem.sock = g("sock");
    mem.shmem = g("shmem");
    mem.file_mapped = g("file_mapped");
    mem.file_dirty = g("file_dirty");
    mem.file_writeback = g("file_writeback");
    mem.anon_thp = g("anon_thp");
    mem.inactive_anon = g("inactive_anon");
    mem.active_anon = g("active_anon");
    mem.inactive_file = g("inactive_file");
    mem.active_file = g("active_file");
    mem.unevictable = g("unevictable");
    mem.slab_reclaimable = g("slab_reclaimable");
    mem.slab_unreclaimable = g("slab_unreclaimable");
    mem.pgfault = g("pgfault");
    mem.pgmajfault = g("pgmajfault");
    mem.usage = read_u64(&dir.join("memory.current"));
    mem.usage_limit = read_limit(&dir.join("memory.max"));
    mem.swap_usage = read_u64(&dir.join("memory.swap.current"));
    mem.swap_limit = read_limit(&dir.join("memory.swap.max"));
    mem.max_usage = read_u64(&dir.join("memory.peak"));
    m.memory = Some(mem).into();

    let e = read_kv(&dir.join("memory.events"));
    let mut ev = v2::MemoryEvents::new();
    ev.low = e.get("low").copied().unwrap_or(0);
    ev.high = e.get("high").copied().unwrap_or(0);
    ev.max = e.get("max").copied().unwrap_or(0);
    ev.oom = e.get("oom").copied().unwrap_or(0);
    ev.oom_kill = e.get("oom_kill").copied().unwrap_or(0);
    m.memory_events = Some(ev).into();

    let mut io = v2::IOStat::new();
    if let Ok(text) = fs::read_to_string(dir.join("io.stat")) {
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let Some(dev) = parts.next() else { continue };
            let mut mm = dev.split(':');
            let mut entry = v2::IOEntry::new();
            entry.major = mm.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            entry.minor = mm.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            for kv in parts {
                let mut it = kv.split('=');
                let (Some(k), Some(v)) = (it.next(), it.next()) else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => entry.rbytes = v,
                    "wbytes" => entry.wbytes = v,
                    "rios" => entry.rios = v,
                    "wios" => entry.wios = v,
                    _ => {}
                }
            }
            io.usage.push(entry);
        }
    }
    m.io = Some(io).into();
    m
}
