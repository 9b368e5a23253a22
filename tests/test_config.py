"""Config files load for every argument, and bad values fail early with a clear message."""

import fnmatch
import json
import re

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from tests.helpers import load_config
from tests.helpers import REPO
from wae_jax import config as wae_config
from wae_jax import config_reference


@pytest.mark.parametrize(
    'arg', [f'{objective}{size}' for objective in wae_config.OBJECTIVES for size in ('', ',small')]
)
def test_mnist_configs_are_valid(arg):
  config = load_config('mnist', arg)
  wae_config.validate(config)
  assert config.model.latent_dim == 8
  assert (
      config.penalty.name
      == {
          'wae_mmd': 'mmd',
          'wae_gan': 'gan',
          'vae': 'vae',
          'wae_swd': 'swd',
          'wae_sinkhorn': 'sinkhorn',
      }[arg.split(',')[0]]
  )
  assert config.model.width == (0.125 if 'small' in arg else 1.0)


@pytest.mark.parametrize('arg', list(wae_config.OBJECTIVES))
def test_celeba_configs_are_valid(arg):
  config = load_config('celeba', arg)
  wae_config.validate(config)
  assert tuple(config.data.image_shape) == (64, 64, 3)


def test_paper_settings():
  mmd, gan = load_config('celeba', 'wae_mmd'), load_config('celeba', 'wae_gan')
  assert (mmd.penalty.lam, gan.penalty.lam) == (100.0, 1.0)
  assert (gan.train.learning_rate, gan.train.adversary_learning_rate) == (3e-4, 1e-3)
  mnist = load_config('mnist', 'wae_gan')
  assert (mnist.penalty.lam, mnist.train.learning_rate, mnist.train.adam_b1) == (10.0, 1e-3, 0.5)
  assert mnist.train.adversary_learning_rate == 5e-4


def test_bad_config_argument():
  with pytest.raises(ValueError, match='wae_mmd, wae_gan, vae'):
    load_config('mnist', 'wae_foo')


@pytest.mark.parametrize(
    'field,value,message',
    [
        ('penalty.name', 'wgan', "allowed: 'mmd', 'gan', 'vae', 'swd', 'sinkhorn'"),
        ('penalty.gan_update', 'both', "allowed: 'simultaneous', 'alternating'"),
        ('penalty.num_projections', 0, 'must be >= 1'),
        ('penalty.swd_p', 0.5, 'must be >= 1'),
        ('penalty.sinkhorn_epsilon', 0.0, 'must be > 0'),
        ('penalty.sinkhorn_max_iterations', 0, 'must be >= 1'),
        ('eval.sampler', 'vae', "allowed: 'prior', 'gmm', 'both'"),
        ('eval.gmm_covariance', 'diagonal', "allowed: 'full', 'diag', 'tied', 'spherical'"),
        ('eval.gmm_components', 0, 'must be >= 1'),
        ('penalty.kernel', 'laplace', "allowed: 'rbf', 'imq', 'imq_multiscale'"),
        ('data.name', 'cifar', "allowed: 'mnist', 'celeba'"),
        ('cost.name', 'l3', 'allowed:'),
        ('penalty.lam', 0.0, 'must be > 0'),
        ('penalty.lam', float('inf'), 'must be > 0 and finite'),
        ('train.learning_rate', float('inf'), 'must be > 0 and finite'),
        ('train.learning_rate', 0.0, 'must be > 0'),
        ('train.learning_rate', -0.001, 'must be > 0'),
        ('train.adversary_learning_rate', float('nan'), 'must be > 0 and finite'),
        ('train.pretrain_learning_rate', float('inf'), 'must be > 0 and finite'),
        ('model.prior_variance', float('inf'), 'must be > 0 and finite'),
        ('train.lr_decay', ('abc',), r'must be a tuple of \(epoch >= 0, factor > 0\) pairs'),
        (
            'train.lr_decay',
            ((30, 0.5), (50,)),
            r'must be a tuple of \(epoch >= 0, factor > 0\) pairs',
        ),
        ('train.lr_decay', ((30, -0.5),), r'must be a tuple of \(epoch >= 0, factor > 0\) pairs'),
        (
            'train.lr_decay',
            ((float('nan'), 0.5),),
            r'must be a tuple of \(epoch >= 0, factor > 0\)',
        ),
        ('penalty.kernel_scale', float('inf'), 'must be > 0 and finite, or None'),
        ('train.input_noise', -0.1, 'must be >= 0 and finite'),
        ('train.adam_b1', 1.0, r'must be in \[0, 1\)'),
        ('cost.scale', float('nan'), 'must be > 0 and finite'),
        ('model.latent_dim', 0, 'must be >= 1'),
        ('train.batch_size', 1, 'needs two codes'),
        ('model.arch', 'vgg', "allowed: 'dcgan'"),
        ('model.dtype', 'float16', "allowed: 'float32', 'bfloat16'"),
        ('model.width', -1.0, 'must be > 0'),
        ('data.dir', '/no/such/dir', 'no such directory'),
        ('data.source', 'http', "allowed: 'auto', 'tfds', 'idx'"),
        ('train.max_nonfinite_steps', 0, 'must be >= 1'),
        ('train.checkpoint_every', 0, 'must be >= 1'),
        ('eval.batch_size', 0, 'must be >= 1'),
        ('eval.grid_samples', 0, 'must be >= 1'),
        ('eval.num_samples', 1, 'must be >= 2 .the MMD of the test codes needs two'),
        ('eval.mmd_codes', 1, 'must be >= 2'),
        ('model.conv_impl', 'cudnn', "allowed: 'auto', 'phase', 'xla'"),
    ],
)
def test_validation_names_field_value_and_allowed(field, value, message):
  config = load_config('mnist', 'wae_mmd')
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ValueError, match=message) as error:
    wae_config.validate(config)
  assert f'config.{field}={value!r}' in str(error.value)


