// libtorch_cuda.so is only reached through static initialisers, so the linker's
// --as-needed drops it and CUDA silently disappears; force it in. An rpath to the
// libtorch the build used lets the binary run here without LD_LIBRARY_PATH.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if let Some(lib) = libtorch_lib_dir() {
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}

fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    let out = std::process::Command::new("python3")
        .args(["-c", "import torch,os;print(os.path.dirname(torch.__file__))"])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim()).join("lib"))
}
