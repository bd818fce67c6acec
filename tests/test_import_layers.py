"""The import layers of DESIGN.md, enforced on the source (function-level imports too).

  ops    imports no flax and no other room of vision_jax;
  nn     imports only ops;
  data   imports no models, tasks, train, losses or nn;
  train  imports no family task (tasks.base only);
  and no two modules import each other, directly or around a cycle.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'vision_jax'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imports(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
  """The vision_jax modules (and top-level packages) module `name` imports, anywhere."""
  package = name if is_package else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      # `from pkg import sub` imports the submodule pkg.sub when there is one.
      subs = {f'{base}.{alias.name}' for alias in node.names} & modules
      found |= subs or {base}
  return found


def _graph():
  paths = sorted(PACKAGE.rglob('*.py'))
  modules = {_module_name(p) for p in paths}
  return {_module_name(p): _imports(p.read_text(), _module_name(p), p.name == '__init__.py',
                                    modules) for p in paths}, modules


def _room(module: str) -> str:
  """'vision_jax.ops.boxes' -> 'ops'; top-level modules (vision_jax.xla_flags) -> ''."""
  parts = module.split('.')
  is_room = len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir())
  return parts[1] if is_room else ''


def _violations(graph, modules):
  bad = []
  for module, imports in graph.items():
    room = _room(module)
    inner = {i for i in imports if i in modules}
    rooms = {_room(i) for i in inner} - {room, ''}
    tops = {i.split('.')[0] for i in imports}
    if room == 'ops' and ('flax' in tops or rooms):
      bad.append(f'{module} (ops) imports {sorted(rooms) or "flax"}')
    if room == 'nn' and rooms - {'ops'}:
      bad.append(f'{module} (nn) imports {sorted(rooms - {"ops"})}')
    above_data = rooms & {'models', 'tasks', 'train', 'losses', 'nn'}
    if room == 'data' and above_data:
      bad.append(f'{module} (data) imports {sorted(above_data)}')
    if room == 'train':
      tasks = sorted(i for i in inner if i.startswith('vision_jax.tasks.')
                     and i != 'vision_jax.tasks.base')
      if tasks:
        bad.append(f'{module} (train) imports the family tasks {tasks}')
  return bad


def _cycles(graph, modules) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan)."""
  edges = {m: sorted(i for i in imports if i in modules and i != m)
           for m, imports in graph.items()}
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return found


def test_rooms_import_only_downwards():
  graph, modules = _graph()
  assert len(modules) > 50
  assert _violations(graph, modules) == []


def test_no_import_cycles():
  graph, modules = _graph()
  # A package __init__ that imports its own submodules is not a cycle of code.
  for module in list(graph):
    if (PACKAGE.parent / module.replace('.', '/') / '__init__.py').exists():
      graph[module] = {i for i in graph[module] if not i.startswith(module + '.')}
  assert _cycles(graph, modules) == []


@pytest.mark.parametrize('source, expected', [
    ('import flax.linen as nn\n', 'vision_jax.ops.fake (ops) imports flax'),
    ('def f():\n  from vision_jax.models import mask_rcnn\n', "(ops) imports ['models']"),
])
def test_the_checker_catches_violations(source, expected):
  graph, modules = _graph()
  graph['vision_jax.ops.fake'] = _imports(source, 'vision_jax.ops.fake', False, modules)
  assert any(expected in v for v in _violations(graph, modules))


def test_the_checker_finds_function_level_cycles():
  graph, modules = _graph()
  graph = dict(graph)
  graph['vision_jax.data.datasets'] = graph['vision_jax.data.datasets'] | {
      'vision_jax.data.coco_format'}
  assert ['vision_jax.data.coco_format', 'vision_jax.data.datasets'] in _cycles(graph,
                                                                              modules)

