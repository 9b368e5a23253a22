"""The comparison report: table values, seeds, figure, training curves, missing-results error."""

import json
import pathlib
import subprocess
import sys

from clu import metric_writers
import numpy as np
from PIL import Image
import pytest
from scipy import stats
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.summary.writer import event_file_writer

from tests.helpers import REPO
from tests.helpers import error_line
from wae_jax.evaluation import report

STEPS = (10, 20, 30)


def _results(penalty: str, fid: float, **extra):
  return {
      'step': 30,
      'workdir': 'x',
      'penalty': penalty,
      'fid_mnist_classifier': {
          'value': fid,
          'num_images': 500,
          'features': 'mnist_classifier penultimate layer (128-d)',
      },
      'fid_mnist_classifier_real_floor': {'value': 0.8123, 'num_images': 500},
      'sharpness_samples': {'value': 0.012345, 'num_images': 100},
      'sharpness_reconstructions': {'value': 0.0234, 'num_images': 100},
      'sharpness_test_images': {'value': 0.0456, 'num_images': 100},
      'test_reconstruction_cost': {
          'value': 1.23456,
          'num_images': 500,
          'cost': 'l2sq',
          'scale': 0.05,
      },
      'test_mse_per_pixel': {'value': 0.0321, 'num_images': 500},
      'test_codes_mmd': {'value': -0.000123, 'num_codes': 200, 'kernel': 'imq_multiscale'},
      **extra,
  }


def _write_scalars(workdir, rows):
  """rows: {step: {tag: value}} through clu's default writer, as train.py writes them."""
  writer = metric_writers.create_default_writer(str(workdir))
  for step, scalars in rows.items():
    writer.write_scalars(step, scalars)
  writer.flush()
  writer.close()


def _workdir(
    root: pathlib.Path,
    name: str,
    penalty: str,
    fid: float,
    lam: float = 10.0,
    results=True,
    sample_value: int = 0,
    seed: int = 0,
    **extra,
) -> pathlib.Path:
  """name may be 'objective/seed<k>'; extra entries are added to (or replace) the results'."""
  workdir = root / name
  (workdir / 'images').mkdir(parents=True)
  (workdir / 'config.json').write_text(
      json.dumps(
          {
              'data': {'name': 'mnist'},
              'model': {'width': 0.125},
              'seed': seed,
              'penalty': {'name': penalty, 'lam': lam},
          }
      )
  )
  if results:
    (workdir / 'eval').mkdir()
    (workdir / 'eval' / 'results.json').write_text(json.dumps(_results(penalty, fid, **extra)))
  for step, value in ((10, 255), (30, sample_value)):  # The step-30 grid must be chosen.
    Image.fromarray(np.full((30, 30), value, np.uint8)).save(
        workdir / 'images' / f'samples_{step:07d}.png'
    )
  _write_scalars(
      workdir,
      {
          s: {'loss': 10.0 / s, 'reconstruction': 5.0 / s, 'penalty': 0.1 * s, 'uptime': 6.0 * s}
          for s in STEPS
      },
  )
  return workdir


@pytest.fixture
def workdirs(tmp_path):
  return [
      _workdir(tmp_path, 'mmd_run', 'mmd', 12.3456),
      _workdir(tmp_path, 'gan_run', 'gan', 123.456, sample_value=128),
      _workdir(tmp_path, 'vae_run', 'vae', 4.56789, lam=1.0),
  ]


def test_the_penalty_is_labelled_as_the_evaluated_checkpoint_was_trained(tmp_path):
  # Evaluated at λ=3; config.json was then rewritten by a resume under λ=10.
  trained = {'penalty': {'name': 'mmd', 'lam': 3.0}, 'seed': 0}
  workdir = _workdir(tmp_path, 'run', 'mmd', 12.0, lam=10.0, config=trained)
  run = report.load_run(workdir, 'run')
  assert _rows(report.markdown_table([run]))[0]['penalty'] == 'MMD, λ=3'


