"""docs/config.md, the config field reference, generated from `config.base_config`'s comments.

Every field's description is the comment beside it in `base_config` (continued on the comment
lines below it that are indented inside the comment, `#   ...`: the formatter keeps those),
its default is the value `base_config` gives it, and each section's heading is the comment on
its ConfigDict's line. So the reference cannot drift from the code:
a test checks that docs/config.md is this module's output.

  python -m wae_jax.config_reference                       # print the markdown
  python -m wae_jax.config_reference --out=docs/config.md  # write it
"""

import ast
import inspect
import io
import textwrap
import tokenize
from typing import Dict, List, Tuple

from absl import app
from absl import flags

from wae_jax import config as wae_config
from wae_jax import errors
from wae_jax import files

COMMAND = 'python -m wae_jax.config_reference --out=docs/config.md'

INTRO = f"""\
# Config reference

<!-- Generated from the comments in `base_config()` (wae_jax/config.py) by
`{COMMAND}`: edit those comments, not this file. -->

Every choice is a field of one tree, whose defaults are all in `base_config()`
(`wae_jax/config.py`); `configs/*.py` change only what their argument picks. Arguments are
`key=value` pairs: `configs/mnist.py:objective=wae_gan,size=small` (objective:
`wae_mmd | wae_gan | vae | wae_swd | wae_sinkhorn`; size: `paper | small`),
`configs/celeba.py:objective=vae`, `configs/sweep.py:name=tiny`. A bare value sets the key that
allows it, so `configs/mnist.py:wae_gan,small` is the same config; anything else is refused in
one line naming the file, the bad part and the allowed keys and values. Config files are found
from the current directory: run from the checkout.

Any field is set on the command line as `--config.<field>=<value>`, e.g.
`--config.penalty.lam=5`. `None` means unset (the description says what applies then); a
command-line override sets a value, never `None`.
"""


def _dotted(node: ast.AST) -> str:
  """'c.data.name' for the expression c.data.name; '' for anything else."""
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    inner = _dotted(node.value)
    return f'{inner}.{node.attr}' if inner else ''
  return ''


# How a comment line below a field starts when it continues that field's comment.
CONTINUED = '#   '


def descriptions() -> Dict[str, str]:
  """Every name `base_config` assigns ('seed', 'data', 'data.name', ...), in its order, mapped
  to its comment. Raises ValueError for a comment that belongs to no field."""
  source = textwrap.dedent(inspect.getsource(wae_config.base_config))
  lines = source.splitlines()
  comments = {
      token.start[0]: token.string.lstrip('#').strip()
      for token in tokenize.generate_tokens(io.StringIO(source).readline)
      if token.type == tokenize.COMMENT
  }
  function = ast.parse(source).body[0]
  found, used = {}, set()
  for statement in function.body:
    if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1):
      continue
    name = _dotted(statement.targets[0])
    if not name.startswith('c.'):
      continue
    rows = [r for r in range(statement.lineno, statement.end_lineno + 1) if r in comments]
    row = statement.end_lineno + 1
    while row in comments and lines[row - 1].lstrip().startswith(CONTINUED):
      rows.append(row)  # a comment line below the field, indented inside, continues it
      row += 1
    used.update(rows)
    found[name[2:]] = ' '.join(comments[r] for r in rows)
  stray = sorted(set(comments) - used)
  if stray:
    raise ValueError(
        f'base_config: the comment {lines[stray[0] - 1].strip()!r} belongs to no '
        f"field; put it on a field's line (or below it, as {CONTINUED!r}...)"
    )
  return found


def _cell(text: str) -> str:
  return text.replace('|', '\\|')


def sections() -> List[Tuple[str, str, List[Tuple[str, object, str]]]]:
  """[(section, its description, [(field, default, description), ...]), ...] in base_config's
  order; the fields outside any section come first, under the section ''."""
  defaults = wae_config.flatten(wae_config.base_config())
  described = descriptions()
  out = [('', '', [])]
  for name, text in described.items():
    if name not in defaults:  # a section: its ConfigDict
      out.append((name, text, []))
      continue
    section = name.rpartition('.')[0]
    if section != out[-1][0]:
      raise ValueError(f'base_config: {name} is set after another section began')
    out[-1][2].append((name, defaults[name], text))
  return [s for s in out if s[2]]


def markdown() -> str:
  """The whole of docs/config.md."""
  parts = [INTRO]
  for section, text, fields in sections():
    heading = f'`config.{section}`' if section else 'Top level'
    about = f'{text[0].upper()}{text[1:]}.\n\n' if text else ''
    parts.append(f'\n## {heading}\n\n{about}| field | default | description |\n|---|---|---|\n')
    parts.append(
        ''.join(
            f'| `{name}` | `{_cell(repr(default))}` | {_cell(description)} |\n'
            for name, default, description in fields
        )
    )
  return ''.join(parts)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  text = markdown()
  if flags.FLAGS.out:
    files.write_bytes(flags.FLAGS.out, text.encode())
  else:
    print(text, end='')


def _define_flags():
  flags.DEFINE_string(
      'out', None, 'Write the markdown to this file (docs/config.md) instead of ' 'printing it.'
  )


if __name__ == '__main__':
  _define_flags()
  errors.run(main)
