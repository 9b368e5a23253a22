"""The paper's CelebA settings (Appendix C): 64x64x3, d_z 64, N(0, 2 I), 5x5 filters. Only
what differs from wae_jax.config.base_config() (the paper's MNIST WAE-MMD) is set here.

Argument: comma-separated key=value pairs, each optional (the first value is the default):
- objective = wae_mmd | wae_gan | vae | wae_swd | wae_sinkhorn
e.g. `--config=configs/celeba.py:objective=wae_gan`, or with the bare value,
`configs/celeba.py:wae_gan`. WAE-GAN adds the prior's log-density to the adversary's logits
(the log-prior trick), as the paper's CelebA runs do.
"""

from wae_jax import config as wae_config

OBJECTIVES = tuple(wae_config.OBJECTIVES)  # wae_mmd wae_gan vae wae_swd wae_sinkhorn


def get_config(arg: str = ''):
  args = wae_config.parse_arg(__file__, arg, objective=OBJECTIVES)
  c = wae_config.base_config()
  c.data.name = 'celeba'
  c.data.image_shape = (64, 64, 3)
  c.data.pixel_range = (-1.0, 1.0)
  c.model.latent_dim = 64
  c.model.prior_variance = 2.0
  c.model.kernel_size = 5
  c.model.decoder_widths = (1024, 512, 256, 128)  # one more upsampling: 8x8 -> 64x64
  c.train.num_epochs = 55
  c.train.lr_decay = ((30, 0.5), (50, 0.2), (100, 0.1))

  c.penalty.name = wae_config.OBJECTIVES[args.objective]
  if args.objective in ('wae_mmd', 'wae_swd'):  # WAE-SWD: as WAE-MMD's (not in the paper)
    c.penalty.lam = 100.0
  elif args.objective == 'wae_gan':
    c.penalty.lam = 1.0
    c.penalty.log_prior_trick = True
    c.train.learning_rate = 3e-4
    c.train.adversary_learning_rate = 1e-3
  elif args.objective == 'wae_sinkhorn':  # lambda 100 / d_z: see configs/mnist.py
    c.penalty.lam = 100.0 / c.model.latent_dim
  elif args.objective == 'vae':  # Gaussian encoder, Gaussian decoder (squared loss), KL 1
    c.penalty.lam = 1.0
    c.model.gaussian_encoder = True
    c.train.pretrain_steps = 0
    c.train.input_noise = 0.0
  return c
