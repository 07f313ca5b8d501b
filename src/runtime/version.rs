//! The exact CPython version of a target.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub micro: u8,
    /// Release level and serial as in PY_VERSION_HEX (0xF0 final, 0xA0 alpha, 0xB0 beta, 0xC0 rc).
    pub release: u8,
    pub free_threaded: bool,
}

impl Version {
    pub fn new(major: u8, minor: u8, micro: u8) -> Version {
        Version {
            major,
            minor,
            micro,
            release: 0xF0,
            free_threaded: false,
        }
    }

    /// Decode a `PY_VERSION_HEX` value (what the `Py_Version` symbol holds).
    pub fn from_hex(hex: u32) -> Version {
        Version {
            major: (hex >> 24) as u8,
            minor: (hex >> 16) as u8,
            micro: (hex >> 8) as u8,
            release: hex as u8,
            free_threaded: false,
        }
    }

    /// Parse "3.12.1", "3.13.0rc2", "2.7.18+": the string must be exactly a version.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.splitn(3, '.');
        let major: u8 = parts.next()?.parse().ok()?;
        let minor: u8 = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || digits.len() > 2 {
            return None;
        }
        let micro: u8 = digits.parse().ok()?;
        let suffix = &rest[digits.len()..];
        let release = match suffix {
            "" | "+" => 0xF0,
            s if s.starts_with("rc") => 0xC0 | s[2..].parse::<u8>().ok()?.min(15),
            s if s.starts_with('a') => 0xA0 | s[1..].parse::<u8>().ok()?.min(15),
            s if s.starts_with('b') => 0xB0 | s[1..].parse::<u8>().ok()?.min(15),
            _ => return None,
        };
        if !(2..=3).contains(&major) || minor > 40 {
            return None;
        }
        Some(Version {
            major,
            minor,
            micro,
            release,
            free_threaded: false,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        let serial = self.release & 0x0F;
        match self.release & 0xF0 {
            0xA0 => write!(f, "a{serial}")?,
            0xB0 => write!(f, "b{serial}")?,
            0xC0 => write!(f, "rc{serial}")?,
            _ => {}
        }
        if self.free_threaded {
            write!(f, "t")?;
        }
        Ok(())
    }
}

/// Find `PY_VERSION` ("3.8.18") among the NUL-terminated strings of `.rodata`.
/// `want` restricts the search to one major.minor (known from the library's name).
pub fn find_version_string(rodata: &[u8], want: Option<(u8, u8)>) -> Option<Version> {
    let mut found: Option<Version> = None;
    for s in rodata.split(|&b| b == 0) {
        // The linker may merge "3.8.18" into the tail of a longer string such as
        // "/root/.pyenv/versions/3.8.18": look at the tail after the last separator.
        let tail = s
            .iter()
            .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'+'))
            .map_or(s, |i| &s[i + 1..]);
        let s = tail;
        if s.len() < 5 || s.len() > 12 || !(s[0] == b'2' || s[0] == b'3') || s[1] != b'.' {
            continue;
        }
        let Ok(text) = std::str::from_utf8(s) else {
            continue;
        };
        if let Some(v) = Version::parse(text) {
            match want {
                Some((ma, mi)) if (v.major, v.minor) == (ma, mi) => return Some(v),
                Some(_) => {}
                None => {
                    found.get_or_insert(v);
                }
            }
        }
    }
    found
}

/// `libpython3.8.so.1.0`, `libpython3.6m.so`, `python3.11`, `python2.7` → (major, minor).
pub fn version_from_file_name(name: &str) -> Option<(u8, u8)> {
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u8 = major.parse().ok()?;
    let minor: u8 = minor.parse().ok()?;
    if !(2..=3).contains(&major) {
        return None;
    }
    Some((major, minor))
}

#[cfg(test)]
#[path = "version_tests.rs"]
mod tests;
