//! Compiles the in-kernel sampler (src/sampler/bpf/pyprof.bpf.c) with clang's BPF target
//! into OUT_DIR, and sets `cfg(pyprof_bpf)` when that worked. Without clang the build
//! still succeeds: pyprof then says the bpf sampler is unavailable and why.
//!
//! The compiler is `$PYPROF_CLANG`, else the first of clang, clang-19 … clang-14 found.

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "src/sampler/bpf/pyprof.bpf.c";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(pyprof_bpf)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=PYPROF_CLANG");
    println!("cargo:rerun-if-env-changed=PYPROF_NO_BPF");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("pyprof.bpf.o");
    let why = if std::env::var_os("PYPROF_NO_BPF").is_some() {
        "built with PYPROF_NO_BPF set".to_string()
    } else {
        match compile(&obj) {
            Ok(clang) => {
                println!("cargo:rustc-cfg=pyprof_bpf");
                println!("cargo:rustc-env=PYPROF_BPF_OBJ={}", obj.display());
                println!("cargo:rustc-env=PYPROF_BPF_CLANG={clang}");
                return;
            }
            Err(why) => why,
        }
    };
    println!("cargo:warning=pyprof: the bpf sampler is not built: {why}");
    println!("cargo:rustc-env=PYPROF_BPF_MISSING={why}");
}

fn candidates() -> Vec<String> {
    if let Some(c) = std::env::var_os("PYPROF_CLANG") {
        return vec![c.to_string_lossy().into_owned()];
    }
    let mut v = vec!["clang".to_string()];
    v.extend((14..=19).rev().map(|n| format!("clang-{n}")));
    v
}

fn compile(obj: &std::path::Path) -> Result<String, String> {
    let mut tried = Vec::new();
    for clang in candidates() {
        let result = Command::new(&clang)
            .args([
                "-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-c", SRC, "-o",
            ])
            .arg(obj)
            .output();
        match result {
            Ok(o) if o.status.success() => return Ok(clang),
            Ok(o) => {
                return Err(format!(
                    "{clang} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ))
            }
            Err(_) => tried.push(clang),
        }
    }
    Err(format!("no clang found (tried {})", tried.join(", ")))
}
