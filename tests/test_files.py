"""Files written whole: their permissions are a normal file's, not the temporary file's."""

import os
import stat

from wae_jax import files


def test_a_written_file_has_the_modes_the_umask_allows(tmp_path):
  mask = os.umask(0o022)  # the test's own process: no other thread is creating files
  os.umask(mask)
  assert files._umask() == mask
  path = files.write_json(tmp_path / 'results.json', {'fid': 1.0})
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
