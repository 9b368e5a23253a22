"""The collectives of the 1/8-width MNIST WAE-GAN step (batch 100) on two CPU devices.

With conv_impl=phase the chunked batch is not split over the devices: XLA gathers the batch's
activations onto each (docs/accelerators.md, conv_impl). Prints the largest collectives
for phase and xla:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
      python benchmarks/profiles/cpu_devices_collectives.py
"""

import jax
import numpy as np

from wae_jax import config as wae_config
from wae_jax import models
from wae_jax import parallel
from wae_jax import train
from wae_jax.accelerators import aot


def main():
  mesh = parallel.make_mesh()
  for impl in ('phase', 'xla'):
    config = wae_config.load_config_file('configs/mnist.py:wae_gan,small')
    config.model.conv_impl = impl
    state = jax.eval_shape(lambda: train.create_train_state(config, jax.random.PRNGKey(0), 10))
    state = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), state
    )
    images = jax.ShapeDtypeStruct(
        (100, 28, 28, 1), np.float32, sharding=parallel.batch_sharded(mesh)
    )
    step = parallel.jit_on_mesh(
        train.make_train_step(
            config,
            models.build_autoencoder(config),
            models.build_adversary(config),
            10,
            jax.random.PRNGKey(0),
        ),
        mesh,
    )
    ops = aot.parse_collectives(step.lower(state, images).compile().as_text())
    print(f'{impl} on {mesh.devices.size} CPU devices, largest collectives:')
    for op in sorted(ops, key=lambda op: -op.bytes)[:3]:
      print(f'  {op.kind:<12} {op.bytes / 1e6:6.2f} MB  {op.shapes[:60]}')


if __name__ == '__main__':
  main()
