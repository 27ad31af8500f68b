//! Exit records: each process exit is written to `<bundle>/exit/<name>` and fsynced before the
//! shim reports it, so an exit is never lost while the daemon is down; the `delete` command of a
//! dead shim reads the init process's record.
//!
//! Name: `init` for the task's init process, `exec.<exec id>` for an exec. Content: one JSON
//! object, `{"pid":N,"exit_status":N,"exited_at_ns":N}` (nanoseconds since the Unix epoch).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::reaper::Exit;

/// The record file of a process: `init` for "" (the init process), else `exec.<id>`.
pub fn path(bundle: &Path, exec_id: &str) -> PathBuf {
    let name = if exec_id.is_empty() {
        "init".to_string()
    } else {
        format!("exec.{exec_id}")
    };
    bundle.join("exit").join(name)
}

/// Writes the record durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write(bundle: &Path, exec_id: &str, exit: &Exit) -> io::Result<()> {
    let target = path(bundle, exec_id);
    let dir = bundle.join("exit");
    fs::create_dir_all(&dir)?;
    let ns = exit
        .at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let body = format!(
        "{{\"pid\":{},\"exit_status\":{},\"exited_at_ns\":{}}}\n",
        exit.pid, exit.status, ns
    );
    let tmp = dir.join(format!(
        ".{}.tmp",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let mut f = File::create(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &target)?;
    File::open(&dir)?.sync_all()?;
    Ok(())
}

/// Reads a record written by [`write`]; `None` when there is none (or it is unreadable).
pub fn read(bundle: &Path, exec_id: &str) -> Option<Exit> {
    let data = fs::read_to_string(path(bundle, exec_id)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&data).ok()?;
    let pid = u32::try_from(v.get("pid")?.as_u64()?).ok()?;
    let status = u32::try_from(v.get("exit_status")?.as_u64()?).ok()?;
    let ns = v.get("exited_at_ns")?.as_u64()?;
    Some(Exit {
        pid,
        status,
        at: UNIX_EPOCH + Duration::from_nanos(ns),
    })
}

/// A protobuf timestamp for `t`.
pub fn timestamp(
    t: SystemTime,
) -> containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_name_init_and_execs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        write(
            dir.path(),
            "",
            &Exit {
                pid: 42,
                status: 137,
                at,
            },
        )
        .unwrap();
        write(
            dir.path(),
            "init",
            &Exit {
                pid: 43,
                status: 1,
                at,
            },
        )
        .unwrap();
        let init = read(dir.path(), "").unwrap();
        assert_eq!((init.pid, init.status, init.at), (42, 137, at));
        assert_eq!(read(dir.path(), "init").unwrap().pid, 43);
        assert!(dir.path().join("exit/init").exists());
        assert!(dir.path().join("exit/exec.init").exists());
        assert!(read(dir.path(), "other").is_none());
        let text = fs::read_to_string(dir.path().join("exit/init")).unwrap();
        assert_eq!(
            text,
            "{\"pid\":42,\"exit_status\":137,\"exited_at_ns\":1700000000000000123}\n"
        );
    }
}
