"""The example notebook runs clean, top to bottom, in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.browser.helpers import ROOT

pytestmark = pytest.mark.timeout(300)


def test_examples_quickstart_executes_clean(tmp_path):
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    env_cfg = os.environ.pop("QUANTPANEL_CONFIG", None)  # the notebook names its config itself
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    finally:
        if env_cfg is not None:
            os.environ["QUANTPANEL_CONFIG"] = env_cfg
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    html = "".join(str(o.get("data", {})) for o in outputs)
    assert "bokeh" in html.lower() or "application/vnd.holoviews" in html  # the plots rendered
    (tmp_path / "executed.ipynb").write_text(nbformat.writes(nb))