def _rows(markdown: str):
  lines = [l for l in markdown.splitlines() if l.startswith('|')]
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  return [dict(zip(header, (c.strip() for c in l.strip('|').split('|')))) for l in lines[2:]]


def test_table_rows_and_values(workdirs):
  runs = [report.load_run(w, n) for w, n in zip(workdirs, ('WAE-MMD', 'WAE-GAN', 'VAE'))]
  rows = _rows(report.markdown_table(runs))
  assert [r['run'] for r in rows] == ['WAE-MMD', 'WAE-GAN', 'VAE']
  assert [r['FID (MNIST classifier)'] for r in rows] == ['12.3', '123', '4.57']
  assert [r['penalty'] for r in rows] == ['MMD, λ=10', 'adversarial, λ=10', 'KL, λ=1']
  mmd = rows[0]
  assert mmd['steps'] == '30'
  assert mmd['FID (Inception)'] == '–'
  assert mmd['sharpness samples'] == '0.0123'
  assert mmd['sharpness reconstructions'] == '0.0234'
  assert mmd['sharpness test images'] == '0.0456'
  assert mmd['test reconstruction cost'] == '1.23'
  assert mmd['MSE per pixel'] == '0.0321'
  assert mmd['test codes MMD'] == '-1.23e-04'
  assert mmd['training time'] == '3.0 min / 30 steps'  # uptime 180 s at step 30


def test_missing_entries_and_inception_fid(workdirs):
  results_path = workdirs[0] / 'eval' / 'results.json'
  results = json.loads(results_path.read_text())
  del results['test_codes_mmd'], results['sharpness_samples']
  results['fid_inception'] = {
      'value': 45.678,
      'num_images': 500,
      'features': 'InceptionV3 pool3 (2048-d)',
  }
  results['fid_inception_real_floor'] = {'value': 1.5, 'num_images': 500}
  results_path.write_text(json.dumps(results))
  run = report.load_run(workdirs[0])
  assert (
      'FID (Inception): Fréchet distance between 500 samples and as many test images on '
      'the InceptionV3 pool3 (2048-d)'
  ) in report.markdown_report([run])
  assert 'same count): 1.50.' in report.markdown_report([run])
  (row,) = _rows(report.markdown_table([run]))
  assert row['run'] == 'mmd_run'
  assert row['test codes MMD'] == '–' and row['sharpness samples'] == '–'
  assert row['FID (Inception)'] == '45.7'


def test_report_notes_the_fid_floor(workdirs):
  markdown = report.markdown_report([report.load_run(w) for w in workdirs])
  assert 'floor (training vs test images, same count): 0.812.' in markdown
  assert 'FID (Inception):' not in markdown
  results_path = workdirs[2] / 'eval' / 'results.json'
  results = json.loads(results_path.read_text())
  results['fid_mnist_classifier_real_floor']['value'] = 2.5
  results['test_reconstruction_cost'].update(cost='bernoulli', scale=1.0)
  results_path.write_text(json.dumps(results))
  markdown = report.markdown_report([report.load_run(w) for w in workdirs])
  assert 'same count): 0.812 (mmd_run), 0.812 (gan_run), 2.50 (vae_run).' in markdown
  assert (
      'l2sq (scale 0.05) (mmd_run), l2sq (scale 0.05) (gan_run), ' 'bernoulli (scale 1.0) (vae_run)'
  ) in markdown


def test_report_says_when_fids_are_on_different_weights(workdirs):
  """FIDs on another classifier's weights (another hash in the features' label) are said
  not to compare, and which run has which."""
  markdown = report.markdown_report([report.load_run(w) for w in workdirs])
  assert (
      'on the mnist_classifier penultimate layer (128-d) (comparable only with FIDs on the '
      'same features)'
  ) in markdown
  results_path = workdirs[2] / 'eval' / 'results.json'
  results = json.loads(results_path.read_text())
  results['fid_mnist_classifier']['features'] += ', weights sha256 fed7b12aaeac'
  results_path.write_text(json.dumps(results))
  markdown = report.markdown_report([report.load_run(w) for w in workdirs])
  assert (
      'on the mnist_classifier penultimate layer (128-d) (mmd_run), mnist_classifier '
      'penultimate layer (128-d) (gan_run), mnist_classifier penultimate layer (128-d), '
      'weights sha256 fed7b12aaeac (vae_run) (NOT comparable between runs on different '
      'features)'
  ) in markdown


