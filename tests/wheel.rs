//! `pip install`: pyproject.toml builds pyprof as a binary wheel with maturin; the wheel,
//! installed into a fresh venv, puts a working `pyprof` on that venv's PATH.
//!
//! The release build is slow, so the wheel is cached under `target/wheel-cache/<key>/`,
//! keyed by a hash of everything that goes into it (Cargo.toml, Cargo.lock, LICENSE,
//! pyproject.toml, README.md, src/**): a warm run only makes the fresh venv and profiles.
//! maturin lives in its own venv, `target/wheel-tools/venv`, made once (pip fetches
//! maturin from the package index the first time), and builds with
//! `CARGO_TARGET_DIR=target/wheel-build` so it never touches the main build's artifacts.
//!
//! A wheel that cannot be built fails the test. `PYPROF_SKIP_WHEEL=1` skips it, loudly.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The spin loop the installed pyprof must find; bounded, in case pyprof leaves it running.
const SPIN: &str = "import time
def spin():
    end = time.time() + 5
    n = 0
    while time.time() < end:
        n += 1
    return n
spin()
";

/// Straight to the terminal, past the test harness's output capture: progress of the slow
/// steps, and the SKIP notice, should be seen.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "wheel: {msg}");
}

/// The cargo target directory of this build (CARGO_TARGET_TMPDIR is `<target>/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

