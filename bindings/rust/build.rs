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
//! the hand-written declarations of src/sys.rs.
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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=abi/check.c");
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
    run(Command::new("ar")
        .arg("crs")
        .arg(out.join("libvcpureq_rs_abi.a"))
        .arg(&obj));
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=vcpureq_rs_abi");
}
