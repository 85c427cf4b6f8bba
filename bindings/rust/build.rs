// SPDX-License-Identifier: MIT
//! Links the C library, one of two ways:
//!  - default: builds it from this repository (../..) with CMake, static,
//!    into a build tree under OUT_DIR (-DVCPUREQ_BUILD_TESTS=OFF);
//!  - feature "pkg-config", or VCPUREQ_USE_PKG_CONFIG=1: an installed
//!    libvcpureq found with `pkg-config vcpureq` (static if the installed
//!    one is; a shared one gets an rpath to its directory).
//!
//! Either way it compiles abi/check.c against the header it links with:
//! the table of sizes, offsets and constants that tests/abi.rs compares with
//! the hand-written declarations of src/sys.rs.  And it checks every
//! function of src/sys.rs against the header: each Rust declaration is
//! turned into a C prototype and compiled after `#include
//! <vcpureq/vcpureq.h>`; a parameter or return type that differs is a
//! conflicting redeclaration, which fails the build.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("vcpureq build.rs: cannot run {cmd:?}: {e}"));
    if !status.success() {
        panic!("vcpureq build.rs: {cmd:?} failed ({status})");
    }
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("vcpureq build.rs: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "vcpureq build.rs: {cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8")
}

/// CMake build of ../.. into OUT_DIR/cmake; returns the include dirs.
fn build_with_cmake(out: &Path) -> Vec<PathBuf> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("the repository root (../..)");
    for p in ["src", "include", "cmake", "CMakeLists.txt"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let build = out.join("cmake");
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(Command::new("cmake")
        .arg("-S")
        .arg(&root)
        .arg("-B")
        .arg(&build)
        .args([
            "-DVCPUREQ_BUILD_TESTS=OFF",
            "-DVCPUREQ_INSTALL=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            "-DCMAKE_POSITION_INDEPENDENT_CODE=ON",
        ])
        .stdout(std::process::Stdio::null()));
    run(Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .args(["--target", "vcpureq", "-j", &jobs])
        .stdout(std::process::Stdio::null()));
    println!("cargo:rustc-link-search=native={}", build.display());
    println!("cargo:rustc-link-lib=static=vcpureq");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-env=VCPUREQ_LINKED=cmake {}", build.display());
    vec![root.join("include"), build.join("include")]
}

/// pkg-config vcpureq; returns the include dirs.
fn find_with_pkg_config() -> Vec<PathBuf> {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let libs = output(Command::new("pkg-config").args(["--libs", "--static", "vcpureq"]));
    let cflags = output(Command::new("pkg-config").args(["--cflags", "vcpureq"]));
    let mut dirs = Vec::new();
    for tok in libs.split_whitespace() {
        if let Some(d) = tok.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={d}");
            // A shared libvcpureq outside the loader's path still runs.
            println!("cargo:rustc-link-arg=-Wl,-rpath,{d}");
            dirs.push(d.to_string());
        } else if let Some(l) = tok.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={l}");
        } else if tok == "-pthread" {
            println!("cargo:rustc-link-lib=pthread");
        }
    }
    println!(
        "cargo:rustc-env=VCPUREQ_LINKED=pkg-config {}",
        dirs.join(" ")
    );
    cflags
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("-I").map(PathBuf::from))
        .collect()
}