/// The interpreter that makes the venvs: pyenv's 3.12.1 when there, else python3.
fn base_python() -> PathBuf {
    let root = std::env::var("PYENV_ROOT").unwrap_or_else(|_| "/root/.pyenv".into());
    let p = Path::new(&root).join("versions/3.12.1/bin/python");
    if p.is_file() {
        p
    } else {
        PathBuf::from("python3")
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd`; its output on success, else panic with its status and the tail of its output.
fn run(cmd: &mut Command) -> Output {
    let what = show(cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    if !out.status.success() {
        let tail = |b: &[u8]| {
            let s = String::from_utf8_lossy(b);
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        panic!(
            "`{what}` failed ({}):\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    out
}

/// A child command without the variables `cargo test` sets for this test binary, so the
/// nested cargo that maturin runs sees a plain environment.
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            cmd.env_remove(&*k);
        }
    }
    cmd
}

/// FNV-1a, 64 bits: a stable hash for the cache key (std's hasher may change between
/// Rust releases; a changed key only costs a rebuild, but stable is nicer).
struct Fnv(u64);
impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Every input of the wheel: (path relative to the crate, hash of its content).
fn sources() -> Vec<(String, u64)> {
    let root = Path::new(ROOT);
    let mut files: Vec<PathBuf> = [
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "build.rs",
    ]
    .iter()
    .map(|f| root.join(f))
    .filter(|p| p.is_file())
    .collect();
    files_under(&root.join("src"), &mut files);
    files
        .iter()
        .map(|f| {
            let data = fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            h.write(&data);
            let rel = f.strip_prefix(root).unwrap_or(f);
            (rel.to_string_lossy().into_owned(), h.0)
        })
        .collect()
}

/// The cache key: a hash of every input's path and content hash.
fn source_key(sources: &[(String, u64)]) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for (path, content) in sources {
        h.write(path.as_bytes());
        h.write(&[0]);
        h.write(&content.to_le_bytes());
    }
    format!("{:016x}", h.0)
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
}

/// The venv holding maturin, made once and reused (`.ready` marks a complete one).
fn maturin() -> PathBuf {
    let venv = target_dir().join("wheel-tools/venv");
    let maturin = venv.join("bin/maturin");
    let ready = venv.join(".ready");
    if ready.is_file() && maturin.is_file() {
        return maturin;
    }
    let t = Instant::now();
    say(&format!(
        "making the build venv {} with maturin",
        venv.display()
    ));
    let _ = fs::remove_dir_all(&venv);
    fs::create_dir_all(venv.parent().unwrap()).expect("create wheel-tools");
    run(Command::new(base_python()).arg("-m").arg("venv").arg(&venv));
    run(Command::new(venv.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "maturin>=1,<2",
    ]));
    let v = run(Command::new(&maturin).arg("--version"));
    fs::write(&ready, &v.stdout).expect("write .ready");
    say(&format!(
        "{} installed in {:.0}s",
        String::from_utf8_lossy(&v.stdout).trim(),
        t.elapsed().as_secs_f64()
    ));
    maturin
}

/// The wheel for the current sources: from the cache, else built (release) and cached.
fn wheel() -> PathBuf {
    let cache = target_dir().join("wheel-cache");
    fs::create_dir_all(&cache).expect("create wheel-cache");
    // One builder at a time (two `cargo test` runs at once would otherwise both build).
    let lock = fs::File::create(cache.join(".lock")).expect("create wheel-cache/.lock");
    lock.lock().expect("lock wheel-cache/.lock");

    let before = sources();
    let key = source_key(&before);
    let dir = cache.join(&key);
    if let Some(w) = find_wheel(&dir) {
        say(&format!("reusing cached {}", w.display()));
        return w;
    }
    let maturin = maturin();
    // Only the newest wheel is kept.
    for e in fs::read_dir(&cache).expect("read wheel-cache").flatten() {
        if e.path().is_dir() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let tmp = cache.join(format!("{key}.partial"));
    let build_target = target_dir().join("wheel-build");
    say(&format!(
        "building the release wheel (CARGO_TARGET_DIR={}); a cold build takes minutes",
        build_target.display()
    ));
    let t = Instant::now();
    run(clean_command(&maturin)
        .current_dir(ROOT)
        .env("CARGO_TARGET_DIR", &build_target)
        .args(["build", "--release", "--manifest-path"])
        .arg(Path::new(ROOT).join("Cargo.toml"))
        .arg("--out")
        .arg(&tmp));
    let built = find_wheel(&tmp)
        .unwrap_or_else(|| panic!("maturin succeeded but left no .whl in {}", tmp.display()));
    // Sources edited during the build: use this wheel once, but don't cache it under a
    // key that may not describe it.
    let after = sources();
    if after != before {
        let mut changed: Vec<&str> = after
            .iter()
            .filter(|f| !before.contains(f))
            .chain(before.iter().filter(|f| !after.contains(f)))
            .map(|(p, _)| p.as_str())
            .collect();
        changed.sort();
        changed.dedup();
        say(&format!(
            "sources changed during the build ({}): this wheel is not cached",
            changed.join(", ")
        ));
        let keep = cache.join("uncached");
        let _ = fs::remove_dir_all(&keep);
        fs::rename(&tmp, &keep).expect("move the wheel aside");
        return keep.join(built.file_name().unwrap());
    }
    fs::rename(&tmp, &dir).expect("move the wheel into the cache");
    let w = dir.join(built.file_name().unwrap());
    say(&format!(
        "built {} in {:.0}s",
        w.display(),
        t.elapsed().as_secs_f64()
    ));
    w
}

#[test]
fn pip_installed_wheel_profiles_a_program() {
    if std::env::var("PYPROF_SKIP_WHEEL").as_deref() == Ok("1") {
        say("*****************************************************************");
        say("SKIP: PYPROF_SKIP_WHEEL=1: the pip-installable wheel was NOT built");
        say("      nor tested");
        say("*****************************************************************");
        return;
    }
    let wheel = wheel();
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("pyprof-{VERSION}-py3-none-")),
        "unexpected wheel name {name}: want pyprof-{VERSION}-py3-none-<platform>.whl"
    );

    // A fresh venv, and the wheel installed from the file alone.
    let tmp = tempfile::tempdir().expect("tempdir");
    let venv = tmp.path().join("venv");
    let t = Instant::now();
    run(Command::new(base_python()).arg("-m").arg("venv").arg(&venv));
    let python = venv.join("bin/python");
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-index"])
        .arg(&wheel));
    say(&format!(
        "fresh venv + pip install in {:.1}s",
        t.elapsed().as_secs_f64()
    ));

    // The metadata pip recorded.
    let meta = run(Command::new(&python).args([
        "-c",
        "import importlib.metadata as m; d = m.metadata('pyprof'); \
         print(d['Name'], d['Version'], d['Requires-Python'], d['License'], sep='|')",
    ]));
    let meta = String::from_utf8_lossy(&meta.stdout);
    let fields: Vec<&str> = meta.trim().split('|').collect();
    assert_eq!(fields.first(), Some(&"pyprof"), "metadata: {meta}");
    assert_eq!(fields.get(1), Some(&VERSION), "version from Cargo: {meta}");
    assert!(
        fields.get(2).is_some_and(|r| r.starts_with(">=3")),
        "Requires-Python: {meta}"
    );
    assert!(meta.contains("MIT"), "license: {meta}");

    // The installed command.
    let pyprof = venv.join("bin/pyprof");
    assert!(
        pyprof.is_file(),
        "the wheel installed no {}",
        pyprof.display()
    );
    let v = run(Command::new(&pyprof).arg("--version"));
    let v = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.trim(), format!("pyprof {VERSION}"), "pyprof --version");

    // It profiles: a launched program's hot function shows up in collapsed stacks.
    let out = tmp.path().join("x.txt");
    let rec = run(Command::new(&pyprof)
        .args(["record", "-d", "1", "-f", "collapsed", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&python)
        .args(["-c", SPIN]));
    let stacks = fs::read_to_string(&out).unwrap_or_else(|e| {
        panic!(
            "no profile at {}: {e}\npyprof stderr:\n{}",
            out.display(),
            String::from_utf8_lossy(&rec.stderr)
        )
    });
    assert!(
        stacks.lines().any(|l| l.contains("spin")),
        "no `spin` frame in the profile:\n{stacks}\npyprof stderr:\n{}",
        String::from_utf8_lossy(&rec.stderr)
    );
}
