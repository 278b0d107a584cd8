use anyhow::{bail, Result};
use tch::Device;

/// `cpu`, `cuda`, `cuda:N` or upstream's bare `N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let dev = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => Device::Cuda(0),
        _ => {
            let n = s.strip_prefix("cuda:").unwrap_or(&s);
            match n.parse::<usize>() {
                Ok(i) => Device::Cuda(i),
                Err(_) => bail!("--device {s}: expected cpu, cuda, cuda:N or N"),
            }
        }
    };
    if let Device::Cuda(i) = dev {
        let n = tch::Cuda::device_count() as usize;
        if i >= n {
            bail!("--device {s}: CUDA device {i} is not available ({n} CUDA devices visible)");
        }
    }
    Ok(dev)
}
