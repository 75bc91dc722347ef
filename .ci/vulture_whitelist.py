"""Names that only a framework uses, for vulture (`make lint`; settings in [tool.vulture] in pyproject).

Each bare name below counts as a use of every definition of that name, so keep the list short and say who
calls it. Routes, fixtures, validators and event listeners are matched by their decorators instead.
Lint: bare names are neither defined nor useful expressions here (per-file ignores in pyproject)."""

# pydantic: the class-level configuration of models and settings; response fields that only FastAPI reads
model_config
trained_min
trained_max
explanation
insight

# MLflow calls PythonModel.load_context when it loads the pyfunc; FastAPI calls APIRoute.get_route_handler
load_context
get_route_handler

# Alembic reads these from each migration script
revision
down_revision
branch_labels
depends_on
upgrade
downgrade

# read only by the Jinja templates of the sales page (serve/ui/templates)
by_grade
acceptance_rate

# pytest: module markers, hooks, and fixtures requested only for what they set up
pytestmark
pytest_report_header
pytest_terminal_summary
own_registry
champion_env

# http.server calls a handler's do_POST and log_message, and reads a server's daemon_threads (the tests'
# webhook receiver, tests/serve/webhook_receiver.py)
do_POST
log_message
daemon_threads
