"""Entry point for `panel serve app.py`. Everything lives in the quantpanel package.

Options: `panel serve app.py --args --config path/to/config.yaml --source replay`, or the
QUANTPANEL_CONFIG / QUANTPANEL_SOURCE environment variables.
"""

from quantpanel.cli import app_options
from quantpanel.dashboard.app import create_app
from quantpanel.pipeline.interpreter import tune_interpreter

tune_interpreter()  # a server process: once, in its first session (pipeline/interpreter.py)
config, source = app_options()
create_app(config, source=source).servable()