# ---------------------------------------------------------------------------------------------
# Defaults once: configs/*.py set only what differs from base_config(), with the values they
# had when each file restated the defaults.

_SMALL = {
    'model.width': 0.125,
    'model.adversary_width': 0.25,
    'train.num_epochs': 5,
    'train.lr_decay': ((3, 0.5), (4, 0.2)),
}
_MNIST_VAE = {
    'penalty.name': 'vae',
    'penalty.lam': 1.0,
    'model.gaussian_encoder': True,
    'cost.name': 'bernoulli',
    'cost.scale': 1.0,
    'train.pretrain_steps': 0,
    'train.input_noise': 0.0,
}
_CELEBA = {
    'data.name': 'celeba',
    'data.image_shape': (64, 64, 3),
    'data.pixel_range': (-1.0, 1.0),
    'model.latent_dim': 64,
    'model.prior_variance': 2.0,
    'model.kernel_size': 5,
    'model.decoder_widths': (1024, 512, 256, 128),
    'train.num_epochs': 55,
    'train.lr_decay': ((30, 0.5), (50, 0.2), (100, 0.1)),
    'penalty.lam': 100.0,
}
# Each config file argument -> the fields in which its config differs from base_config().
_DIFFERENCES = {
    'mnist': {},
    'mnist:wae_mmd': {},
    'mnist:wae_gan': {'penalty.name': 'gan'},
    'mnist:vae': _MNIST_VAE,
    'mnist:wae_mmd,small': {'penalty.lam': 3.333, **_SMALL},
    'mnist:wae_gan,small': {'penalty.name': 'gan', 'penalty.lam': 3.333, **_SMALL},
    'mnist:vae,small': {**_MNIST_VAE, **_SMALL},
    'mnist:wae_swd': {'penalty.name': 'swd'},
    'mnist:wae_sinkhorn,small': {'penalty.name': 'sinkhorn', 'penalty.lam': 1.25, **_SMALL},
    'celeba:wae_swd': {**_CELEBA, 'penalty.name': 'swd'},
    'celeba:wae_sinkhorn': {**_CELEBA, 'penalty.name': 'sinkhorn', 'penalty.lam': 100 / 64},
    'celeba': _CELEBA,
    'celeba:wae_mmd': _CELEBA,
    'celeba:wae_gan': {
        **_CELEBA,
        'penalty.name': 'gan',
        'penalty.lam': 1.0,
        'penalty.log_prior_trick': True,
        'train.learning_rate': 3e-4,
        'train.adversary_learning_rate': 1e-3,
    },
    'celeba:vae': {
        **_CELEBA,
        'penalty.name': 'vae',
        'penalty.lam': 1.0,
        'model.gaussian_encoder': True,
        'train.pretrain_steps': 0,
        'train.input_noise': 0.0,
    },
}
# base_config() outside eval: the paper's MNIST WAE-MMD.
_BASE = {
    'seed': 0,
    'data.name': 'mnist',
    'data.source': 'auto',
    'data.dir': None,
    'data.cache_dir': None,
    'data.image_shape': (28, 28, 1),
    'data.pixel_range': (0.0, 1.0),
    'model.arch': 'dcgan',
    'model.latent_dim': 8,
    'model.prior_variance': 1.0,
    'model.width': 1.0,
    'model.kernel_size': 4,
    'model.encoder_widths': (128, 256, 512, 1024),
    'model.decoder_widths': (1024, 512, 256),
    'model.gaussian_encoder': False,
    'model.adversary_widths': (512, 512, 512, 512),
    'model.adversary_width': 1.0,
    'model.conv_impl': 'auto',
    'model.dtype': 'float32',
    'model.resnet_stage_blocks': (3, 4, 6, 3),
    'model.resnet_widths': (64, 128, 256, 512),
    'penalty.name': 'mmd',
    'penalty.lam': 10.0,
    'penalty.kernel': 'imq_multiscale',
    'penalty.kernel_scale': None,
    'penalty.log_prior_trick': False,
    'penalty.gan_update': 'simultaneous',
    'penalty.num_projections': 50,
    'penalty.swd_p': 2.0,
    'penalty.sinkhorn_epsilon': 1.0,
    'penalty.sinkhorn_max_iterations': 200,
    'cost.name': 'l2sq',
    'cost.scale': 0.05,
    'train.batch_size': 100,
    'train.num_epochs': 100,
    'train.num_steps': None,
    'train.learning_rate': 1e-3,
    'train.adversary_learning_rate': 5e-4,
    'train.adam_b1': 0.5,
    'train.lr_decay': ((30, 0.5), (50, 0.2)),
    'train.pretrain_steps': 200,
    'train.pretrain_learning_rate': 1e-3,
    'train.input_noise': 0.01,
    'train.log_every': 100,
    'train.checkpoint_every': 1000,
    'train.keep_checkpoints': 3,
    'train.image_every': 1000,
    'train.max_nonfinite_steps': 20,
}