/// The C type of a Rust type of src/sys.rs's declarations.
fn c_type(rust: &str) -> String {
    let t = rust.trim();
    if let Some(rest) = t.strip_prefix("*mut ") {
        return format!("{} *", c_type(rest));
    }
    if let Some(rest) = t.strip_prefix("*const ") {
        return format!("const {} *", c_type(rest));
    }
    match t {
        "c_int" => "int".into(),
        "c_uint" => "unsigned int".into(),
        "c_long" => "long".into(),
        "c_ulong" => "unsigned long".into(),
        "c_char" => "char".into(),
        "c_void" => "void".into(),
        "usize" => "size_t".into(),
        "u64" => "uint64_t".into(),
        "u32" => "uint32_t".into(),
        "bool" => "bool".into(),
        "FILE" => "FILE".into(),
        "vcpureq_work_fn" => "vcpureq_work_fn".into(),
        "Option<vcpureq_done_fn>" => "void (*)(void *, int)".into(),
        "vcpureq_mode" | "vcpureq_backend" | "vcpureq_kick_mechanism" | "vcpureq_dump_format" => {
            format!("enum {t}")
        }
        "vcpureq_vm" | "vcpureq_vcpu" | "kvm_run" | "timespec" => format!("struct {t}"),
        s if s.starts_with("vcpureq_") => format!("struct {s}"),
        other => panic!("vcpureq build.rs: no C type known for `{other}` in src/sys.rs"),
    }
}

/// C prototypes of every `pub fn` in src/sys.rs's extern blocks.
fn prototypes(sys_rs: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in sys_rs.split("extern \"C\" {").skip(1) {
        let block = &block[..block.find("\n}").unwrap_or(block.len())];
        for f in block.split("pub fn ").skip(1) {
            let name = &f[..f.find('(').unwrap()];
            let open = f.find('(').unwrap();
            let close = f.find(')').unwrap();
            let params: Vec<String> = f[open + 1..close]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| c_type(&p[p.find(':').unwrap() + 1..]))
                .collect();
            let tail = &f[close + 1..f.find(';').unwrap()];
            let ret = match tail.find("->") {
                Some(i) => c_type(&tail[i + 2..]),
                None => "void".into(),
            };
            let params = if params.is_empty() {
                "void".into()
            } else {
                params.join(", ")
            };
            out.push(format!("{ret} {name}({params});"));
        }
    }
    out
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=abi/check.c");
    println!("cargo:rerun-if-changed=src/sys.rs");
    println!("cargo:rerun-if-env-changed=VCPUREQ_USE_PKG_CONFIG");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let pkg = env::var_os("CARGO_FEATURE_PKG_CONFIG").is_some()
        || env::var("VCPUREQ_USE_PKG_CONFIG")
            .map(|v| v == "1")
            .unwrap_or(false);
    let includes = if pkg {
        find_with_pkg_config()
    } else {
        build_with_cmake(&out)
    };

    // The ABI table: abi/check.c compiled against the header we link with.
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let obj = out.join("vcpureq_rs_abi.o");
    let mut c = Command::new(&cc);
    c.args([
        "-std=c11",
        "-D_GNU_SOURCE",
        "-O1",
        "-fPIC",
        "-Wall",
        "-Werror",
        "-c",
    ]);
    for i in &includes {
        c.arg(format!("-I{}", i.display()));
    }
    run(c.arg("abi/check.c").arg("-o").arg(&obj));
    // The signatures: src/sys.rs's functions redeclared after the header.
    let sys_rs = std::fs::read_to_string("src/sys.rs").expect("src/sys.rs");
    let protos = prototypes(&sys_rs);
    assert!(
        protos.len() >= 60,
        "vcpureq build.rs: only {} functions parsed in src/sys.rs",
        protos.len()
    );
    let sig_c = out.join("vcpureq_rs_signatures.c");
    std::fs::write(
        &sig_c,
        format!(
            "/* Generated by build.rs from src/sys.rs: a prototype that differs\n * from the header's is a conflicting redeclaration. */\n#include <vcpureq/vcpureq.h>\n{}\n",
            protos.join("\n")
        ),
    )
    .unwrap();
    let mut c = Command::new(&cc);
    c.args([
        "-std=c11",
        "-D_GNU_SOURCE",
        "-Wall",
        "-Werror",
        "-fsyntax-only",
    ]);
    for i in &includes {
        c.arg(format!("-I{}", i.display()));
    }
    run(c.arg(&sig_c));

    run(Command::new("ar")
        .arg("crs")
        .arg(out.join("libvcpureq_rs_abi.a"))
        .arg(&obj));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=vcpureq_rs_abi");
}
