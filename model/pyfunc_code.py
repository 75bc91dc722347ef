"""The models-from-code file of the Leadscore pyfunc (see `pyfunc.log_model`).

MLflow copies this file into every logged model and runs it when `mlflow.pyfunc.load_model` loads one, so
no `python_model.pkl` is written or unpickled: the model itself is the data bundle (spec.json, arrays.npz)
that `LeadscorePyfunc.load_context` reads. The service never runs this file: it loads the bundle alone
(`registry.load_scoring_model`).
"""

from leadscore.model.pyfunc import LeadscorePyfunc
from mlflow.models import set_model

set_model(LeadscorePyfunc())
