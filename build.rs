// libtorch_cuda.so is only reached through static initialisers, so the linker's
// --as-needed drops it and CUDA silently disappears; force it in. An rpath to the
// libtorch the build used lets the binary run here without LD_LIBRARY_PATH.
// With the CUDA runtime headers at hand (the torch wheel's nvidia packages), the
// CUDA graph shim (src/cuda/graph.cpp) is compiled too and `yq_cuda_graph` is set
// (YOLO_QAT_NO_CUDA_GRAPH=1 skips it; QAT then launches its kernels one by one).
// The QAT fake-quant autograd op (src/quant/train_fake_quant.cpp) needs only torch's
// headers and is built for CPU and CUDA alike (`yq_train_fake_quant`).
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-changed=src/cuda/graph.cpp");
    println!("cargo:rerun-if-changed=src/cuda/cudart_forward.cpp");
    println!("cargo:rerun-if-env-changed=YOLO_QAT_NO_CUDA_GRAPH");
    println!("cargo:rerun-if-changed=src/quant/train_fake_quant.cpp");
    println!("cargo::rustc-check-cfg=cfg(yq_cuda_graph)");
    println!("cargo::rustc-check-cfg=cfg(yq_train_fake_quant)");
    let Some(torch) = torch_dir() else { return };
    let lib = torch.join("lib");
    build_train_fake_quant(&torch, &lib);
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        let opted_out = std::env::var_os("YOLO_QAT_NO_CUDA_GRAPH").is_some();
        if let Some(cuda_include) = cuda_include(&torch).filter(|_| !opted_out) {
            build_graph_shim(&torch, &lib, &cuda_include);
        }
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
}

/// The QAT fake-quant autograd op (src/quant/train_fake_quant.cpp); CPU and CUDA alike.
fn build_train_fake_quant(torch: &Path, lib: &Path) {
    if !torch.join("include/torch/csrc/autograd/custom_function.h").exists() {
        return;
    }
    cc::Build::new()
        .cpp(true)
        .file("src/quant/train_fake_quant.cpp")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("yq_train_fake_quant");
    println!("cargo:rustc-link-search=native={}", lib.display());
    for l in ["torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-cfg=yq_train_fake_quant");
}

fn build_graph_shim(torch: &Path, lib: &Path, cuda_include: &Path) {
    cc::Build::new()
        .cpp(true)
        .file("src/cuda/graph.cpp")
        .file("src/cuda/cudart_forward.cpp")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .include(cuda_include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("yq_cuda_graph");
    println!("cargo:rustc-link-search=native={}", lib.display());
    for l in ["torch_cuda", "c10_cuda", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-cfg=yq_cuda_graph");
}

/// The torch package folder: `$LIBTORCH`, else what the `python3` on PATH imports.
fn torch_dir() -> Option<PathBuf> {
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(root));
    }
    let out = std::process::Command::new("python3").args(["-c", "import torch,os;print(os.path.dirname(torch.__file__))"]).output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim()))
}

/// A complete set of CUDA runtime headers: beside torch in the wheel's dependencies (the
/// nvidia runtime package lacks `crt/`, triton bundles all of them), or a CUDA toolkit.
fn cuda_include(torch: &Path) -> Option<PathBuf> {
    let site = torch.parent()?;
    let mut candidates: Vec<PathBuf> =
        ["nvidia/cu13/include", "nvidia/cuda_runtime/include", "triton/backends/nvidia/include"].iter().map(|p| site.join(p)).collect();
    if let Ok(home) = std::env::var("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.into_iter().find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())
}
