// Links CUDA in and builds the C++/CUDA shims of `src/native/` against the libtorch
// that torch-sys linked (its location comes from torch-sys itself, DEP_TCH_LIBTORCH_LIB).
//
// * libtorch_cuda.so is only reached through static initialisers, so the linker's
//   --as-needed would drop it and CUDA would silently disappear: it is forced in. An
//   rpath to libtorch's lib lets the binary run here without LD_LIBRARY_PATH.
// * `train_fake_quant.cpp` (QAT's activation fake-quant autograd op) needs only torch's
//   headers: built for CPU and CUDA alike (cfg `yq_train_fake_quant`).
// * With the CUDA runtime headers at hand (the wheel's nvidia packages), the CUDA graph,
//   allocator-statistics, kernel-profile and pinned-upload shims (cfg `yq_cuda_graph`; YOLO_QAT_NO_CUDA_GRAPH=1 skips
//   them and QAT launches its kernels one by one).
// * With nvcc too (`scripts/setup.sh` installs it from PyPI), the fused kernels of
//   `*.cu` for sm_80/86/89/90 plus PTX for newer cards (cfg `yq_fused_kernels`;
//   YOLO_QAT_NO_KERNELS=1 skips them). Without nvcc the unfused ops are used.
use std::path::{Path, PathBuf};

const SHIMS: &str = "src/native";
/// Real code for the cards users have (A100, A10/RTX 30, L4/RTX 40, H100/H200), and PTX
/// that newer cards compile at load time.
const CUDA_ARCHS: [&str; 4] = ["80", "86", "89", "90"];

fn main() {
    for var in ["DEP_TCH_LIBTORCH_LIB", "YOLO_QAT_NO_CUDA_GRAPH", "YOLO_QAT_NO_KERNELS", "NVCC"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={SHIMS}");
    for cfg in ["yq_cuda_graph", "yq_train_fake_quant", "yq_fused_kernels"] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let Some(torch) = Torch::from_torch_sys() else {
        println!("cargo:warning=torch-sys did not report libtorch's lib folder; building without the C++ shims");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", torch.lib.display());
    if torch.has("include/torch/csrc/autograd/custom_function.h") {
        shim(&torch, None, &["train_fake_quant.cpp"], &[]).compile("yq_train_fake_quant");
        link(&torch, &["torch_cpu", "c10"], "yq_train_fake_quant");
    }
    if !torch.lib.join("libtorch_cuda.so").exists() {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    let Some(cuda) = cuda_include(&torch).filter(|_| std::env::var_os("YOLO_QAT_NO_CUDA_GRAPH").is_none()) else { return };
    let nvcc = nvcc(&torch).filter(|_| std::env::var_os("YOLO_QAT_NO_KERNELS").is_none());
    let mut files = vec!["cuda_graph.cpp", "allocator_stats.cpp", "kernel_profile.cpp", "cudart_forward.cpp", "pinned_upload.cpp"];
    let mut defines = vec![];
    let mut objects = vec![];
    if let Some(nvcc) = &nvcc {
        objects = kernels(nvcc, &cuda, &["silu_fake_quant.cu", "avg_pool_2x2.cu", "learned_fake_quant.cu", "bias_act.cu", "distill_mse.cu"]);
        files.extend(["silu_fake_quant.cpp", "avg_pool_2x2.cpp", "learned_fake_quant.cpp", "bias_act.cpp", "distill_mse.cpp"]);
        defines.push("YQ_KERNELS");
        println!("cargo:rustc-cfg=yq_fused_kernels");
    }
    // One archive with the kernels' objects, so no link order can lose them.
    shim(&torch, Some(&cuda), &files, &defines).objects(objects).compile("yq_cuda");
    link(&torch, &["torch_cuda", "c10_cuda", "torch_cpu", "c10"], "yq_cuda_graph");
}

/// The libtorch torch-sys linked: `lib/` as it reported it, headers beside it.
struct Torch {
    root: PathBuf,
    lib: PathBuf,
}

impl Torch {
    fn from_torch_sys() -> Option<Torch> {
        let lib = PathBuf::from(std::env::var_os("DEP_TCH_LIBTORCH_LIB")?);
        Some(Torch { root: lib.parent()?.to_path_buf(), lib })
    }

    fn has(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }
}

/// The one way a C++ shim is compiled: torch's headers and ABI, optionally CUDA's.
fn shim(torch: &Torch, cuda: Option<&Path>, files: &[&str], defines: &[&str]) -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true)
        .include(torch.root.join("include"))
        .include(torch.root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false);
    if let Some(cuda) = cuda {
        b.include(cuda);
    }
    for d in defines {
        b.define(d, None);
    }
    for f in files {
        b.file(Path::new(SHIMS).join(f));
    }
    b
}

fn link(torch: &Torch, libs: &[&str], cfg: &str) {
    println!("cargo:rustc-link-search=native={}", torch.lib.display());
    for l in libs {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    println!("cargo:rustc-cfg={cfg}");
}

/// Compiles `.cu` files with nvcc into objects: pure CUDA C++ (no torch headers), no
/// runtime linked (cudart_forward.cpp forwards the runtime calls to the libcudart that
/// libtorch loaded). A failure stops the build with nvcc's message.
fn kernels(nvcc: &Path, cuda: &Path, files: &[&str]) -> Vec<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let newest = CUDA_ARCHS[CUDA_ARCHS.len() - 1];
    files
        .iter()
        .map(|f| {
            let obj = out.join(format!("{f}.o"));
            let mut cmd = std::process::Command::new(nvcc);
            cmd.args(["-c", "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "--cudart", "none", "-I"]).arg(cuda);
            for arch in CUDA_ARCHS {
                cmd.arg(format!("-gencode=arch=compute_{arch},code=sm_{arch}"));
            }
            cmd.arg(format!("-gencode=arch=compute_{newest},code=compute_{newest}"));
            cmd.arg(Path::new(SHIMS).join(f)).arg("-o").arg(&obj);
            let st = cmd.output().unwrap_or_else(|e| panic!("{}: cannot run: {e}", nvcc.display()));
            if !st.status.success() {
                panic!("nvcc {f} failed:\n{}{}", String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st.stderr));
            }
            obj
        })
        .collect()
}

/// nvcc: `$NVCC`, else the one the nvidia-cuda-nvcc wheel put beside torch, else a toolkit.
fn nvcc(torch: &Torch) -> Option<PathBuf> {
    let site = torch.root.parent()?;
    let mut candidates = vec![site.join("nvidia/cu13/bin/nvcc")];
    if let Some(p) = std::env::var_os("NVCC") {
        candidates.insert(0, PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("bin/nvcc"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A complete set of CUDA runtime headers: beside torch in the wheel's dependencies (the
/// nvidia runtime package lacks `crt/`, triton bundles all of them), or a CUDA toolkit.
fn cuda_include(torch: &Torch) -> Option<PathBuf> {
    let site = torch.root.parent()?;
    let mut candidates: Vec<PathBuf> =
        ["nvidia/cu13/include", "nvidia/cuda_runtime/include", "triton/backends/nvidia/include"].iter().map(|p| site.join(p)).collect();
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        candidates.push(PathBuf::from(home).join("include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.into_iter().find(|d| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists())
}