def test_base_config_is_the_papers_mnist_wae_mmd():
  base = wae_config.flatten(wae_config.base_config())
  assert {k: v for k, v in base.items() if not k.startswith('eval.')} == _BASE
  assert base['eval.cache_dir'] is None and base['eval.inception_weights'] is None


@pytest.mark.parametrize('spec', sorted(_DIFFERENCES))
def test_config_files_set_only_what_differs_from_the_base(spec):
  name, _, arg = spec.partition(':')
  config = wae_config.load_config_file(f'{REPO / "configs" / name}.py' + (f':{arg}' if arg else ''))
  wae_config.validate(config)
  flat, base = wae_config.flatten(config), wae_config.flatten(wae_config.base_config())
  assert set(flat) == set(base)
  assert {k: v for k, v in flat.items() if v != base[k]} == _DIFFERENCES[spec]


@pytest.mark.parametrize(
    'name,new,old',
    [
        ('mnist', 'objective=wae_gan,size=small', 'wae_gan,small'),
        ('mnist', 'size=small,objective=vae', 'vae,small'),
        ('mnist', 'size=small', 'wae_mmd,small'),
        ('mnist', 'objective=vae, size=paper', 'vae'),
        ('mnist', 'wae_gan,size=small', 'wae_gan,small'),
        ('mnist', '', 'wae_mmd'),
        ('celeba', 'objective=wae_gan', 'wae_gan'),
    ],
)
def test_key_value_arguments_match_the_short_forms(name, new, old):
  assert load_config(name, new).to_dict() == load_config(name, old).to_dict()