def test_training_curves_read_back(workdirs):
  run = report.load_run(workdirs[0])
  for tag, expected in (
      ('loss', [1.0, 0.5, 1 / 3]),
      ('reconstruction', [0.5, 0.25, 1 / 6]),
      ('penalty', [1.0, 2.0, 3.0]),
  ):
    np.testing.assert_array_equal(run.curves[tag].steps, STEPS)
    np.testing.assert_allclose(run.curves[tag].values, expected, rtol=1e-6)
  assert run.training_time == report.TrainingTime(180.0, 30, 'uptime')
  assert run.samples_png.name == 'samples_0000030.png'


def _legacy_event(step, wall_time, **scalars):
  """A TF1-style event: 'scalars' kind (simple_value), with a chosen wall time."""
  values = [summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in scalars.items()]
  return event_pb2.Event(step=step, wall_time=wall_time, summary=summary_pb2.Summary(value=values))


def test_resumed_run_and_legacy_scalars(tmp_path):
  """Two processes: the second resumed from step 20 and redid step 30; no uptime scalar."""
  workdir = tmp_path / 'resumed'
  workdir.mkdir()
  for suffix, events in (
      ('.a', [(10, 100.0, 1.0), (20, 110.0, 2.0), (30, 120.0, 3.0)]),
      ('.b', [(30, 500.0, 30.0), (40, 530.0, 40.0)]),
  ):
    writer = event_file_writer.EventFileWriter(str(workdir), filename_suffix=suffix)
    for step, wall, loss in events:
      writer.add_event(_legacy_event(step, wall, loss=loss))
    writer.close()
  segments = [report.read_event_file(p) for p in report.event_files(workdir)]
  curves = report.merge_segments(segments)
  np.testing.assert_array_equal(curves['loss'].steps, [10, 20, 30, 40])
  np.testing.assert_allclose(curves['loss'].values, [1.0, 2.0, 30.0, 40.0])
  # Wall time of the first and last logged loss of each process: 20 s + 30 s.
  assert report.training_time(segments) == report.TrainingTime(50.0, 40, 'wall time')


