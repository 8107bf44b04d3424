"""docs/tutorial.ipynb runs end to end: the lecture's path, on tiny budgets, through the public API."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parent.parent / "docs" / "tutorial.ipynb"


def test_the_tutorial_notebook_runs_and_shows_its_pictures(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The timeout catches a hung kernel, not a slow cell: on 2 cores shared with three training runs one cell
    # passed 240 s.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 3  # the Bayes panels, the samples, the latent walk
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "dLoss_G/dlogit {'minimax': -0.0025, 'ns': -0.9975}" in text  # saturation, in numbers
