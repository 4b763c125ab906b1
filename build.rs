//! Builds the one C file, for the server: `long double` arithmetic for INCRBYFLOAT and
//! HINCRBYFLOAT (csrc/long_double.c, called from src/server/cmd/float.rs). An embedded build
//! without the "server" feature compiles no C.

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    if std::env::var_os("CARGO_FEATURE_SERVER").is_none() {
        return;
    }
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .compile("quipu_long_double");
}