@pytest.mark.parametrize(
    'spec,part',
    [
        ('mnist.py:wae_mdm', "'wae_mdm' is not a value of any key"),
        ('mnist.py:objective=x', "objective='x' is not allowed"),
        ('mnist.py:objectiv=vae', "unknown key 'objectiv'"),
        ('mnist.py:wae_mmd,wae_gan', 'objective is given twice'),
        ('mnist.py:small,size=paper', 'size is given twice'),
        ('celeba.py:small', "'small' is not a value of any key"),
        ('sweep.py:huge', "'huge' is not a value of any key"),
    ],
)
def test_bad_arguments_name_the_file_the_part_and_what_is_allowed(spec, part, monkeypatch):
  monkeypatch.chdir(REPO)
  file, _, arg = spec.partition(':')
  with pytest.raises(ValueError) as error:
    wae_config.load_config_file(f'configs/{file}:{arg}')
  message = str(error.value)
  assert '\n' not in message and part in message
  assert message.startswith(f'configs/{file}:{arg}: ')
  objectives = 'objective = wae_mmd, wae_gan, vae, wae_swd, wae_sinkhorn'
  allowed = {'sweep.py': 'name = bigwae, tiny', 'celeba.py': f'{objectives} (the first'}.get(
      file, f'{objectives}; size = paper, small'
  )
  assert allowed in message


def test_parse_arg_defaults_bare_values_and_where_the_file_is(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Outside the folder of the file: its absolute path.
  with pytest.raises(ValueError, match=f'^{re.escape(str(REPO))}/configs/mnist.py:wae_mdm: '):
    wae_config.load_config_file(f'{REPO}/configs/mnist.py:wae_mdm')
  options = dict(a=('x', 'y'), b=('y', 'z'))
  assert wae_config.parse_arg('f.py', '', **options).to_dict() == {'a': 'x', 'b': 'y'}
  assert wae_config.parse_arg('f.py', 'z, a=y', **options).to_dict() == {'a': 'y', 'b': 'z'}
  with pytest.raises(ValueError, match="'y' is a value of a and b: write key=y"):
    wae_config.parse_arg('f.py', 'y', **options)


def test_config_files_resolve_against_the_current_directory_only(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError) as error:
    wae_config.load_config_file('configs/mnist.py:wae_gan')
  message = str(error.value)
  assert "'configs/mnist.py'" in message and str(tmp_path) in message and '\n' not in message
  assert not hasattr(wae_config, 'REPO')
  config = wae_config.load_config_file(f'{REPO / "configs" / "mnist.py"}:wae_gan')
  assert config.penalty.name == 'gan'
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'mnist.py').write_text((REPO / 'configs' / 'mnist.py').read_text())
  assert wae_config.resolve_config_file('configs/mnist.py:vae') == (
      f'{tmp_path.resolve() / "configs" / "mnist.py"}:vae'
  )


# ---------------------------------------------------------------------------------------------
# None for unset: typed placeholders, which command-line overrides still set.


def test_unset_fields_are_typed_placeholders_the_command_line_can_set(tmp_path):
  flag_values = flags.FlagValues()
  argv = [
      'prog',
      f'--config={REPO / "configs" / "mnist.py"}:objective=wae_gan,size=small',
      '--config.train.num_steps=200',
      '--config.penalty.kernel_scale=2.5',
      f'--config.data.dir={tmp_path}',
      f'--config.data.cache_dir={tmp_path}',
      f'--config.eval.cache_dir={tmp_path}',
      '--config.eval.inception_weights=/w.pth',
  ]
  config_flags.DEFINE_config_file(
      'config', None, 'test', flag_values=flag_values, lock_config=True, sys_argv=argv
  )
  flag_values(argv)
  config = flag_values.config
  assert config.train.num_steps == 200 and config.penalty.kernel_scale == 2.5
  assert config.data.dir == config.data.cache_dir == config.eval.cache_dir == str(tmp_path)
  assert config.eval.inception_weights == '/w.pth'
  assert (config.penalty.name, config.model.width) == ('gan', 0.125)
  wae_config.validate(config)
  unset = load_config('mnist', 'wae_mmd')
  for field, kind in [
      ('train.num_steps', int),
      ('penalty.kernel_scale', float),
      ('data.dir', str),
      ('data.cache_dir', str),
      ('eval.cache_dir', str),
      ('eval.inception_weights', str),
  ]:
    group, name = field.split('.')
    assert unset[group][name] is None and unset[group].get_type(name) is kind, field


