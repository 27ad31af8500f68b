//! Mount options parsed as containerd's `mount_linux.go` does: known words become `MS_*` flags
//! (or clear them), propagation words are kept apart, everything else is filesystem data.

use nix::mount::MsFlags;

/// Options split into what `mount(2)` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Mount flags, propagation excluded.
    pub(crate) flags: MsFlags,
    /// Propagation flags (`MS_PRIVATE`, `MS_SHARED`, `MS_SLAVE`, `MS_UNBINDABLE`, with `MS_REC`).
    pub(crate) propagation: MsFlags,
    /// The options that are not flags, in order: the filesystem's data string, comma-joined.
    pub(crate) data: Vec<String>,
}

/// `(clear, flag)`: a word sets `flag`, or clears it when `clear` (e.g. `rw` clears `MS_RDONLY`).
fn flag(word: &str) -> Option<(bool, MsFlags)> {
    Some(match word {
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "atime" => (true, MsFlags::MS_NOATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "defaults" => (false, MsFlags::empty()),
        "dev" => (true, MsFlags::MS_NODEV),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "nodev" => (false, MsFlags::MS_NODEV),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "rbind" => (false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "suid" => (true, MsFlags::MS_NOSUID),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Splits `options`; `Err(option)` names one that cannot be honoured (`loop`).
pub(crate) fn parse(options: &[String]) -> Result<Parsed, String> {
    let mut out = Parsed {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
    };
    for option in options {
        if let Some((clear, f)) = flag(option) {
            if clear {
                out.flags.remove(f);
            } else {
                out.flags.insert(f);
            }
        } else if let Some(p) = propagation(option) {
            out.propagation.insert(p);
        } else if option == "loop" {
            return Err(option.clone());
        } else {
            out.data.push(option.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_data_and_propagation() {
        let p = parse(&opts(&[
            "ro",
            "nosuid",
            "rbind",
            "rprivate",
            "lowerdir=/a:/b",
            "index=off",
        ]))
        .unwrap();
        assert_eq!(
            p.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(p.data, opts(&["lowerdir=/a:/b", "index=off"]));
    }

    #[test]
    fn later_words_clear_earlier_ones() {
        let p = parse(&opts(&["ro", "rw", "noexec", "exec", "defaults"])).unwrap();
        assert_eq!(p.flags, MsFlags::empty());
        assert!(p.data.is_empty());
    }

    #[test]
    fn loop_is_refused() {
        assert_eq!(parse(&opts(&["loop"])).unwrap_err(), "loop");
    }
}
