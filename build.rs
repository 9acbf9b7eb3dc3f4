//! Build script. A no-op unless the `ros` feature is enabled.
//!
//! With `ros`, it adds what the ROS 2 wheels from PyPI need to link `matcha_node` (see
//! `scripts/lib/ros_env.sh`, which sets these variables; with a normal ROS 2 install they are unset and
//! nothing is added):
//! - `MATCHA_ROS_LINK_DIR`: a directory holding a `librmw_implementation.so` symlink (r2r links
//!   `-lrmw_implementation`, which the wheels do not ship);
//! - `MATCHA_ROS_LIBPYTHON` / `MATCHA_ROS_LIBPYTHON_DIR`: the wheels' `librcl.so` pulls in the
//!   `*__rosidl_generator_py.so` libraries, which need libpython symbols in a non-Python executable.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_ROS").is_none() {
        return;
    }
    for var in [
        "MATCHA_ROS_LINK_DIR",
        "MATCHA_ROS_LIBPYTHON",
        "MATCHA_ROS_LIBPYTHON_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Ok(dir) = std::env::var("MATCHA_ROS_LINK_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
    }
    if let Ok(lib) = std::env::var("MATCHA_ROS_LIBPYTHON") {
        if let Ok(dir) = std::env::var("MATCHA_ROS_LIBPYTHON_DIR") {
            println!("cargo:rustc-link-search=native={dir}");
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-l{lib}");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