@pytest.mark.parametrize(
    'field,value,message',
    [
        ('train.num_steps', 0, 'must be >= 1 or None (use num_epochs)'),
        ('penalty.kernel_scale', 0.0, "must be > 0 and finite, or None (the paper's C"),
        ('data.dir', '', 'must be a path, or None'),
        ('data.cache_dir', ' ', 'must be a path, or None'),
        ('eval.inception_weights', '', 'must be a path, or None'),
    ],
)
def test_old_sentinels_are_rejected(field, value, message):
  config = load_config('mnist', 'wae_mmd')
  group, name = field.split('.')
  config[group][name] = value
  with pytest.raises(ValueError, match=re.escape(message)) as error:
    wae_config.validate(config)
  assert f'config.{field}={value!r}' in str(error.value)


def test_num_epochs_counts_when_num_steps_is_unset():
  config = load_config('mnist', 'wae_mmd')
  config.train.num_epochs = 0
  with pytest.raises(ValueError, match='must be > 0 when train.num_steps is None'):
    wae_config.validate(config)
  config.train.num_steps = 10
  wae_config.validate(config)


def test_flatten_takes_config_dicts_and_plain_dicts():
  tree = {'a': {'b': 1, 'c': {'d': (2, 3)}}, 'e': None}
  assert wae_config.flatten(tree) == {'a.b': 1, 'a.c.d': (2, 3), 'e': None}
  assert wae_config.flatten(ml_collections.ConfigDict(tree)) == wae_config.flatten(tree)


def test_every_config_field_is_described_and_docs_config_md_is_generated_from_them():
  """Each field of base_config has a comment, its description in docs/config.md, and
  docs/config.md is what `python -m wae_jax.config_reference` makes of them."""
  described = config_reference.descriptions()
  missing = [f for f in wae_config.flatten(wae_config.base_config()) if not described.get(f)]
  assert not missing, f'fields of base_config without a comment: {missing}'
  assert (
      REPO / 'docs' / 'config.md'
  ).read_text() == config_reference.markdown(), (
      f"docs/config.md is not what base_config's comments give: run `{config_reference.COMMAND}`"
  )


def test_the_config_reference_sees_a_field_without_a_comment_and_a_stray_comment(monkeypatch):
  def base_config():
    c = ml_collections.ConfigDict()
    c.seed = 0  # the seed
    c.train = ml_collections.ConfigDict()
    c.train.steps = 5
    return c

  monkeypatch.setattr(wae_config, 'base_config', base_config)
  assert config_reference.descriptions() == {'seed': 'the seed', 'train': '', 'train.steps': ''}

  def base_config_with_a_note():
    c = ml_collections.ConfigDict()
    # a note on no field
    c.seed = 0  # the seed
    return c

  monkeypatch.setattr(wae_config, 'base_config', base_config_with_a_note)
  with pytest.raises(ValueError, match='a note on no field'):
    config_reference.descriptions()


