"""experiments/colab_quickstart.ipynb runs top to bottom (nbclient, a kernel on this
interpreter, cwd = the repository root, a fresh workdir and data_dir)."""
import os
import sys

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.kernelspec import KernelSpecManager
import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'experiments', 'colab_quickstart.ipynb')


class _ThisInterpreter(KernelSpecManager):
  """Every kernel name is an ipykernel on the interpreter running the tests (the venv's),
  whatever kernelspecs are installed on the machine."""

  def get_kernel_spec(self, kernel_name):
    return KernelSpec(argv=[sys.executable, '-m', 'ipykernel_launcher', '-f',
                            '{connection_file}'],
                      display_name=f'Python ({sys.executable})', language='python')


def test_notebook_is_committed_without_outputs():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  code = [cell for cell in notebook.cells if cell.cell_type == 'code']
  assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow(seconds=42)
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  monkeypatch.setenv('QUICKSTART_WORKDIR', str(tmp_path / 'work'))
  monkeypatch.setenv('QUICKSTART_DATA_DIR', str(tmp_path / 'tfds'))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  manager = KernelManager(kernel_name='python3', kernel_spec_manager=_ThisInterpreter())
  client = nbclient.NotebookClient(notebook, km=manager, timeout=300,
                                   resources={'metadata': {'path': ROOT}})
  client.execute()  # raises CellExecutionError (with the cell and traceback) on any error

  def text(cell):
    return ''.join(out.get('text', '') for out in cell.outputs if out.output_type == 'stream')

  outputs = [text(cell) for cell in notebook.cells if cell.cell_type == 'code']
  assert any(line.startswith('loss ') for out in outputs for line in out.splitlines())
  images = sum('image/png' in out.get('data', {}) for cell in notebook.cells
               if cell.cell_type == 'code' for out in cell.outputs)
  assert images >= 5  # predictions, RoI crops, GAN samples, predict_file, heatmap
  work = tmp_path / 'work'
  assert (work / 'eval_results.json').exists() and (work / 'example_predicted.png').exists()
