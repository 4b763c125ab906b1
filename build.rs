//! Builds the one C file: `long double` arithmetic for INCRBYFLOAT (csrc/long_double.c).

fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .compile("quipu_long_double");
}
