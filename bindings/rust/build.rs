//! Links libsipp.so: from $SIPP_LIB_DIR, else the build/lib of the checkout this crate sits in
//! (scripts/setup builds it there). An rpath is added so tests and examples run in place.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=SIPP_LIB_DIR");
    let dir = match env::var_os("SIPP_LIB_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../../build/lib"),
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=sipp");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rerun-if-changed={}", dir.join("libsipp.so").display());
}