def test_figure(workdirs, tmp_path):
  runs = [report.load_run(w) for w in workdirs]
  path = report.make_figure(runs, tmp_path / 'out' / 'report.png')
  with Image.open(path) as image:
    width, height = image.size
  assert width >= 3 * 4 * report.FIGURE_DPI * 0.9 and height >= 8 * report.FIGURE_DPI * 0.9
  assert width > height  # three runs side by side
  # Each run's column: its sample grid on top (WAE-GAN's is mid-grey, the others' black), its
  # loss (C0, blue) and reconstruction (C1, orange) curves below.
  with Image.open(path) as image:
    pixels = np.asarray(image.convert('RGB')).astype(int)
  for i, sample_value in enumerate((0, 128, 0)):
    column = pixels[:, i * width // 3 : (i + 1) * width // 3]
    top, bottom = column[: height // 2], column[height // 2 :]
    shown = np.all(np.abs(top - sample_value) <= 8, axis=-1).mean()
    other = np.all(np.abs(top - (128 - sample_value)) <= 8, axis=-1).mean()
    assert shown > 0.3 and other < 0.01, (i, shown, other)
    for colour in ((31, 119, 180), (255, 127, 14)):
      assert np.all(np.abs(bottom - colour) <= 30, axis=-1).mean() > 5e-4, (i, colour)


def test_figure_without_samples_or_events(tmp_path, workdirs):
  workdir = workdirs[0]
  for path in list(workdir.glob('events.out.tfevents.*')) + list(workdir.glob('images/*')):
    path.unlink()
  run = report.load_run(workdir)
  assert run.curves == {} and run.training_time is None and run.samples_png is None
  assert _rows(report.markdown_table([run]))[0]['training time'] == '–'
  assert report.make_figure([run], tmp_path / 'r.png').exists()


def test_write_report(workdirs, tmp_path):
  out = tmp_path / 'out'
  markdown = report.write_report([str(w) for w in workdirs], out, ['A', 'B', 'C'])
  assert (out / 'report.md').read_text() == markdown
  assert (out / 'report.png').exists()
  assert [r['run'] for r in _rows(markdown)] == ['A', 'B', 'C']
  with pytest.raises(ValueError, match='2 names for 3 workdirs'):
    report.write_report([str(w) for w in workdirs], out, ['A', 'B'])


def test_a_workdir_given_twice_is_refused_in_one_line_not_counted_as_two_seeds(tmp_path):
  workdir = _workdir(tmp_path, 'once', 'mmd', 50.0)
  result = subprocess.run(
      [
          sys.executable,
          '-m',
          'wae_jax.evaluation.report',
          f'--workdirs={workdir},{workdir}/',
          '--names=X,X',
          f'--out={tmp_path / "out"}',
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert error_line(result) == (
      f'error: --workdirs names {workdir}, {workdir}/ more than once: give each run once'
  )
  assert not (tmp_path / 'out' / 'report.md').exists()


def _report_command(*args):
  return subprocess.run(
      [sys.executable, '-m', 'wae_jax.evaluation.report', *args],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )


def test_empty_workdirs_and_an_out_that_is_a_file_are_refused_in_one_line(tmp_path):
  workdir = _workdir(tmp_path, 'run', 'mmd', 50.0)
  assert error_line(_report_command('--workdirs=', f'--out={tmp_path / "out"}')) == (
      'error: --workdirs is empty: give the evaluated workdirs to compare, comma-separated '
      '(e.g. --workdirs=DIR1,DIR2)'
  )
  a_file = tmp_path / 'report.md'
  a_file.write_text('keep me')
  line = error_line(_report_command(f'--workdirs={workdir}', f'--out={a_file}'))
  assert line == (
      f'error: --out={a_file}: {a_file} is a file, not a directory; give a '
      'directory for report.md, report.png and report.json (it is created if missing)'
  )
  assert a_file.read_text() == 'keep me'
  with pytest.raises(ValueError, match=f'--out={a_file}/sub: {a_file} is a file'):
    report.write_report([str(workdir)], a_file / 'sub')
  with pytest.raises(ValueError, match='--out is empty'):
    report.write_report([str(workdir)], '')


def test_a_truncated_results_json_is_refused_in_one_line_with_the_command_that_rewrites_it(
    tmp_path,
):
  workdir = _workdir(tmp_path, 'cut', 'mmd', 50.0)
  results = workdir / 'eval' / 'results.json'
  results.write_text(results.read_text()[:50])
  line = error_line(_report_command(f'--workdirs={workdir}', f'--out={tmp_path / "out"}'))
  assert line.startswith(f'error: {results} is not valid JSON (Unterminated string')
  assert line.endswith(
      'it was cut short or overwritten; evaluate the run again to rewrite it '
      '(with the config and overrides it was trained with): python -m '
      f'wae_jax.main --config=configs/mnist.py:wae_mmd,small --workdir={workdir} '
      '--mode=evaluate'
  )
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize(
    'file, text, why',
    [
        ('eval/results.json', '[1, 2]', 'holds a JSON list, not an object; evaluate the run again'),
        ('eval/results.json', '{"step": "30"}', "'step' is '30', not a whole number; evaluate"),
        ('eval/results.json', '{"penalty": ["mmd"]}', "'penalty' is .'mmd'., not a string"),
        ('eval/results.json', '{"configs": 3}', "'configs' is 3, not a list"),
        ('eval/results.json', '{"step": 30}', 'holds none of the numbers the report shows'),
        ('eval/results.json', '\xff', 'is not valid JSON'),
        (
            'config.json',
            '{"seed": 0',
            'is not valid JSON .*: it was cut short or overwritten; copy '
            'the latest config_<step>.json of the workdir over it',
        ),
        ('config.json', '{"penalty": "mmd"}', "'penalty' is 'mmd', not an object"),
    ],
)
def test_results_or_config_not_as_written_is_a_results_error_naming_the_file(
    tmp_path, file, text, why
):
  workdir = _workdir(tmp_path, 'edited', 'mmd', 50.0)
  (workdir / file).write_bytes(text.encode('latin-1'))
  with pytest.raises(report.ResultsError, match=f'^{workdir / file}:? .*{why}'):
    report.load_run(workdir)


def test_missing_results_names_the_workdir_and_the_command(tmp_path):
  workdir = _workdir(tmp_path, 'not_evaluated', 'gan', 1.0, results=False)
  with pytest.raises(FileNotFoundError) as error:
    report.load_run(workdir)
  message = str(error.value)
  assert str(workdir) in message and 'eval/results.json' in message
  assert (
      f'python -m wae_jax.main --config=configs/mnist.py:wae_gan,small '
      f'--workdir={workdir} --mode=evaluate'
  ) in message


def test_format_number():
  assert [
      report.format_number(x)
      for x in (None, 0.0, 12345.6, 123.4, 1.0, 0.001234, 0.00001234, float('nan'))
  ] == ['–', '0', '1.23e+04', '123', '1.00', '0.00123', '1.23e-05', 'nan']
  # Over seeds: the std with two significant digits, no exponent next to a mean like 0.0165.
  assert report.stats_text(report.Stats((0.0165, 0.0169, 0.0161)), 3) == '0.0165 ± 0.00040'
  assert report.stats_text(report.Stats((12345.0, 22345.0)), 2) == '1.73e+04 ± 7100'
  assert report.stats_text(report.Stats((2.0,)), 3) == '2.00 (n=1)'
  assert report.stats_text(report.Stats(()), 3) == '–'


# ---------------------------------------------------------------------------------------------
# Seeds: runs with one name are one row.


def _seeds(root, objective, penalty, fids, mses=(0.03, 0.03, 0.03), **extra):
  """One workdir root/objective/seed<k> per FID (and MSE per pixel), seeds 0, 1, 2, ..."""
  return [
      _workdir(
          root,
          f'{objective}/seed{k}',
          penalty,
          fid,
          seed=k,
          test_mse_per_pixel={'value': mse, 'num_images': 500},
          **extra,
      )
      for k, (fid, mse) in enumerate(zip(fids, mses))
  ]


@pytest.fixture
def seeded(tmp_path):
  """WAE-MMD and WAE-SWD within the FID noise of each other, the VAE far off; one WAE-GAN run."""
  return {
      'WAE-MMD': _seeds(tmp_path, 'wae_mmd', 'mmd', (10.0, 12.0, 14.0)),
      'WAE-SWD': _seeds(tmp_path, 'wae_swd', 'swd', (11.0, 13.0, 15.0)),
      'VAE': _seeds(tmp_path, 'vae', 'vae', (100.0, 101.0, 102.0), (0.01, 0.02, 0.03)),
      'WAE-GAN': [_workdir(tmp_path, 'wae_gan/seed0', 'gan', 123.456)],
  }


def _load(seeded):
  return [report.load_run(w, name) for name, dirs in seeded.items() for w in dirs]


def test_seeds_are_one_row_with_mean_and_std(seeded):
  rows = {r['run']: r for r in _rows(report.markdown_table(_load(seeded)))}
  assert list(rows) == ['WAE-MMD', 'WAE-SWD', 'VAE', 'WAE-GAN']
  assert [r['seeds'] for r in rows.values()] == ['3', '3', '3', '1']
  assert rows['WAE-MMD']['FID (MNIST classifier)'] == '12.0 ± 2.0'  # std with ddof=1
  assert rows['VAE']['FID (MNIST classifier)'] == '101 ± 1.0'
  assert rows['VAE']['MSE per pixel'] == '0.0200 ± 0.010'
  assert rows['VAE']['penalty'] == 'KL, λ=10'
  assert rows['WAE-SWD']['penalty'] == 'sliced Wasserstein, λ=10'
  assert rows['WAE-MMD']['sharpness samples'] == '0.0123 ± 0'
  assert rows['WAE-MMD']['steps'] == '30'
  assert rows['WAE-MMD']['training time'] == '3.0 ± 0.0 min / 30 steps'
  # A single run's cells are as without seeds.
  assert rows['WAE-GAN']['FID (MNIST classifier)'] == '123'
  assert rows['WAE-GAN']['training time'] == '3.0 min / 30 steps'


def test_seed_missing_a_number_and_default_names(seeded):
  results_path = seeded['WAE-MMD'][2] / 'eval' / 'results.json'
  results = json.loads(results_path.read_text())
  del results['fid_mnist_classifier']
  results_path.write_text(json.dumps(results))
  runs = [report.load_run(w) for w in seeded['WAE-MMD'] + seeded['VAE']]
  assert [r.name for r in runs] == ['wae_mmd'] * 3 + ['vae'] * 3  # seed<k>: the parent's name
  rows = _rows(report.markdown_table(runs))
  assert rows[0]['run'] == 'wae_mmd' and rows[0]['FID (MNIST classifier)'] == '11.0 ± 1.4 (n=2)'
  markdown = report.markdown_report(runs)
  assert 'seeds 0, 1, 2' in markdown and 'mean ± sample standard deviation (ddof=1)' in markdown


def _significance_line(markdown: str, title: str) -> str:
  (line,) = [l for l in markdown.splitlines() if l.startswith(f'- {title}, ')]
  return line


def test_significance_names_pairs_beyond_the_noise(seeded):
  for k, workdir in enumerate(seeded['VAE']):  # another cost: not compared with the WAEs'
    results_path = workdir / 'eval' / 'results.json'
    results = json.loads(results_path.read_text())
    results['test_reconstruction_cost'].update(cost='bernoulli', value=80.0 + k)
    results_path.write_text(json.dumps(results))
  markdown = report.markdown_report(_load(seeded))
  assert "Welch's t-test on the per-seed values (two-sided, unequal variances)" in markdown
  assert 'p < 0.05' in markdown
  fid = _significance_line(markdown, 'FID (MNIST classifier)')
  assert fid.startswith('- FID (MNIST classifier), 2 of 3 pairs: ')  # WAE-GAN has one seed
  assert 'WAE-MMD < VAE (p=' in fid and 'WAE-SWD < VAE (p=' in fid
  assert 'WAE-MMD < WAE-SWD' not in fid and 'WAE-GAN' not in fid  # within the noise; one seed
  assert _significance_line(markdown, 'MSE per pixel').endswith('0 of 3 pairs: none.')
  assert 'sharpness test images, ' not in markdown  # the same images for every run
  cost = _significance_line(markdown, 'test reconstruction cost')
  assert cost.endswith('(2 pairs with different costs not compared).')
  assert cost.startswith('- test reconstruction cost, 0 of 1 pair: none')


def test_welch_p_is_scipys():
  a, b = (10.0, 12.0, 14.0), (100.0, 101.5, 102.0, 99.0)
  expected = stats.ttest_ind(a, b, equal_var=False).pvalue
  assert report.welch_p(report.Stats(a), report.Stats(b)) == pytest.approx(expected)
  constant = report.Stats((1.0, 1.0))
  assert report.welch_p(constant, constant) == 1.0
  assert report.welch_p(constant, report.Stats((2.0, 2.0))) == 0.0


def test_single_runs_have_no_seed_column_or_significance(workdirs):
  markdown = report.markdown_report([report.load_run(w) for w in workdirs])
  assert 'seeds' not in _rows(markdown)[0] and 'seed noise' not in markdown
  assert 'Workdirs: mmd_run: `' in markdown


def test_write_report_with_seeds(seeded, tmp_path):
  workdirs = [str(w) for dirs in seeded.values() for w in dirs]
  names = [name for name, dirs in seeded.items() for _ in dirs]
  markdown = report.write_report(workdirs, tmp_path / 'out', names)
  assert [r['run'] for r in _rows(markdown)] == ['WAE-MMD', 'WAE-SWD', 'VAE', 'WAE-GAN']
  with Image.open(tmp_path / 'out' / 'report.png') as image:
    assert image.size[0] >= 4 * 4 * report.FIGURE_DPI * 0.9  # one column per row
  data = json.loads((tmp_path / 'out' / 'report.json').read_text())
  mmd = data['rows'][0]
  assert mmd['name'] == 'WAE-MMD' and mmd['seeds'] == [0, 1, 2]
  fid = mmd['metrics']['FID (MNIST classifier)']
  assert fid['values'] == [10.0, 12.0, 14.0] and fid['key'] == 'fid_mnist_classifier'
  assert fid['mean'] == pytest.approx(12.0) and fid['std'] == pytest.approx(2.0)
  assert fid['n'] == 3
  tests = {(d['metric'], *d['rows']): d['significant'] for d in data['differences']}
  assert tests[('FID (MNIST classifier)', 'WAE-MMD', 'VAE')]
  assert not tests[('FID (MNIST classifier)', 'WAE-MMD', 'WAE-SWD')]
  assert "Welch's t-test" in data['rule']


def test_gmm_columns_only_when_a_run_has_them(seeded):
  runs = _load(seeded)
  header = _rows(report.markdown_table(runs))[0]
  assert 'FID (MNIST classifier)' in header and not any('GMM' in title for title in header)
  for k, workdir in enumerate(seeded['WAE-MMD']):
    results_path = workdir / 'eval' / 'results.json'
    results = json.loads(results_path.read_text())
    results['fid_mnist_classifier_gmm'] = {'value': 5.0 + k, 'num_images': 500}
    results['sharpness_samples_gmm'] = {'value': 0.05, 'num_images': 100}
    results_path.write_text(json.dumps(results))
  rows = {r['run']: r for r in _rows(report.markdown_table(_load(seeded)))}
  titles = list(rows['VAE'])
  assert titles[titles.index('FID (MNIST classifier, prior)') + 1] == 'FID (MNIST classifier, GMM)'
  assert titles[titles.index('sharpness samples (prior)') + 1] == 'sharpness samples (GMM)'
  assert 'FID (MNIST classifier)' not in titles and 'FID (Inception)' in titles
  assert rows['WAE-MMD']['FID (MNIST classifier, GMM)'] == '6.00 ± 1.0'
  assert rows['WAE-MMD']['FID (MNIST classifier, prior)'] == '12.0 ± 2.0'
  assert rows['WAE-MMD']['FID (Inception)'] == '–'
  assert rows['VAE']['FID (MNIST classifier, GMM)'] == '–'
  assert 'Prior and GMM columns' in report.markdown_report(_load(seeded))
  assert (
      report.inception_fid_key(
          {'fid_inception_gmm': {}, 'fid_inception_x_real_floor': {}, 'fid_inception_x': {}}
      )
      == 'fid_inception_x'
  )


def test_new_objectives_in_the_evaluate_command(tmp_path):
  workdir = _workdir(tmp_path, 'sinkhorn_run', 'sinkhorn', 1.0, results=False)
  with pytest.raises(FileNotFoundError, match='configs/mnist.py:wae_sinkhorn,small'):
    report.load_run(workdir)
