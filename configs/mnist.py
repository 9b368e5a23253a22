"""The paper's MNIST settings (Appendix C).

Argument: `<objective>[,small]`, objective in wae_mmd | wae_gan | vae, e.g.
`--config=configs/mnist.py:wae_gan,small`. `small` is the CPU-sized model (1/8 width)
whose default run trains in minutes on a 2-core machine.
"""

from wae_jax import config as wae_config

OBJECTIVES = ('wae_mmd', 'wae_gan', 'vae')


def get_config(arg: str = 'wae_mmd'):
  objective, *options = [a.strip() for a in arg.split(',')]
  if objective not in OBJECTIVES or set(options) - {'small'}:
    raise ValueError(f'configs/mnist.py:{arg!r}: expected <objective>[,small] with objective '
                     f'in {", ".join(OBJECTIVES)}')
  c = wae_config.base_config()
  c.data.name = 'mnist'
  c.data.image_shape = (28, 28, 1)
  c.data.pixel_range = (0.0, 1.0)
  c.model.latent_dim = 8
  c.model.prior_variance = 1.0
  c.model.kernel_size = 4
  c.model.encoder_widths = (128, 256, 512, 1024)
  c.model.decoder_widths = (1024, 512, 256)
  c.train.batch_size = 100
  c.train.num_epochs = 100
  c.train.learning_rate = 1e-3
  c.train.adversary_learning_rate = 5e-4
  c.train.lr_decay = ((30, 0.5), (50, 0.2))

  if objective == 'wae_mmd':
    c.penalty.name, c.penalty.lam = 'mmd', 10.0
  elif objective == 'wae_gan':
    c.penalty.name, c.penalty.lam = 'gan', 10.0
  else:  # The VAE baseline: Gaussian encoder, Bernoulli decoder, KL weight 1.
    c.penalty.name, c.penalty.lam = 'vae', 1.0
    c.model.gaussian_encoder = True
    c.cost.name, c.cost.scale = 'bernoulli', 1.0
    c.train.pretrain_steps = 0
    c.train.input_noise = 0.0

  if 'small' in options:
    c.model.width = 0.125          # 16-32-64-128 channels
    c.model.adversary_width = 0.25  # 4 x 128 units
    c.train.num_epochs = 5          # 3,000 steps
    c.train.lr_decay = ((3, 0.5), (4, 0.2))
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.train.image_every = 1000
  return c
