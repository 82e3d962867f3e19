//! Finds libsipp.so, in this order:
//! 1. `$SIPP_LIB_DIR` (the tests set it to the build tree's lib/);
//! 2. an installed Sipp, through `pkg-config sipp` (`cmake --install`; add its lib/pkgconfig to
//!    `PKG_CONFIG_PATH` for a prefix pkg-config does not search);
//! 3. the build/lib of the checkout this crate sits in (scripts/setup builds it there).
//! An rpath to that directory is added so tests and examples run without LD_LIBRARY_PATH.
use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The libdir `pkg-config sipp` names, when an installed Sipp is found.
fn pkg_config_libdir() -> Option<PathBuf> {
    let out = Command::new("pkg-config").args(["--variable=libdir", "sipp"]).output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

fn main() {
    println!("cargo:rerun-if-env-changed=SIPP_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let dir = env::var_os("SIPP_LIB_DIR").map(PathBuf::from).or_else(pkg_config_libdir).unwrap_or_else(
        || PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../../build/lib"),
    );
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=sipp");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rerun-if-changed={}", dir.join("libsipp.so").display());
}
