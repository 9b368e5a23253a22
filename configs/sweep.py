"""The bigWAE random search (Supplementary D of the paper) as data.

Argument: `name=bigwae|tiny` (bigwae is the default; the bare value works too). Run it with
`python launch/ray_sweep.py --sweep=configs/sweep.py:name=bigwae --root=DIR`, and override any
field the ml_collections way, e.g. `--sweep.num_configs=10 --sweep.fixed.data.dir=/data/celeba`.

- `base[method]`: the `configs/<dataset>.py:<objective>` each method's trials start from, a
  path relative to the current directory (each trial keeps it as an absolute path).
- `space[method]`: field path -> distribution, sampled once per configuration:
  ('choice', (a, b, ...)), ('uniform', low, high) or ('log_uniform', low, high).
  `penalty.kernel_scale_factor` is not a config field: it sets the IMQ base scale
  `penalty.kernel_scale` as a multiple of the paper's C = 2 * d_z * sigma_z^2 (so that it
  follows the sampled d_z); wae_jax/sweep/trials.py's DERIVED is the one place such values are made.
- `fixed`: fields set in every trial (data folder, eval settings, logging); a field left None
  keeps the base config's value. Paths must be absolute: a trial's processes run in its folder.
- every configuration trains `seeds_per_config` times (config.seed = 0, 1, ...) for
  `num_steps` steps, keeping `num_checkpoints` evenly spaced checkpoints; each is evaluated
  and the one with the lowest FID is the trial's result.

The ranges below are ours, not the paper's (the paper names what was searched, not over
which ranges): edit them. bigwae: 333 configurations per method x 3 seeds x 3 methods = 2,997
runs (the paper's ~3,000). `model.arch='resnet50v2'` is wae_jax/models/resnet.py's ResNet50-v2.
FID on CelebA needs the Inception weights (`--sweep.fixed.eval.inception_weights=PATH` or
$WAE_JAX_INCEPTION_WEIGHTS); MNIST trials fall back to the MNIST classifier's FID.

tiny: MNIST, WAE-MMD, a 1/32-width model with two layers each way, 2 configurations x 2 seeds
of 20 steps with 2 checkpoints and 500 FID samples: a demo of the whole path in a few minutes on
a laptop, and what tests/test_sweep.py runs.
"""

import ml_collections
from ml_collections import config_dict

from wae_jax import config as wae_config
from wae_jax.sweep import trials

# Shared by every method: fields as in wae_jax/config.py's base_config.
_COMMON = {
    'model.arch': ('choice', ('dcgan', 'resnet50v2')),
    'model.latent_dim': ('choice', (32, 64, 128)),
    'train.batch_size': ('choice', (64, 100, 128)),
    'train.learning_rate': ('log_uniform', 1e-4, 3e-3),
}
_BIGWAE_SPACE = {
    'wae_mmd': {
        **_COMMON,
        'model.gaussian_encoder': ('choice', (False, True)),
        'penalty.lam': ('log_uniform', 1.0, 1000.0),
        'penalty.kernel_scale_factor': ('log_uniform', 0.1, 10.0),
    },
    'wae_gan': {
        **_COMMON,
        'model.gaussian_encoder': ('choice', (False, True)),
        'penalty.lam': ('log_uniform', 0.1, 100.0),
        'train.adversary_learning_rate': ('log_uniform', 1e-4, 3e-3),
    },
    # The VAE's encoder is always Gaussian; lambda is its KL weight.
    'vae': {**_COMMON, 'penalty.lam': ('log_uniform', 0.1, 10.0)},
    # Not in the paper's sweep (add them with --sweep.methods=...): the same span of lambda as
    # WAE-MMD's, scaled by 1/d_z for the Sinkhorn divergence (it sums over the dimensions).
    'wae_swd': {
        **_COMMON,
        'model.gaussian_encoder': ('choice', (False, True)),
        'penalty.lam': ('log_uniform', 1.0, 1000.0),
        'penalty.num_projections': ('choice', (50, 100, 200)),
    },
    'wae_sinkhorn': {
        **_COMMON,
        'model.gaussian_encoder': ('choice', (False, True)),
        'penalty.lam': ('log_uniform', 0.01, 10.0),
        'penalty.sinkhorn_epsilon': ('log_uniform', 0.1, 10.0),
    },
}


def _fixed(**overrides) -> ml_collections.ConfigDict:
  """Fields every trial gets. The paths are unset (None) placeholders, typed so that the
  command line can set them (`--sweep.fixed.data.dir=...`)."""
  flat = {path: config_dict.placeholder(str) for path in wae_config.PATH_FIELDS}
  flat.update(overrides)
  return trials.nested(flat)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  name = wae_config.parse_arg(__file__, arg, name=('bigwae', 'tiny')).name
  c = ml_collections.ConfigDict()
  c.name = name
  c.sweep_seed = 0
  if name == 'bigwae':
    c.methods = ('wae_mmd', 'wae_gan', 'vae')  # the paper's; wae_swd and wae_sinkhorn also exist
    c.base = {m: f'configs/celeba.py:{m}' for m in _BIGWAE_SPACE}
    c.space = {m: trials.nested(s) for m, s in _BIGWAE_SPACE.items()}
    c.num_configs = 333
    c.seeds_per_config = 3
    c.num_steps = 100_000
    c.num_checkpoints = 5
    c.fixed = _fixed(
        **{'eval.num_samples': 10_000, 'train.log_every': 1000, 'train.image_every': 20_000}
    )
  elif name == 'tiny':
    c.methods = ('wae_mmd',)
    c.base = {'wae_mmd': 'configs/mnist.py:wae_mmd,small'}
    c.space = {
        'wae_mmd': trials.nested(
            {
                'model.latent_dim': ('choice', (4, 8)),
                'train.learning_rate': ('log_uniform', 3e-4, 3e-3),
                'penalty.lam': ('log_uniform', 1.0, 100.0),
            }
        )
    }
    c.num_configs = 2
    c.seeds_per_config = 2
    c.num_steps = 20
    c.num_checkpoints = 2
    c.fixed = _fixed(
        **{
            'model.width': 1 / 32,
            'model.adversary_width': 1 / 32,
            # Two stride-2 layers each way, not the DCGAN's four and three: compiles faster.
            'model.encoder_widths': (128, 256),
            'model.decoder_widths': (256, 128),
            'train.batch_size': 8,
            'train.pretrain_steps': 0,
            'train.log_every': 10,
            'eval.num_samples': 500,
            'eval.sharpness_images': 100,
            'eval.mmd_codes': 100,
            'eval.gmm_train_images': 500,
        }
    )
  return c
