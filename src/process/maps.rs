//! `/proc/PID/maps`: which files are mapped where, and whether an address is readable.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRange {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    pub offset: u64,
    /// The mapped file's path as the target sees it (empty for anonymous mappings).
    pub path: String,
}

impl MapRange {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }

    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
}

/// Parse the text of a `/proc/PID/maps` file. Lines that do not parse are skipped.
pub fn parse_maps(text: &str) -> Vec<MapRange> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let path = parts.next().unwrap_or("").trim().to_string();
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(s, 16),
            u64::from_str_radix(e, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        let p = perms.as_bytes();
        out.push(MapRange {
            start,
            end,
            readable: p.first() == Some(&b'r'),
            writable: p.get(1) == Some(&b'w'),
            executable: p.get(2) == Some(&b'x'),
            offset,
            path,
        });
    }
    out
}

/// Read and parse the maps of a live process.
pub fn read_maps(pid: i32) -> std::io::Result<Vec<MapRange>> {
    Ok(parse_maps(&std::fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

/// Paths to try, in order, to open a file the target has mapped:
/// - through `/proc/PID/root`, so a target in another mount namespace (a container) is
///   read from its own root;
/// - the path as the kernel showed it to us (for a chroot, maps already shows the path
///   from our root, e.g. /opt/sid/usr/bin/python3.14);
/// - `/proc/PID/map_files/START-END`, the mapped file itself, wherever it lives.
pub fn target_file_paths(pid: i32, m: &MapRange) -> Vec<PathBuf> {
    let path = m.path.trim_end_matches(" (deleted)");
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    vec![
        root.join(path.trim_start_matches('/')),
        PathBuf::from(path),
        PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let text = "55d0c6a00000-55d0c6a01000 r--p 00000000 08:01 123 /usr/bin/python3.11\n\
                    7f00-8f00 rw-p 00000000 00:00 0 \n\
                    garbage\n\
                    7fff0000-7fff1000 r-xp 00001000 08:01 9 /lib/libpython3.12.so.1.0 (deleted)\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].start, 0x55d0c6a00000);
        assert_eq!(maps[0].file_name(), "python3.11");
        assert!(maps[0].readable && !maps[0].writable);
        assert_eq!(maps[1].path, "");
        assert!(maps[2].executable);
        assert_eq!(maps[2].offset, 0x1000);
        assert!(maps[2].contains(0x7fff0fff) && !maps[2].contains(0x7fff1000));
    }
}
