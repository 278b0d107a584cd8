"""Holds all but KEEP_GIB of the GPU's free memory for SECONDS, so that a benchmark run
beside it sees a smaller card (`python3 scripts/gpu_hold_memory.py 24 170 &`)."""
import sys
import time

import torch

keep_gib, seconds = float(sys.argv[1]), float(sys.argv[2])
free, _ = torch.cuda.mem_get_info()
hold = torch.empty(free - int(keep_gib * 2**30), dtype=torch.uint8, device="cuda")
left = torch.cuda.mem_get_info()[0] / 2**30
print("holding", round(hold.numel() / 2**30, 1), "GiB; left", round(left, 1), "GiB", flush=True)
time.sleep(seconds)
