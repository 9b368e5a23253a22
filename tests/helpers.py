"""What tests share: the checkout, the real MNIST files, configs small enough to train fast, a
command's one error line."""

import os
import pathlib

from wae_jax import config as wae_config

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = pathlib.Path(
    os.environ.get('WAE_JAX_MNIST_DIR', REPO.parent / 'shared' / 'data' / 'mnist')
)


def load_config(name: str, arg: str):
  """`get_config(arg)` of configs/<name>.py, loaded by path as the CLI does."""
  return wae_config.load_config_file(f'{REPO / "configs" / name}.py:{arg}')


def tiny_config(objective: str = 'wae_mmd', dataset: str = 'mnist'):
  """A config with a very narrow model and few steps, for fast tests."""
  config = load_config(dataset, objective)
  config.model.width = 1 / 32
  config.model.adversary_width = 1 / 32
  config.data.dir = str(MNIST_DIR)
  config.train.batch_size = 8
  config.train.pretrain_steps = 0
  return config


# Two stride-2 layers each way instead of the DCGAN's four and three: a step compiles in less
# time, for tests whose point does not depend on the depth.
SHALLOW = {'model.encoder_widths': (128, 256), 'model.decoder_widths': (256, 128)}
SHALLOW_FLAGS = tuple(f'--config.{path}={value}' for path, value in SHALLOW.items())


def shallow_config(objective: str = 'wae_mmd'):
  """tiny_config with SHALLOW nets."""
  config = tiny_config(objective)
  config.model.encoder_widths, config.model.decoder_widths = SHALLOW.values()
  return config


def error_line(result) -> str:
  """The command's one `error:` line, checking that it failed as a project error does."""
  assert result.returncode == 2, result.stderr[-4000:]
  assert 'Traceback' not in result.stderr, result.stderr[-4000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr[-4000:]
  return lines[0]


def sweep_config(arg='bigwae', **fields):
  """configs/sweep.py:<arg> with `fields` set."""
  s = wae_config.load_config_file(f'configs/sweep.py:{arg}')
  s.update(fields)
  return s
