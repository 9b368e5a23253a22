"""torch.profiler over 20 forward+backward passes of the PyTorch 1/8-width decoder."""

import torch

from benchmarks import benchmark
from benchmarks import torch_reference

cfg = benchmark.model_config('mnist_small', 'mmd', 100)
tr = torch_reference.Trainer(cfg, steps_per_epoch=600)
dec = tr.model.decoder
zt = torch.randn(100, 8)


def run():
  dec.zero_grad(set_to_none=True)
  dec(zt).sum().backward()


for _ in range(5):
  run()
from torch.profiler import ProfilerActivity
from torch.profiler import profile

with profile(activities=[ProfilerActivity.CPU]) as prof:
  for _ in range(20):
    run()
print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=18))