def test_changed_fields_skip_free_fields_and_compare_a_read_config_json():
  config = wae_config.base_config()
  recorded = json.loads(json.dumps(wae_config.as_dict(config)))  # as config.json holds it
  assert wae_config.changed_fields(recorded, config) == {}
  new = config.copy_and_resolve_references()
  new.train.num_steps, new.train.log_every, new.data.dir, new.eval.num_samples = 5, 7, '/x', 10
  assert wae_config.changed_fields(recorded, new) == {}
  new.penalty.lam = 3.0
  new.train.lr_decay = ((30, 0.5),)
  # As if written by code that did not have the fields: one at its default is what that code
  # did, one set otherwise is a change.
  del recorded['penalty']['kernel'], recorded['penalty']['gan_update']
  new.penalty.gan_update = 'alternating'
  assert wae_config.changed_fields(recorded, new) == {
      'penalty.gan_update': ('<absent>', 'alternating'),
      'penalty.lam': (10.0, 3.0),
      'train.lr_decay': ([[30, 0.5], [50, 0.2]], [[30, 0.5]]),
  }


def test_free_fields_are_fields_and_docs_reliability_lists_them():
  """Each pattern of FREE_FIELDS names fields of base_config (a renamed field would silently
  stop being free), and docs/reliability.md ("When things go wrong") lists every one."""
  fields = wae_config.flatten(wae_config.base_config())
  text = (REPO / 'docs' / 'reliability.md').read_text()
  for pattern in wae_config.FREE_FIELDS:
    assert any(fnmatch.fnmatchcase(field, pattern) for field in fields), pattern
    assert f'`{pattern}`' in text, pattern


def test_a_checkpoint_is_evaluated_under_the_record_it_was_trained_under(tmp_path):
  """Config s trained steps s+1 on: the checkpoint at step s is labelled by the one before.
  Every field but the free ones and the seed comes from that record; each disagreement is
  reported with (recorded, given)."""
  assert wae_config.record_in_force(tmp_path, 5) is None  # no records: the given config
  mmd, swd = load_config('mnist', 'wae_mmd,small'), load_config('mnist', 'wae_swd,small')
  swd.seed, swd.eval.num_samples, swd.data.dir = 7, 500, '/elsewhere'
  wae_config.record_config(mmd, tmp_path, 0)
  changed = mmd.copy_and_resolve_references()
  changed.penalty.lam = 5.0
  wae_config.record_config(changed, tmp_path, 10)
  assert [wae_config.record_in_force(tmp_path, step)[0] for step in (0, 10, 11)] == [0, 0, 10]
  _, recorded = wae_config.record_in_force(tmp_path, 10)
  config, disagreements = wae_config.with_recorded(swd, recorded)
  assert config.penalty.name == 'mmd' and config.penalty.lam == mmd.penalty.lam
  assert wae_config.changed_fields(mmd, config) == {'seed': (0, 7)}
  assert (config.seed, config.eval.num_samples, config.data.dir) == (7, 500, '/elsewhere')
  assert config.train.lr_decay == mmd.train.lr_decay  # tuples again, as read from JSON lists
  assert disagreements['penalty.name'] == ('mmd', 'swd') and 'seed' not in disagreements
  assert swd.penalty.name == 'swd'  # the given config is left as it was


@pytest.mark.parametrize(
    'files,broken,fix',
    [
        # The latest record: config.json holds the same config.
        (
            ('config_0000000.json',),
            'config_0000000.json',
            'cp {w}/config.json {w}/config_0000000.json',
        ),
        # An earlier one: nothing else holds it.
        (
            ('config_0000000.json', 'config_0000010.json'),
            'config_0000000.json',
            'restore it from a backup; no other file holds it',
        ),
        # An old workdir's only record.
        ((), 'config.json', 'or remove it to go on under the config you pass'),
    ],
)
def test_an_unreadable_record_names_the_file_and_the_fix(tmp_path, files, broken, fix):
  record = json.dumps(wae_config.as_dict(wae_config.base_config()))
  for name in files + ('config.json',):
    (tmp_path / name).write_text(record)
  for garbage in ('{not json', '[1, 2]', '\xff\xfe'):
    (tmp_path / broken).write_bytes(garbage.encode('latin-1'))
    with pytest.raises(wae_config.RecordedConfigError) as error:
      wae_config.recorded_configs(tmp_path)
    message = str(error.value)
    assert message.startswith(f'{tmp_path / broken} ') and fix.format(w=tmp_path) in message
    assert 'not a config' in message if garbage == '[1, 2]' else 'not valid JSON' in message
    assert '\n' not in message
