//! Unit tests of version.rs.
use super::*;

#[test]
fn parses_versions() {
    assert_eq!(Version::parse("3.12.1"), Some(Version::new(3, 12, 1)));
    assert_eq!(
        Version::parse("3.13.0rc2").unwrap().to_string(),
        "3.13.0rc2"
    );
    assert_eq!(Version::parse("2.7.18+").unwrap().to_string(), "2.7.18");
    assert_eq!(Version::parse("3.12"), None);
    assert_eq!(Version::parse("1.2.3"), None);
    assert_eq!(Version::parse("3.12.1x"), None);
    assert_eq!(Version::from_hex(0x030b07f0), Version::new(3, 11, 7));
}

#[test]
fn finds_version_in_rodata() {
    let ro = b"\0abc\x003.1.4.5\x002.7.3\x00/v/3.8.18\0(default)\0";
    assert_eq!(
        find_version_string(ro, Some((3, 8))),
        Some(Version::new(3, 8, 18))
    );
    assert_eq!(find_version_string(ro, None), Some(Version::new(2, 7, 3)));
    assert_eq!(find_version_string(ro, Some((3, 9))), None);
}

#[test]
fn versions_from_file_names() {
    assert_eq!(version_from_file_name("libpython3.8.so.1.0"), Some((3, 8)));
    assert_eq!(version_from_file_name("libpython3.6m.so.1.0"), Some((3, 6)));
    assert_eq!(version_from_file_name("python3.11"), Some((3, 11)));
    assert_eq!(version_from_file_name("python"), None);
    assert_eq!(version_from_file_name("pythonista"), None);
}
